//! A state machine definition (Amazon States Language, JSONPath mode), parsed and checked
//! whole when it loads: every state's fields against what its type allows and tugboat runs,
//! every transition's target, reachability, paths, payload templates, intrinsic calls, choice
//! rules, retriers and catchers. An error names the JSON pointer of what is wrong
//! (`/States/Start/Retry/0/BackoffRate: must be at least 1.0`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::choice::{Rule, timestamp};
use super::path::Path;
use super::payload::{Template, pointer_escape};

/// A state machine (or a `Parallel` branch, or a `Map` item processor).
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    pub start_at: String,
    pub states: BTreeMap<String, State>,
    /// The execution's limit (top level only).
    pub timeout_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub kind: Kind,
    pub input_path: Io,
    pub output_path: Io,
    /// `None` for Choice, Succeed and Fail.
    pub transition: Option<Transition>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Next(String),
    End,
}

/// `InputPath` / `OutputPath`: absent (`$`, everything), `null` (an empty object), or a path.
#[derive(Debug, Clone, PartialEq)]
pub enum Io {
    All,
    Nothing,
    Path(Path),
}

/// `ResultPath`: absent (the result replaces the input), `null` (the result is dropped), or a
/// reference path (the result placed into the input there).
#[derive(Debug, Clone, PartialEq)]
pub enum ResultPath {
    Replace,
    Discard,
    At(Path),
}

/// A literal or a path (`Error`/`ErrorPath`, `Cause`/`CausePath`).
#[derive(Debug, Clone, PartialEq)]
pub enum Text {
    Literal(String),
    Path(Path),
}

/// When a `Wait` state ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Until {
    Seconds(u64),
    SecondsPath(Path),
    Timestamp(String),
    TimestampPath(Path),
}

/// The Task resources tugboat runs: Step Functions' service integrations where one exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    EcsRunTaskSync,
    SnsPublish,
    SqsSendMessage,
    DynamoPutItem,
    DynamoGetItem,
    DynamoUpdateItem,
    HttpInvoke,
    MqttPublish,
}

impl Resource {
    pub const ALL: &'static [(Resource, &'static str)] = &[
        (Resource::EcsRunTaskSync, "arn:aws:states:::ecs:runTask.sync"),
        (Resource::SnsPublish, "arn:aws:states:::sns:publish"),
        (Resource::SqsSendMessage, "arn:aws:states:::sqs:sendMessage"),
        (Resource::DynamoPutItem, "arn:aws:states:::dynamodb:putItem"),
        (Resource::DynamoGetItem, "arn:aws:states:::dynamodb:getItem"),
        (Resource::DynamoUpdateItem, "arn:aws:states:::dynamodb:updateItem"),
        (Resource::HttpInvoke, "arn:aws:states:::http:invoke"),
        (Resource::MqttPublish, "tugboat:mqtt:publish"),
    ];

    pub fn arn(self) -> &'static str {
        Resource::ALL.iter().find(|(r, _)| *r == self).map_or("", |(_, a)| a)
    }

    /// The resource a Task's `Resource` field names, if tugboat runs it.
    pub fn from_arn(arn: &str) -> Option<Resource> {
        Resource::ALL.iter().find(|(_, a)| *a == arn).map(|(r, _)| *r)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Pass {
        parameters: Option<Template>,
        result: Option<Value>,
        result_path: ResultPath,
    },
    Task {
        resource: Resource,
        parameters: Option<Template>,
        result_selector: Option<Template>,
        result_path: ResultPath,
        timeout_seconds: Option<u64>,
        retry: Vec<Retrier>,
        catch: Vec<Catcher>,
    },
    Choice {
        choices: Vec<(Rule, String)>,
        default: Option<String>,
    },
    Wait {
        until: Until,
    },
    Succeed,
    Fail {
        error: Option<Text>,
        cause: Option<Text>,
    },
    Parallel {
        branches: Vec<Definition>,
        parameters: Option<Template>,
        result_selector: Option<Template>,
        result_path: ResultPath,
        retry: Vec<Retrier>,
        catch: Vec<Catcher>,
    },
    Map {
        processor: Box<Definition>,
        items_path: Option<Path>,
        item_selector: Option<Template>,
        /// 0: no limit.
        max_concurrency: u32,
        result_selector: Option<Template>,
        result_path: ResultPath,
        retry: Vec<Retrier>,
        catch: Vec<Catcher>,
    },
}

