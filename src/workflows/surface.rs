//! What a workflow shows its operators, kept in its folder and registered with it:
//!
//! - **pages** ([`Page`]): a console page (also JSON: the same handler answers a browser with
//!   the page and anything else with the view) that is also a CLI subcommand,
//!   `tugboat <command> <page>`, which asks the running service or, when none runs, builds the
//!   view itself from the journal;
//! - **a tool** ([`Tool`]): subcommands that work on what the operator names on their own
//!   machine (`tugboat cur summarize` reads reports on disk), through [`Desk`];
//! - **an operation** ([`Operation`]): subcommands that act through the service's ports from
//!   the operator's machine, as the workflow's handlers do (`tugboat resources scan`).
//!
//! The admin listener and the CLI do the I/O (HTTP, the journal, the terminal); a page is
//! given the instances of its kind and the request's query, and reaches anything else through
//! the ports it was built with, as a workflow's handlers do.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize as _, Serialize};
use serde_json::Value;

use super::Setup;
use crate::ports::files::LocalFiles;

/// An instance of the page's workflow, as the journal holds it.
#[derive(Debug, Clone, Copy)]
pub struct Instance<'a> {
    pub state: &'a Value,
    pub output: Option<&'a Value>,
}

/// What a page's view is built from, at each request.
#[derive(Debug)]
pub struct PageInput<'a> {
    /// Every instance of the page's workflow kind in the journal.
    pub instances: Vec<Instance<'a>>,
    /// The request's query: the URL's, or the CLI options by their long names.
    pub query: &'a BTreeMap<String, String>,
    /// Now, in ms since the epoch, from the service's clock.
    pub now_ms: u64,
}

/// A page of the console that a workflow adds.
pub trait Page: Send + Sync + Sized + 'static {
    /// What the page shows, as data: the JSON answer, and what [`Page::body`] and
    /// [`Page::text`] render.
    type View: Serialize + DeserializeOwned + Send;
    /// The page's title and its name in the console's navigation.
    const TITLE: &'static str;
    /// Where the console serves it.
    const PATH: &'static str;
    /// Other paths that serve the same view (an older name kept for scripts).
    const ALSO: &'static [&'static str] = &[];
    /// Its name under the workflow's CLI command (`history` in `tugboat spot history`).
    const SUBCOMMAND: &'static str;
    /// The subcommand's help.
    const ABOUT: &'static str;

    /// The subcommand's options (string-valued: the page parses them as it parses the
    /// URL's query); each one's value is the query key of its id.
    fn options() -> Vec<clap::Arg> {
        Vec::new()
    }

    /// The page as the service (or the CLI, without a service) holds it.
    fn build(setup: Setup<'_>) -> Self;

    /// The view, from the instances and the query; an `Err` is a bad query (400).
    fn view<'a>(&'a self, input: PageInput<'a>) -> BoxFuture<'a, Result<Self::View, String>>;

    /// The page's HTML (inside the console's layout): every value escaped with
    /// [`crate::html::esc`].
    fn body(view: &Self::View) -> String;

    /// What the CLI prints without `--json`.
    fn text(view: &Self::View) -> String;
}

/// A built page, its view erased to JSON.
pub trait PageView: Send + Sync {
    fn view<'a>(&'a self, input: PageInput<'a>) -> BoxFuture<'a, Result<Value, String>>;
}

struct Built<P>(P);

impl<P: Page> PageView for Built<P> {
    fn view<'a>(&'a self, input: PageInput<'a>) -> BoxFuture<'a, Result<Value, String>> {
        Box::pin(async move {
            let view = self.0.view(input).await?;
            serde_json::to_value(view).map_err(|e| e.to_string())
        })
    }
}

