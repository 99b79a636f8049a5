//! Workflows: one folder each. A folder holds the workflow's pure state machine, its typed
//! steps (requests and results), its configuration section if it has one, the handlers that
//! perform its steps through the ports, its tests, and one [`Registration`]. Reading the folder
//! tells the whole workflow; adding one is its folder and one line in the `workflows!` list.
//!
//! **A workflow's state machine does no I/O and reads no clock**; its handlers call ports and
//! nothing else (no tokio, actix, SDK, `std::fs` or `std::net` in a folder —
//! `tests/architecture.rs` checks it). The contract they implement is in [`crate::contract`].

use crate::config::BadKey;
use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::config::Config;
use crate::contract::Workflow;
use crate::ports::Ports;
use surface::{CommandSpec, Operation, PageSpec, PageView, Tool};

/// Declares each workflow folder as a module and lists its `registration()` in [`builtin`].
macro_rules! workflows {
    ($($folder:ident),* $(,)?) => {
        $(pub mod $folder;)*

        /// Every workflow this build can run, in the order `tugboat workflows kinds` lists them.
        pub fn builtin() -> Vec<Registration> {
            vec![$($folder::registration()),*]
        }
    };
}

// Every workflow of this build, one line each: adding a workflow is its folder and a line here.
workflows! {
    log,
    ecs_start,
    ecs_stop,
    ecs_task_event,
    mqtt_publish,
    http_deliver,
    cur_ingest,
    spot_drain,
    resource_scan,
    auto_stop,
    states,
}

pub mod params;
pub mod surface;
pub mod template;

/// A shared EventBridge sample from `tests/fixtures/events/eventbridge/`, for workflow tests.
#[cfg(test)]
pub(crate) fn eventbridge_fixture(name: &str) -> serde_json::Value {
    let path = format!(
        "{}/tests/fixtures/events/eventbridge/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// What a workflow's constructor gets: the loaded configuration and the service's ports.
#[derive(Clone, Copy)]
pub struct Setup<'a> {
    pub config: &'a Config,
    pub ports: &'a Ports,
}

/// Builds a workflow from the configuration and the ports; an error stops the service from
/// starting (a target group that does not exist, say).
pub type Build = for<'a> fn(Setup<'a>) -> BoxFuture<'a, Result<Arc<dyn Workflow>, String>>;

/// Checks a route's params while the configuration loads, given the sections workflows own
/// (to find a named broker or destination).
pub type ParamsCheck = fn(&serde_json::Value, &BTreeMap<String, toml::Value>) -> Result<(), String>;

/// A top-level configuration section that a workflow owns (`[services]` of the ECS
/// workflows), checked while the configuration loads.
#[derive(Clone, Copy)]
pub struct Section {
    pub name: &'static str,
    /// `Err(BadKey::at(key path, message))` when the section is malformed.
    pub check: fn(&toml::Value) -> Result<(), BadKey>,
}

#[derive(Clone)]
enum Builder {
    Build(Build),
    /// Already built (tests and benchmarks register workflows holding their own fakes).
    Ready(Arc<dyn Workflow>),
}

/// One workflow kind as the service knows it before it starts.
#[derive(Clone)]
pub struct Registration {
    pub kind: &'static str,
    pub section: Option<Section>,
    params: Option<ParamsCheck>,
    builder: Builder,
    /// Its CLI command's name and help, when it has pages or a tool.
    command: Option<(&'static str, &'static str)>,
    pages: Vec<PageSpec>,
    tool: Option<Tool>,
    operation: Option<Operation>,
    /// Its tool's subcommands are also `tugboat workflows <subcommand>`.
    tool_under_workflows: bool,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Registration {
    /// A workflow built from the configuration and ports when the service starts.
    pub fn new(kind: &'static str, section: Option<Section>, build: Build) -> Registration {
        Registration {
            kind,
            section,
            params: None,
            builder: Builder::Build(build),
            command: None,
            pages: Vec::new(),
            tool: None,
            operation: None,
            tool_under_workflows: false,
        }
    }

    /// This registration with its route params checked while the configuration loads.
    pub fn with_params_check(mut self, check: ParamsCheck) -> Registration {
        self.params = Some(check);
        self
    }

    /// This registration with a CLI command of its own, `tugboat <name>`, which holds its
    /// pages' subcommands and its tool's.
    pub fn with_command(mut self, name: &'static str, about: &'static str) -> Registration {
        self.command = Some((name, about));
        self
    }

    /// This registration with a console page (also a subcommand of its command).
    pub fn with_page(mut self, page: PageSpec) -> Registration {
        self.pages.push(page);
        self
    }

    /// This registration with a tool: subcommands on the operator's files.
    pub fn with_tool(mut self, tool: Tool) -> Registration {
        self.tool = Some(tool);
        self
    }

    /// This registration with its tool's subcommands also under `tugboat workflows` (the
    /// States Language's `validate` and `run`: tools for workflows users write).
    pub fn with_tool_under_workflows(mut self) -> Registration {
        self.tool_under_workflows = true;
        self
    }

    /// This registration with an operation: subcommands acting through the ports.
    pub fn with_operation(mut self, operation: Operation) -> Registration {
        self.operation = Some(operation);
        self
    }

    /// A workflow that is already built.
    pub fn ready(workflow: Arc<dyn Workflow>) -> Registration {
        Registration {
            kind: workflow.kind(),
            section: None,
            params: None,
            builder: Builder::Ready(workflow),
            command: None,
            pages: Vec::new(),
            tool: None,
            operation: None,
            tool_under_workflows: false,
        }
    }
}

/// The workflow kinds a service is built with: the built-in ones, plus any a test adds.
#[derive(Clone, Debug)]
pub struct Catalog {
    registrations: Vec<Registration>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog::builtin()
    }
}