impl Kind {
    pub fn type_name(&self) -> &'static str {
        match self {
            Kind::Pass { .. } => "Pass",
            Kind::Task { .. } => "Task",
            Kind::Choice { .. } => "Choice",
            Kind::Wait { .. } => "Wait",
            Kind::Succeed => "Succeed",
            Kind::Fail { .. } => "Fail",
            Kind::Parallel { .. } => "Parallel",
            Kind::Map { .. } => "Map",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    Full,
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Retrier {
    pub errors: Vec<String>,
    pub interval_seconds: u64,
    pub max_attempts: u32,
    pub backoff_rate: f64,
    pub max_delay_seconds: Option<u64>,
    pub jitter: Jitter,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Catcher {
    pub errors: Vec<String>,
    pub next: String,
    pub result_path: ResultPath,
}

/// The error names the States Language defines; a name starting `States.` must be one.
pub const STATES_ERRORS: &[&str] = &[
    "States.ALL",
    "States.Timeout",
    "States.HeartbeatTimeout",
    "States.TaskFailed",
    "States.Permissions",
    "States.ResultPathMatchFailure",
    "States.ParameterPathFailure",
    "States.BranchFailed",
    "States.NoChoiceMatched",
    "States.IntrinsicFailure",
    "States.Runtime",
    "States.ExceedToleratedFailureThreshold",
    "States.ItemReaderFailed",
    "States.ResultWriterFailed",
    "States.QueryEvaluationError",
];

/// Step Functions' limit on a state's name.
const MAX_NAME: usize = 80;

/// Fields of the States Language that tugboat does not run: refused by name, so that a
/// definition never silently means less than it says.
const NOT_SUPPORTED: &[(&str, &str)] = &[
    ("HeartbeatSeconds", "task heartbeats are not supported"),
    ("HeartbeatSecondsPath", "task heartbeats are not supported"),
    ("TimeoutSecondsPath", "a timeout from a path is not supported; give TimeoutSeconds"),
    ("Credentials", "cross-account task credentials are not supported"),
    ("ItemReader", "a distributed Map (ItemReader) is not supported"),
    ("ItemBatcher", "a distributed Map (ItemBatcher) is not supported"),
    ("ResultWriter", "a distributed Map (ResultWriter) is not supported"),
    ("ToleratedFailureCount", "a distributed Map's tolerated failures are not supported"),
    ("ToleratedFailurePercentage", "a distributed Map's tolerated failures are not supported"),
    ("ToleratedFailureCountPath", "a distributed Map's tolerated failures are not supported"),
    ("ToleratedFailurePercentagePath", "a distributed Map's tolerated failures are not supported"),
    ("MaxConcurrencyPath", "a concurrency from a path is not supported; give MaxConcurrency"),
    ("Label", "a distributed Map's Label is not supported"),
    ("Arguments", "JSONata mode is not supported yet (QueryLanguage JSONPath)"),
    ("Output", "JSONata mode is not supported yet (QueryLanguage JSONPath)"),
    ("Assign", "variables (Assign) are not supported yet"),
    ("QueryLanguage", "JSONata mode is not supported yet (QueryLanguage JSONPath)"),
];

/// The fields each state type may have.
fn allowed(type_name: &str) -> &'static [&'static str] {
    const IO: &[&str] = &["Type", "Comment", "InputPath", "OutputPath"];
    match type_name {
        "Pass" => &["Type", "Comment", "InputPath", "OutputPath", "Next", "End", "Parameters", "Result", "ResultPath"],
        "Task" => &[
            "Type", "Comment", "InputPath", "OutputPath", "Next", "End", "Resource", "Parameters", "ResultSelector",
            "ResultPath", "TimeoutSeconds", "Retry", "Catch",
        ],
        "Choice" => &["Type", "Comment", "InputPath", "OutputPath", "Choices", "Default"],
        "Wait" => &["Type", "Comment", "InputPath", "OutputPath", "Next", "End", "Seconds", "SecondsPath", "Timestamp", "TimestampPath"],
        "Succeed" => IO,
        "Fail" => &["Type", "Comment", "Error", "ErrorPath", "Cause", "CausePath"],
        "Parallel" => &[
            "Type", "Comment", "InputPath", "OutputPath", "Next", "End", "Branches", "Parameters", "ResultSelector",
            "ResultPath", "Retry", "Catch",
        ],
        "Map" => &[
            "Type", "Comment", "InputPath", "OutputPath", "Next", "End", "ItemProcessor", "Iterator", "ItemsPath",
            "ItemSelector", "Parameters", "MaxConcurrency", "ResultSelector", "ResultPath", "Retry", "Catch",
        ],
        _ => &[],
    }
}

const TYPES: &[&str] = &["Pass", "Task", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map"];

impl Definition {
    /// Parses a definition's JSON text.
    pub fn from_json(text: &str) -> Result<Definition, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        Definition::parse(&v)
    }

    /// The same definition written in YAML (as the Step Functions console and SAM write them).
    pub fn from_yaml(text: &str) -> Result<Definition, String> {
        let v: Value = serde_yaml_ng::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
        Definition::parse(&v)
    }

    /// A definition file's text, read as YAML when its name ends in `.yaml` or `.yml` and as
    /// JSON otherwise.
    pub fn from_file_text(name: &std::path::Path, text: &str) -> Result<Definition, String> {
        match name.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Definition::from_yaml(text),
            _ => Definition::from_json(text),
        }
    }

    /// Parses a whole state machine.
    pub fn parse(v: &Value) -> Result<Definition, String> {
        let o = v.as_object().ok_or("a definition must be a JSON object with StartAt and States")?;
        if let Some(q) = o.get("QueryLanguage")
            && q != "JSONPath"
        {
            return Err(format!("/QueryLanguage: {q} is not supported yet; tugboat runs JSONPath definitions"));
        }
        if let Some(version) = o.get("Version")
            && version != "1.0"
        {
            return Err(format!("/Version: must be \"1.0\", got {version}"));
        }
        let timeout_seconds = match o.get("TimeoutSeconds") {
            None => None,
            Some(t) => Some(positive(t, "/TimeoutSeconds")?),
        };
        for k in o.keys() {
            if !["StartAt", "States", "Comment", "Version", "TimeoutSeconds", "QueryLanguage"].contains(&k.as_str()) {
                return Err(format!("/{}: is not a field of a state machine", pointer_escape(k)));
            }
        }
        let mut d = Definition::scope(o, "")?;
        d.timeout_seconds = timeout_seconds;
        Ok(d)
    }

    /// A scope (the machine, a branch, an item processor) at pointer `at`.
    fn scope(o: &Map<String, Value>, at: &str) -> Result<Definition, String> {
        let start_at = o.get("StartAt").and_then(Value::as_str).ok_or_else(|| format!("{at}/StartAt: a state name is required"))?;
        let states = o
            .get("States")
            .and_then(Value::as_object)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("{at}/States: an object of at least one state is required"))?;
        let mut parsed = BTreeMap::new();
        for (name, state) in states {
            let here = format!("{at}/States/{}", pointer_escape(name));
            if name.is_empty() || name.chars().count() > MAX_NAME {
                return Err(format!("{here}: a state's name must be 1 to {MAX_NAME} characters"));
            }
            parsed.insert(name.clone(), State::parse(state, &here)?);
        }
        let d = Definition { start_at: start_at.to_string(), states: parsed, timeout_seconds: None };
        d.check_transitions(at)?;
        Ok(d)
    }