/// A page as the registration carries it: the [`Page`]'s constants and functions, erased.
#[derive(Clone, Copy)]
pub struct PageSpec {
    pub title: &'static str,
    pub path: &'static str,
    pub also: &'static [&'static str],
    pub subcommand: &'static str,
    pub about: &'static str,
    pub options: fn() -> Vec<clap::Arg>,
    pub build: fn(Setup<'_>) -> Arc<dyn PageView>,
    /// The HTML of a view; `Err` when the JSON is not this page's view.
    pub body: fn(&Value) -> Result<String, String>,
    /// The text of a view; `Err` when the JSON is not this page's view.
    pub text: fn(&Value) -> Result<String, String>,
}

impl std::fmt::Debug for PageSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageSpec")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The registration's form of page `P`.
pub fn page<P: Page>() -> PageSpec {
    fn build<P: Page>(setup: Setup<'_>) -> Arc<dyn PageView> {
        Arc::new(Built(P::build(setup)))
    }
    fn typed<P: Page>(value: &Value) -> Result<P::View, String> {
        P::View::deserialize(value).map_err(|e| format!("not a view of {}: {e}", P::PATH))
    }
    fn body<P: Page>(value: &Value) -> Result<String, String> {
        typed::<P>(value).map(|v| P::body(&v))
    }
    fn text<P: Page>(value: &Value) -> Result<String, String> {
        typed::<P>(value).map(|v| P::text(&v))
    }
    PageSpec {
        title: P::TITLE,
        path: P::PATH,
        also: P::ALSO,
        subcommand: P::SUBCOMMAND,
        about: P::ABOUT,
        options: P::options,
        build: build::<P>,
        body: body::<P>,
        text: text::<P>,
    }
}

/// What a [`Tool`] reaches the operator's machine through.
pub struct Desk<'a> {
    pub files: &'a dyn LocalFiles,
    /// Standard output.
    pub out: &'a mut dyn Write,
    /// Whether a person watches (standard error is a terminal): progress lines are for them.
    pub progress: bool,
}

/// Subcommands of a workflow's command that work on the operator's own files.
#[derive(Clone, Copy)]
pub struct Tool {
    /// The subcommands (`summarize`, `anomalies`), added beside the pages'.
    pub subcommands: fn() -> Vec<clap::Command>,
    /// Runs the one chosen, given the command's matches (the subcommand below them); `Err`
    /// is a runtime failure (exit 1).
    pub run: fn(&clap::ArgMatches, &mut Desk<'_>) -> Result<(), String>,
}

impl std::fmt::Debug for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tool").finish_non_exhaustive()
    }
}

/// What an [`Operation`] prints: its output (standard output) and its account of what it
/// did (standard error).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Printed {
    pub out: String,
    pub err: String,
}

/// Subcommands of a workflow's command that act through the ports (AWS, with the
/// configuration's settings) from the operator's machine.
#[derive(Clone, Copy)]
pub struct Operation {
    /// The subcommands, added beside the pages' and the tool's.
    pub subcommands: fn() -> Vec<clap::Command>,
    /// Runs the one chosen, given the command's matches (the subcommand below them) and the
    /// configuration and ports; `Err` is a runtime failure (exit 1).
    pub run: for<'a> fn(&'a clap::ArgMatches, Setup<'a>) -> BoxFuture<'a, Result<Printed, String>>,
}

impl Operation {
    /// Whether `name` is one of its subcommands.
    pub fn has(&self, name: &str) -> bool {
        (self.subcommands)().iter().any(|c| c.get_name() == name)
    }
}

impl std::fmt::Debug for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operation").finish_non_exhaustive()
    }
}

/// A workflow's CLI command: its pages' subcommands, its tool's and its operation's.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    /// The command's name (`spot`, `cur`).
    pub name: &'static str,
    pub about: &'static str,
    pub kind: &'static str,
    pub pages: Vec<PageSpec>,
    pub tool: Option<Tool>,
    pub operation: Option<Operation>,
    /// The tool's subcommands are also `tugboat workflows <subcommand>`.
    pub tool_under_workflows: bool,
}

