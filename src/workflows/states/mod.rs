//! `states`: workflows users write themselves, in the Amazon States Language (the JSONPath
//! mode of Step Functions' definitions), checked whole when they load and run over effects
//! that a caller provides.
//!
//! What a definition may use ([`definition`]): `Task`, `Pass`, `Wait` (`Seconds`,
//! `SecondsPath`, `Timestamp`, `TimestampPath`), `Choice` (every comparison, `And`, `Or`, `Not`
//! — [`choice`]), `Parallel`, `Map` (inline, `ItemsPath`, `ItemSelector`, `MaxConcurrency`),
//! `Succeed`, `Fail`; `InputPath`, `Parameters`, `ResultSelector`, `ResultPath`, `OutputPath`
//! with JSONPath ([`path`]) and the intrinsic functions ([`intrinsic`]); `Retry` (every field,
//! `JitterStrategy` included) and `Catch` with the `States.*` error names. Task resources: ECS
//! `runTask.sync`, SNS `publish`, SQS `sendMessage`, DynamoDB `putItem`/`getItem`/`updateItem`,
//! HTTP `invoke`, and `tugboat:mqtt:publish`. Anything else — a field tugboat does not run, a
//! resource it does not know, JSONata — is refused when the definition loads, naming its JSON
//! pointer: a definition never silently means less than it says.
//!
//! [`run`] is the interpreter: deterministic over its [`run::Effects`], so that the engine can
//! journal each effect and replay after a crash. `tugboat states validate FILE` checks a
//! definition; `tugboat states run FILE --input EVENT --dry-run` runs it with fake effects
//! ([`tool`]).
//!
//! Not yet (issue 31): routes that start a definition through the engine (`[workflows.NAME]`,
//! each effect a journaled step, the console's state path), the Task resources' adapters,
//! YAML definitions, JSONata.

pub mod choice;
pub mod definition;
pub mod intrinsic;
pub mod path;
pub mod payload;
pub mod run;
pub mod tool;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use serde_json::Value;

use super::Registration;
use crate::contract::{Decision, StepError, Typed};

pub const KIND: &str = "states";

/// Why no route may name this kind yet.
const NOT_ROUTABLE: &str = "routes cannot start a States Language definition yet (issue 31): check one with `tugboat states validate FILE` and try it with `tugboat states run FILE --input EVENT --dry-run`";

pub fn registration() -> Registration {
    Registration::new(KIND, None, |_setup| {
        Box::pin(async move { Ok(Arc::new(Typed(NotRoutable)) as Arc<dyn crate::contract::Workflow>) })
    })
    // A route naming this kind is refused while the configuration loads, so the workflow
    // below never starts an instance.
    .with_params_check(|_, _| Err(NOT_ROUTABLE.into()))
    .with_command("states", "Workflows in the Amazon States Language: check a definition, and run one with fake effects.")
    .with_tool(tool::TOOL)
}

/// The kind's workflow until the engine runs definitions: every start refused with the reason.
#[derive(Debug)]
struct NotRoutable;

#[async_trait::async_trait]
impl crate::contract::Flow for NotRoutable {
    const KIND: &'static str = KIND;
    type State = ();
    type Step = ();

    fn start(&self, _event: &Value, _params: &Value) -> Result<((), Decision<()>), String> {
        Err(NOT_ROUTABLE.into())
    }

    fn advance(&self, _state: &mut (), _step: (), _outcome: Result<Value, StepError>) -> Decision<()> {
        crate::contract::Next::Fail(NOT_ROUTABLE.into())
    }
}