    /// Every target exists, and every state can be reached from `StartAt`.
    fn check_transitions(&self, at: &str) -> Result<(), String> {
        if !self.states.contains_key(&self.start_at) {
            return Err(format!("{at}/StartAt: {:?} is not a state of {at}/States", self.start_at));
        }
        let mut reached = BTreeSet::new();
        let mut todo = vec![self.start_at.as_str()];
        while let Some(name) = todo.pop() {
            if !reached.insert(name) {
                continue;
            }
            let state = &self.states[name];
            for (field, target) in state.targets() {
                if !self.states.contains_key(target) {
                    return Err(format!("{at}/States/{}/{field}: {target:?} is not a state of {at}/States", pointer_escape(name)));
                }
                todo.push(target);
            }
        }
        if let Some(lost) = self.states.keys().find(|n| !reached.contains(n.as_str())) {
            return Err(format!("{at}/States/{}: no transition reaches this state from StartAt", pointer_escape(lost)));
        }
        Ok(())
    }

    /// Every state of this scope and the scopes inside it, with its pointer.
    pub fn walk(&self, at: &str, visit: &mut dyn FnMut(&str, &str, &State)) {
        for (name, state) in &self.states {
            let here = format!("{at}/States/{}", pointer_escape(name));
            visit(&here, name, state);
            match &state.kind {
                Kind::Parallel { branches, .. } => {
                    for (i, b) in branches.iter().enumerate() {
                        b.walk(&format!("{here}/Branches/{i}"), visit);
                    }
                }
                Kind::Map { processor, .. } => processor.walk(&format!("{here}/ItemProcessor"), visit),
                _ => {}
            }
        }
    }
}

