//! The `[workflows]` section: the definitions routes start, by name.
//!
//! ```toml
//! [workflows.oom-forwarder]
//! definition = "flows/oom-forwarder.asl.json"   # relative to this file's folder
//!
//! [workflows.hello]
//! definition_json = '''
//! {"StartAt": "Hi", "States": {"Hi": {"Type": "Pass", "End": true}}}
//! '''
//!
//! [workflows.bye]
//! definition_yaml = '''
//! StartAt: Bye
//! States:
//!   Bye: {Type: Pass, End: true}
//! '''
//!
//! [[routes]]
//! name = "oom"
//! pattern = { source = ["aws.ecs"], detail-type = ["ECS Task State Change"] }
//! workflow = "states"
//! params = { definition = "oom-forwarder" }
//! ```
//!
//! An inline definition is checked whole when the configuration loads; a file is read and
//! checked when the service starts (a workflow folder reads no file while the configuration
//! loads), and `tugboat states validate FILE` checks it beforehand.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::definition::Definition;
use crate::config::{BadKey, parse_section};
use crate::workflows::Section;

/// The section's name in the configuration file.
pub const NAME: &str = "workflows";

pub const SECTION: Section = Section {
    name: NAME,
    check: |value| parse(value).map(|_| ()),
};

/// One named definition: a file, or the definition's JSON written in the configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// A definition file (Amazon States Language; YAML when it ends in `.yaml` or `.yml`,
    /// JSON otherwise), relative to the configuration file's folder unless absolute.
    #[serde(default)]
    pub definition: Option<PathBuf>,
    /// The definition itself, as JSON text.
    #[serde(default)]
    pub definition_json: Option<String>,
    /// The definition itself, as YAML text.
    #[serde(default)]
    pub definition_yaml: Option<String>,
}

pub type Entries = BTreeMap<String, Entry>;

/// Where an entry's definition comes from, once checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    File(PathBuf),
    Inline(Definition),
}

/// Parses and checks the section: each entry names exactly one source, and an inline one is
/// a whole, valid definition (errors name the key and the JSON pointer).
pub fn parse(value: &toml::Value) -> Result<BTreeMap<String, Source>, BadKey> {
    let entries: Entries = parse_section(NAME, value)?;
    let mut out = BTreeMap::new();
    for (name, e) in entries {
        let key = |field: &str| format!("{NAME}.{name}.{field}");
        check_name(&name).map_err(|m| BadKey::at(format!("{NAME}.{name}"), m))?;
        let given = [e.definition.is_some(), e.definition_json.is_some(), e.definition_yaml.is_some()];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(BadKey::at(
                format!("{NAME}.{name}"),
                "give one of definition (a file), definition_json and definition_yaml".into(),
            ));
        }
        let source = match (e.definition, e.definition_json, e.definition_yaml) {
            (Some(path), _, _) if path.as_os_str().is_empty() => {
                return Err(BadKey::at(key("definition"), "must not be empty".into()));
            }
            (Some(path), _, _) => Source::File(path),
            (_, Some(text), _) => Source::Inline(
                Definition::from_json(&text).map_err(|m| BadKey::at(key("definition_json"), m))?,
            ),
            (_, _, Some(text)) => Source::Inline(
                Definition::from_yaml(&text).map_err(|m| BadKey::at(key("definition_yaml"), m))?,
            ),
            (None, None, None) => {
                return Err(BadKey::at(
                    format!("{NAME}.{name}"),
                    "needs definition = \"FILE\", definition_json = '''{…}''' or definition_yaml = '''…'''".into(),
                ));
            }
        };
        out.insert(name, source);
    }
    Ok(out)
}

/// A definition's name is what a route's params say and what the console shows: letters,
/// digits, `-`, `_`, `.`, at most 80.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 80
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the name {name:?} must be 1 to 80 letters, digits, '-', '_' or '.'"
        ))
    }
}

/// The section as a params check sees it: absent is empty.
pub fn from_sections(
    sections: &BTreeMap<String, toml::Value>,
) -> Result<BTreeMap<String, Source>, String> {
    match sections.get(NAME) {
        None => Ok(BTreeMap::new()),
        Some(v) => parse(v).map_err(|b| b.to_string()),
    }
}

/// A route's params: which definition it starts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    pub definition: String,
}

/// Checks a route's params against the configured definitions.
pub fn check_params(params: &Value, sections: &BTreeMap<String, toml::Value>) -> Result<(), String> {
    let p: Params = crate::contract::decode(params, "params")?;
    let known = from_sections(sections)?;
    if known.contains_key(&p.definition) {
        return Ok(());
    }
    let names: Vec<&str> = known.keys().map(String::as_str).collect();
    Err(format!(
        "params.definition {:?} is not a [workflows.NAME] of this configuration (configured: {})",
        p.definition,
        if names.is_empty() { "none".to_string() } else { names.join(", ") }
    ))
}