impl CommandSpec {
    /// The clap command: every page with its options and `--json`, and the tool's.
    pub fn clap(&self) -> clap::Command {
        let mut command = clap::Command::new(self.name)
            .about(self.about)
            .subcommand_required(true)
            .arg_required_else_help(true);
        for p in &self.pages {
            command = command.subcommand(
                clap::Command::new(p.subcommand)
                    .about(p.about)
                    .args((p.options)())
                    .arg(
                        clap::Arg::new("json")
                            .long("json")
                            .action(clap::ArgAction::SetTrue)
                            .help("Print JSON instead of text."),
                    ),
            );
        }
        if let Some(tool) = &self.tool {
            command = command.subcommands((tool.subcommands)());
        }
        if let Some(operation) = &self.operation {
            command = command.subcommands((operation.subcommands)());
        }
        command
    }

    /// The page that subcommand `name` prints, if it is a page's.
    pub fn page(&self, name: &str) -> Option<&PageSpec> {
        self.pages.iter().find(|p| p.subcommand == name)
    }
}

/// A page subcommand's options as the page's query: each option given, by its id.
pub fn query_of(spec: &PageSpec, matches: &clap::ArgMatches) -> BTreeMap<String, String> {
    let mut query = BTreeMap::new();
    for arg in (spec.options)() {
        let id = arg.get_id().as_str().to_owned();
        if let Ok(Some(value)) = matches.try_get_one::<String>(&id) {
            query.insert(id, value.clone());
        }
    }
    query
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::workflows::Catalog;

    /// The console's own routes, which no workflow's page may take.
    const CONSOLE: &[&str] = &[
        "/",
        "/healthz",
        "/readyz",
        "/metrics",
        "/events",
        "/workflows",
        "/routes",
        "/dead-letters",
    ];

    #[test]
    fn the_builtin_pages_and_commands_are_registered_with_their_workflows() {
        let commands = Catalog::builtin().commands();
        let named: Vec<_> = commands.iter().map(|c| (c.name, c.kind)).collect();
        assert_eq!(
            named,
            [
                ("cur", "cur_ingest"),
                ("spot", "spot_drain"),
                ("resources", "resource_scan"),
                ("states", "states")
            ]
        );
        // The States Language's command: a tool on the operator's files, no page.
        assert!(commands[3].tool.is_some() && commands[3].pages.is_empty());
        let cur = &commands[0];
        assert_eq!(cur.page("costs").map(|p| p.path), Some("/costs"));
        assert!(cur.tool.is_some());
        let spot = &commands[1];
        assert_eq!(spot.page("history").map(|p| p.path), Some("/interruptions"));
        assert!(spot.page("costs").is_none());
        let resources = &commands[2];
        assert_eq!(
            resources.page("findings").map(|p| p.path),
            Some("/findings")
        );
        assert!(resources.operation.is_some_and(|o| o.has("scan")));
        // Every path once, none of them the console's own; every command a valid clap one.
        let mut paths = BTreeSet::new();
        for c in &commands {
            c.clap().debug_assert();
            for p in &c.pages {
                for path in std::iter::once(p.path).chain(p.also.iter().copied()) {
                    assert!(!CONSOLE.contains(&path), "{path} is the console's");
                    assert!(paths.insert(path), "{path} twice");
                }
            }
        }
    }

    #[test]
    fn a_page_subcommand_s_options_are_its_query() {
        let commands = Catalog::builtin().commands();
        let cur = &commands[0];
        let matches = cur
            .clap()
            .try_get_matches_from(["cur", "costs", "--period", "2026-11"])
            .unwrap();
        let (name, sub) = matches.subcommand().unwrap();
        let query = query_of(cur.page(name).unwrap(), sub);
        assert_eq!(
            query,
            BTreeMap::from([("period".to_owned(), "2026-11".to_owned())])
        );
    }

    #[test]
    fn a_view_of_another_shape_is_an_error_not_a_panic() {
        let commands = Catalog::builtin().commands();
        for c in &commands {
            for p in &c.pages {
                assert!((p.text)(&serde_json::json!({"not": "a view"})).is_err());
                assert!((p.body)(&serde_json::json!([1, 2])).is_err());
            }
        }
    }
}