impl State {
    /// The states this one may go to, each with the field that names it.
    pub fn targets(&self) -> Vec<(String, &str)> {
        let mut out = Vec::new();
        if let Some(Transition::Next(n)) = &self.transition {
            out.push(("Next".to_string(), n.as_str()));
        }
        match &self.kind {
            Kind::Choice { choices, default } => {
                for (i, (_, next)) in choices.iter().enumerate() {
                    out.push((format!("Choices/{i}/Next"), next.as_str()));
                }
                if let Some(d) = default {
                    out.push(("Default".into(), d.as_str()));
                }
            }
            Kind::Task { catch, .. } | Kind::Parallel { catch, .. } | Kind::Map { catch, .. } => {
                for (i, c) in catch.iter().enumerate() {
                    out.push((format!("Catch/{i}/Next"), c.next.as_str()));
                }
            }
            _ => {}
        }
        out
    }

    fn parse(v: &Value, at: &str) -> Result<State, String> {
        let o = v.as_object().ok_or_else(|| format!("{at}: a state must be an object"))?;
        let type_name = o.get("Type").and_then(Value::as_str).ok_or_else(|| format!("{at}/Type: one of {} is required", TYPES.join(", ")))?;
        if !TYPES.contains(&type_name) {
            return Err(format!("{at}/Type: {type_name:?} is not a state type ({})", TYPES.join(", ")));
        }
        let fields = allowed(type_name);
        for k in o.keys() {
            if fields.contains(&k.as_str()) {
                continue;
            }
            let here = format!("{at}/{}", pointer_escape(k));
            return Err(match NOT_SUPPORTED.iter().find(|(f, _)| f == k) {
                Some((_, why)) => format!("{here}: {why}"),
                None => format!("{here}: is not a field of a {type_name} state (its fields: {})", fields.join(", ")),
            });
        }
        let f = |name: &str| o.get(name);
        let ptr = |name: &str| format!("{at}/{name}");
        let terminal = matches!(type_name, "Choice" | "Succeed" | "Fail");
        let transition = if terminal {
            None
        } else {
            Some(match (f("Next"), f("End")) {
                (Some(Value::String(n)), None) => Transition::Next(n.clone()),
                (None, Some(Value::Bool(true))) => Transition::End,
                (Some(_), Some(_)) => return Err(format!("{at}: a state has Next or End, not both")),
                (Some(_), None) => return Err(format!("{}: must be a state's name", ptr("Next"))),
                (None, Some(_)) => return Err(format!("{}: must be true (or give Next)", ptr("End"))),
                (None, None) => return Err(format!("{at}: a {type_name} state needs Next or \"End\": true")),
            })
        };
        let template = |name: &str| f(name).map(|v| Template::parse(v, &ptr(name))).transpose();
        let result_path = || result_path(f("ResultPath"), &ptr("ResultPath"));
        let retry = || match f("Retry") {
            None => Ok(Vec::new()),
            Some(v) => retriers(v, &ptr("Retry")),
        };
        let catch = || match f("Catch") {
            None => Ok(Vec::new()),
            Some(v) => catchers(v, &ptr("Catch")),
        };
        let kind = match type_name {
            "Pass" => Kind::Pass { parameters: template("Parameters")?, result: f("Result").cloned(), result_path: result_path()? },
            "Task" => {
                let arn = f("Resource").and_then(Value::as_str).ok_or_else(|| format!("{}: a resource is required", ptr("Resource")))?;
                let resource = Resource::from_arn(arn).ok_or_else(|| {
                    let known: Vec<&str> = Resource::ALL.iter().map(|(_, a)| *a).collect();
                    format!("{}: {arn:?} is not a resource tugboat runs ({})", ptr("Resource"), known.join(", "))
                })?;
                let parameters = template("Parameters")?;
                if let Some(Template::Object(fields)) = &parameters {
                    super::tasks::check_names(resource, fields.iter().map(|(n, _)| n.as_str()))
                        .map_err(|e| format!("{}{e}", ptr("Parameters")))?;
                }
                Kind::Task {
                    resource,
                    parameters,
                    result_selector: template("ResultSelector")?,
                    result_path: result_path()?,
                    timeout_seconds: f("TimeoutSeconds").map(|t| positive(t, &ptr("TimeoutSeconds"))).transpose()?,
                    retry: retry()?,
                    catch: catch()?,
                }
            }
            "Choice" => {
                let list = f("Choices")
                    .and_then(Value::as_array)
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| format!("{}: a non-empty array of rules is required", ptr("Choices")))?;
                let mut choices = Vec::new();
                for (i, r) in list.iter().enumerate() {
                    let here = format!("{}/{i}", ptr("Choices"));
                    let rule = Rule::parse(r, &here, true)?;
                    let next = r["Next"].as_str().ok_or_else(|| format!("{here}/Next: must be a state's name"))?;
                    choices.push((rule, next.to_string()));
                }
                let default = match f("Default") {
                    None => None,
                    Some(Value::String(d)) => Some(d.clone()),
                    Some(_) => return Err(format!("{}: must be a state's name", ptr("Default"))),
                };
                Kind::Choice { choices, default }
            }
            "Wait" => {
                let given: Vec<&str> = ["Seconds", "SecondsPath", "Timestamp", "TimestampPath"].into_iter().filter(|k| o.contains_key(*k)).collect();
                if given.len() != 1 {
                    return Err(format!("{at}: a Wait state has exactly one of Seconds, SecondsPath, Timestamp, TimestampPath (found {})", given.len()));
                }
                let v = &o[given[0]];
                let here = ptr(given[0]);
                let until = match given[0] {
                    "Seconds" => Until::Seconds(v.as_u64().ok_or_else(|| format!("{here}: must be a whole number of seconds, 0 or more"))?),
                    "Timestamp" => {
                        let t = v.as_str().filter(|t| timestamp(t).is_some()).ok_or_else(|| format!("{here}: must be an RFC 3339 timestamp such as \"2026-01-01T00:00:00Z\""))?;
                        Until::Timestamp(t.to_string())
                    }
                    "SecondsPath" => Until::SecondsPath(reference(v, &here)?),
                    _ => Until::TimestampPath(reference(v, &here)?),
                };
                Kind::Wait { until }
            }
            "Succeed" => Kind::Succeed,
            "Fail" => {
                let text = |lit: &str, path: &str| -> Result<Option<Text>, String> {
                    match (f(lit), f(path)) {
                        (Some(_), Some(_)) => Err(format!("{at}: {lit} or {path}, not both")),
                        (Some(Value::String(s)), None) => Ok(Some(Text::Literal(s.clone()))),
                        (Some(_), None) => Err(format!("{}: must be a string", ptr(lit))),
                        (None, Some(p)) => Ok(Some(Text::Path(reference(p, &ptr(path))?))),
                        (None, None) => Ok(None),
                    }
                };
                Kind::Fail { error: text("Error", "ErrorPath")?, cause: text("Cause", "CausePath")? }
            }
            "Parallel" => {
                let list = f("Branches")
                    .and_then(Value::as_array)
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| format!("{}: a non-empty array of branches is required", ptr("Branches")))?;
                let mut branches = Vec::new();
                for (i, b) in list.iter().enumerate() {
                    let here = format!("{}/{i}", ptr("Branches"));
                    let bo = b.as_object().ok_or_else(|| format!("{here}: a branch must be an object with StartAt and States"))?;
                    only(bo, &["StartAt", "States", "Comment"], &here)?;
                    branches.push(Definition::scope(bo, &here)?);
                }
                Kind::Parallel {
                    branches,
                    parameters: template("Parameters")?,
                    result_selector: template("ResultSelector")?,
                    result_path: result_path()?,
                    retry: retry()?,
                    catch: catch()?,
                }
            }
            _ => {
                let (field, processor) = match (f("ItemProcessor"), f("Iterator")) {
                    (Some(_), Some(_)) => return Err(format!("{at}: ItemProcessor or Iterator, not both")),
                    (Some(p), None) => ("ItemProcessor", p),
                    (None, Some(p)) => ("Iterator", p),
                    (None, None) => return Err(format!("{}: required (the states each item runs through)", ptr("ItemProcessor"))),
                };
                let here = ptr(field);
                let po = processor.as_object().ok_or_else(|| format!("{here}: must be an object with StartAt and States"))?;
                if let Some(config) = po.get("ProcessorConfig") {
                    let mode = config.get("Mode").and_then(Value::as_str).unwrap_or("INLINE");
                    if mode != "INLINE" {
                        return Err(format!("{here}/ProcessorConfig/Mode: {mode:?} is not supported; tugboat runs INLINE maps"));
                    }
                }
                only(po, &["StartAt", "States", "Comment", "ProcessorConfig"], &here)?;
                let processor = Box::new(Definition::scope(po, &here)?);
                let item_selector = match (f("ItemSelector"), f("Parameters")) {
                    (Some(_), Some(_)) => return Err(format!("{at}: ItemSelector or Parameters, not both")),
                    (Some(_), None) => template("ItemSelector")?,
                    (None, Some(_)) => template("Parameters")?,
                    (None, None) => None,
                };
                let max_concurrency = match f("MaxConcurrency") {
                    None => 0,
                    Some(m) => m.as_u64().and_then(|m| u32::try_from(m).ok()).ok_or_else(|| format!("{}: must be a whole number, 0 (no limit) or more", ptr("MaxConcurrency")))?,
                };
                Kind::Map {
                    processor,
                    items_path: f("ItemsPath").map(|p| reference(p, &ptr("ItemsPath"))).transpose()?,
                    item_selector,
                    max_concurrency,
                    result_selector: template("ResultSelector")?,
                    result_path: result_path()?,
                    retry: retry()?,
                    catch: catch()?,
                }
            }
        };
        Ok(State { kind, input_path: io(f("InputPath"), &ptr("InputPath"))?, output_path: io(f("OutputPath"), &ptr("OutputPath"))?, transition })
    }
}