/// A definition file's path as the service reads it: relative to the configuration file's
/// folder (`base`) unless absolute.
pub fn resolve(base: Option<&Path>, path: &Path) -> PathBuf {
    match base.and_then(Path::parent) {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<BTreeMap<String, Source>, BadKey> {
        parse(&toml::from_str::<toml::Table>(text).unwrap()["workflows"])
    }

    #[test]
    fn files_and_inline_definitions_load() {
        let s = parsed(
            "[workflows.a]\ndefinition = \"flows/a.asl.json\"\n\n[workflows.b]\ndefinition_json = '{\"StartAt\": \"P\", \"States\": {\"P\": {\"Type\": \"Pass\", \"End\": true}}}'\n",
        )
        .unwrap();
        assert_eq!(s["a"], Source::File("flows/a.asl.json".into()));
        assert!(matches!(&s["b"], Source::Inline(d) if d.start_at == "P"));
        let yaml = parsed("[workflows.c]\ndefinition_yaml = '''\nStartAt: P\nStates:\n  P:\n    Type: Pass\n    Result: {n: 1}\n    End: true\n'''\n").unwrap();
        assert_eq!(yaml["c"], Source::Inline(Definition::from_json(r#"{"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": {"n": 1}, "End": true}}}"#).unwrap()));
    }

    #[test]
    fn wrong_shapes_name_the_key() {
        let cases = [
            ("[workflows.a]\n", "workflows.a", "needs definition"),
            ("[workflows.a]\ndefinition = \"\"\n", "workflows.a.definition", "must not be empty"),
            ("[workflows.a]\ndefinition = 3\n", "workflows.a.definition", "invalid type"),
            ("[workflows.a]\nfile = \"x\"\n", "workflows.a.file", "unknown field"),
            (
                "[workflows.a]\ndefinition = \"x\"\ndefinition_json = \"{}\"\n",
                "workflows.a",
                "give one of",
            ),
            ("[workflows.a]\ndefinition_yaml = 'StartAt: [1'\n", "workflows.a.definition_yaml", "not YAML"),
            (
                "[workflows.a]\ndefinition_yaml = '''\nStartAt: P\nStates:\n  P: {Type: Pass}\n'''\n",
                "workflows.a.definition_yaml",
                "/States/P",
            ),
            (
                "[workflows.a]\ndefinition_json = '{\"StartAt\": \"P\", \"States\": {\"P\": {\"Type\": \"Pass\"}}}'\n",
                "workflows.a.definition_json",
                "/States/P",
            ),
            ("[workflows.a]\ndefinition_json = 'nope'\n", "workflows.a.definition_json", "not JSON"),
            ("[workflows.\"a b\"]\ndefinition = \"x\"\n", "workflows.a b", "letters, digits"),
            ("workflows = 3\n", "workflows", "invalid type"),
        ];
        for (text, key, message) in cases {
            let e = parsed(text).unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
            assert!(e.message.contains(message), "{text}: {e}");
        }
    }

    #[test]
    fn a_route_names_a_configured_definition() {
        let sections: BTreeMap<String, toml::Value> = toml::from_str::<toml::Table>(
            "[workflows.a]\ndefinition = \"a.json\"\n",
        )
        .unwrap()
        .into_iter()
        .collect();
        assert!(check_params(&serde_json::json!({"definition": "a"}), &sections).is_ok());
        let e = check_params(&serde_json::json!({"definition": "b"}), &sections).unwrap_err();
        assert!(e.contains("\"b\"") && e.contains("configured: a"), "{e}");
        let e = check_params(&serde_json::json!({}), &sections).unwrap_err();
        assert!(e.contains("definition"), "{e}");
        let e = check_params(&serde_json::json!({"definition": "a", "x": 1}), &sections).unwrap_err();
        assert!(e.contains("x"), "{e}");
        let e = check_params(&serde_json::json!({"definition": "a"}), &BTreeMap::new()).unwrap_err();
        assert!(e.contains("configured: none"), "{e}");
    }

    #[test]
    fn a_relative_file_is_read_beside_the_configuration() {
        let base = Path::new("/etc/tugboat/tugboat.toml");
        assert_eq!(resolve(Some(base), Path::new("flows/a.json")), Path::new("/etc/tugboat/flows/a.json"));
        assert_eq!(resolve(Some(base), Path::new("/srv/a.json")), Path::new("/srv/a.json"));
        assert_eq!(resolve(None, Path::new("a.json")), Path::new("a.json"));
    }
}