impl Catalog {
    pub fn builtin() -> Catalog {
        Catalog {
            registrations: builtin(),
        }
    }

    /// This catalog with `registration` added (replacing a kind of the same name).
    pub fn with(mut self, registration: Registration) -> Catalog {
        self.registrations.retain(|r| r.kind != registration.kind);
        self.registrations.push(registration);
        self
    }

    /// Builds every workflow.
    pub async fn build(&self, setup: Setup<'_>) -> Result<Registry, String> {
        let mut kinds = BTreeMap::new();
        for r in &self.registrations {
            let workflow = match &r.builder {
                Builder::Ready(w) => w.clone(),
                Builder::Build(build) => build(setup)
                    .await
                    .map_err(|e| format!("workflow {}: {e}", r.kind))?,
            };
            kinds.insert(r.kind, workflow);
        }
        Ok(Registry { kinds })
    }

    /// Every workflow's pages, built (in catalog order).
    pub fn pages(&self, setup: Setup<'_>) -> Vec<BuiltPage> {
        self.registrations
            .iter()
            .flat_map(|r| {
                r.pages.iter().map(move |spec| BuiltPage {
                    kind: r.kind,
                    spec: *spec,
                    view: (spec.build)(setup),
                })
            })
            .collect()
    }

    /// Every workflow's CLI command.
    pub fn commands(&self) -> Vec<CommandSpec> {
        self.registrations
            .iter()
            .filter_map(|r| {
                let (name, about) = r.command?;
                Some(CommandSpec {
                    name,
                    about,
                    kind: r.kind,
                    pages: r.pages.clone(),
                    tool: r.tool,
                    operation: r.operation,
                    tool_under_workflows: r.tool_under_workflows,
                })
            })
            .collect()
    }
}

/// A workflow's page as the console serves it.
#[derive(Clone)]
pub struct BuiltPage {
    /// The workflow whose instances it reads.
    pub kind: &'static str,
    pub spec: PageSpec,
    pub view: Arc<dyn PageView>,
}

impl std::fmt::Debug for BuiltPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltPage")
            .field("kind", &self.kind)
            .field("path", &self.spec.path)
            .finish()
    }
}

impl crate::config::Catalog for Catalog {
    fn is_known(&self, kind: &str) -> bool {
        self.registrations.iter().any(|r| r.kind == kind)
    }

    fn names(&self) -> Vec<&'static str> {
        self.registrations.iter().map(|r| r.kind).collect()
    }

    fn check_section(&self, name: &str, value: &toml::Value) -> Option<Result<(), BadKey>> {
        self.registrations
            .iter()
            .filter_map(|r| r.section)
            .find(|s| s.name == name)
            .map(|s| (s.check)(value))
    }

    fn check_params(
        &self,
        kind: &str,
        params: &serde_json::Value,
        sections: &BTreeMap<String, toml::Value>,
    ) -> Result<(), String> {
        match self.registrations.iter().find(|r| r.kind == kind) {
            Some(Registration {
                params: Some(check),
                ..
            }) => check(params, sections),
            _ => Ok(()),
        }
    }
}

/// The built workflows of a running service, by kind.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Arc<dyn Workflow>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.kinds.keys()).finish()
    }
}

impl Registry {
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Workflow>> {
        self.kinds.get(kind)
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.kinds.keys().copied().collect()
    }
}