fn only(o: &Map<String, Value>, fields: &[&str], at: &str) -> Result<(), String> {
    match o.keys().find(|k| !fields.contains(&k.as_str())) {
        Some(k) => Err(format!("{at}/{}: is not a field here (its fields: {})", pointer_escape(k), fields.join(", "))),
        None => Ok(()),
    }
}

fn positive(v: &Value, at: &str) -> Result<u64, String> {
    v.as_u64().filter(|n| *n > 0).ok_or_else(|| format!("{at}: must be a whole number of seconds, at least 1"))
}

fn reference(v: &Value, at: &str) -> Result<Path, String> {
    let text = v.as_str().ok_or_else(|| format!("{at}: must be a path"))?;
    Path::reference(text).map_err(|e| format!("{at}: {e}"))
}

fn io(v: Option<&Value>, at: &str) -> Result<Io, String> {
    Ok(match v {
        None => Io::All,
        Some(Value::Null) => Io::Nothing,
        Some(Value::String(s)) => Io::Path(Path::parse(s).map_err(|e| format!("{at}: {e}"))?),
        Some(_) => return Err(format!("{at}: must be a path or null")),
    })
}

fn result_path(v: Option<&Value>, at: &str) -> Result<ResultPath, String> {
    Ok(match v {
        None => ResultPath::Replace,
        Some(Value::Null) => ResultPath::Discard,
        Some(p) => {
            let p = reference(p, at)?;
            if p.root == super::path::Root::Context {
                return Err(format!("{at}: a result is placed in the state's data ($), not the context object"));
            }
            ResultPath::At(p)
        }
    })
}

fn error_names(v: Option<&Value>, at: &str, last: bool) -> Result<Vec<String>, String> {
    let list = v
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| format!("{at}: a non-empty array of error names is required"))?;
    let mut names = Vec::new();
    for (i, e) in list.iter().enumerate() {
        let here = format!("{at}/{i}");
        let name = e.as_str().filter(|s| !s.is_empty()).ok_or_else(|| format!("{here}: must be an error name"))?;
        // The HTTP task's answers are named by their status (`States.Http.StatusCode.429`).
        let http_status = name
            .strip_prefix("States.Http.StatusCode.")
            .is_some_and(|code| code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()));
        if name.starts_with("States.") && !STATES_ERRORS.contains(&name) && !http_status {
            return Err(format!("{here}: {name:?} is not an error the States Language defines ({}, States.Http.StatusCode.NNN)", STATES_ERRORS.join(", ")));
        }
        if name == "States.ALL" && (list.len() > 1 || !last) {
            return Err(format!("{here}: States.ALL must stand alone, in the last retrier or catcher"));
        }
        names.push(name.to_string());
    }
    Ok(names)
}

fn retriers(v: &Value, at: &str) -> Result<Vec<Retrier>, String> {
    let list = v.as_array().ok_or_else(|| format!("{at}: must be an array of retriers"))?;
    let mut out = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let here = format!("{at}/{i}");
        let o = r.as_object().ok_or_else(|| format!("{here}: a retrier must be an object"))?;
        only(o, &["ErrorEquals", "IntervalSeconds", "MaxAttempts", "BackoffRate", "MaxDelaySeconds", "JitterStrategy", "Comment"], &here)?;
        let errors = error_names(o.get("ErrorEquals"), &format!("{here}/ErrorEquals"), i + 1 == list.len())?;
        let interval_seconds = match o.get("IntervalSeconds") {
            None => 1,
            Some(v) => positive(v, &format!("{here}/IntervalSeconds"))?,
        };
        let max_attempts = match o.get("MaxAttempts") {
            None => 3,
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n <= 99_999_999)
                .ok_or_else(|| format!("{here}/MaxAttempts: must be a whole number, 0 to 99999999"))?,
        };
        let backoff_rate = match o.get("BackoffRate") {
            None => 2.0,
            Some(v) => v.as_f64().filter(|b| *b >= 1.0 && b.is_finite()).ok_or_else(|| format!("{here}/BackoffRate: must be a number, at least 1.0"))?,
        };
        let max_delay_seconds = o.get("MaxDelaySeconds").map(|v| positive(v, &format!("{here}/MaxDelaySeconds"))).transpose()?;
        let jitter = match o.get("JitterStrategy").map(|j| j.as_str()) {
            None | Some(Some("NONE")) => Jitter::None,
            Some(Some("FULL")) => Jitter::Full,
            Some(_) => return Err(format!("{here}/JitterStrategy: must be \"FULL\" or \"NONE\"")),
        };
        out.push(Retrier { errors, interval_seconds, max_attempts, backoff_rate, max_delay_seconds, jitter });
    }
    Ok(out)
}

fn catchers(v: &Value, at: &str) -> Result<Vec<Catcher>, String> {
    let list = v.as_array().ok_or_else(|| format!("{at}: must be an array of catchers"))?;
    let mut out = Vec::new();
    for (i, c) in list.iter().enumerate() {
        let here = format!("{at}/{i}");
        let o = c.as_object().ok_or_else(|| format!("{here}: a catcher must be an object"))?;
        only(o, &["ErrorEquals", "Next", "ResultPath", "Comment"], &here)?;
        let errors = error_names(o.get("ErrorEquals"), &format!("{here}/ErrorEquals"), i + 1 == list.len())?;
        let next = o.get("Next").and_then(Value::as_str).ok_or_else(|| format!("{here}/Next: a state's name is required"))?;
        out.push(Catcher { errors, next: next.to_string(), result_path: result_path(o.get("ResultPath"), &format!("{here}/ResultPath"))? });
    }
    Ok(out)
}

/// Whether an error named `error` is matched by `names`: by name; `States.ALL` matches any,
/// `States.TaskFailed` any but `States.Timeout`. `States.Runtime` is never matched: no
/// retrier or catcher takes it, it always ends the execution (as in Step Functions).
pub fn matches(names: &[String], error: &str) -> bool {
    error != "States.Runtime"
        && error != super::run::SUSPENDED
        && names.iter().any(|n| n == error || n == "States.ALL" || (n == "States.TaskFailed" && error != "States.Timeout"))
}
