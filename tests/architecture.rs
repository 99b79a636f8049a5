//! The architecture invariants of ARCHITECTURE.md, checked on the sources (rust-analyzer's
//! tidy tests). Each check names the invariant line of ARCHITECTURE.md it enforces and reads
//! its list of allowed files from that line, so the document says exactly what is checked.
//!
//! Code is read without comments and without its tests (`#[cfg(test)]` items, found by their
//! braces, and files named `tests.rs`): tests may build fixtures with anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// One source file: its path relative to the repository, and its non-test code lines
/// (1-based line numbers), comments removed.
struct Source {
    path: String,
    lines: Vec<(usize, String)>,
}

fn sources() -> Vec<Source> {
    let mut files = Vec::new();
    collect(&root().join("src"), &mut files);
    files.sort();
    files
        .into_iter()
        .filter(|f| f.file_name().is_some_and(|n| n != "tests.rs"))
        .map(|f| {
            let text = std::fs::read_to_string(&f).unwrap();
            let mut lines = Vec::new();
            // Inside a `#[cfg(test)]` item: (brace depth, whether its first `{` was seen).
            let mut in_test: Option<(i64, bool)> = None;
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("").trim();
                if code.is_empty() {
                    continue;
                }
                if code.starts_with("#[cfg(test)]") {
                    in_test = Some((0, false));
                    continue;
                }
                if let Some((depth, opened)) = in_test {
                    let opens = code.matches('{').count() as i64;
                    let depth = depth + opens - code.matches('}').count() as i64;
                    let opened = opened || opens > 0;
                    // The item ends where its braces close, or at `;` (`mod tests;`).
                    let ended = if opened {
                        depth <= 0
                    } else {
                        code.ends_with(';')
                    };
                    in_test = (!ended).then_some((depth, opened));
                    continue;
                }
                lines.push((i + 1, code.to_owned()));
            }
            let path = f
                .strip_prefix(root())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            Source { path, lines }
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The invariant line of ARCHITECTURE.md that starts with `start`, and the paths it names in
/// backticks (`src/...`).
fn invariant(start: &str) -> (String, Vec<String>) {
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let needle = format!("**Architecture Invariant: {start}");
    let line = doc
        .lines()
        .find(|l| l.contains(&needle))
        .unwrap_or_else(|| panic!("ARCHITECTURE.md has no line with {needle:?}"))
        .to_owned();
    let paths = line
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|p| p.starts_with("src/"))
        .map(str::to_owned)
        .collect();
    (line, paths)
}

fn allowed(path: &str, allowed: &[String]) -> bool {
    allowed
        .iter()
        .any(|a| path == a || (a.ends_with('/') && path.starts_with(a.as_str())))
}

/// Every non-test line of the sources under `scope` (all when empty) that contains one of
/// `needles`, unless its file is allowed: "path:line: code".
fn offenders(scope: &str, needles: &[&str], except: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for s in sources() {
        if !s.path.starts_with(scope) || allowed(&s.path, except) {
            continue;
        }
        for (n, code) in &s.lines {
            if needles.iter().any(|w| code.contains(w)) {
                out.push(format!("{}:{n}: {code}", s.path));
            }
        }
    }
    out
}

fn check(line: &str, found: Vec<String>) {
    assert!(
        found.is_empty(),
        "{line}\nbroken at:\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn only_the_aws_adapters_name_sdk_types() {
    let (line, except) = invariant("only `src/aws/` names AWS SDK types");
    check(
        &line,
        offenders(
            "src/",
            &[
                "aws_sdk_",
                "aws_smithy_",
                "aws_config",
                "aws_credential_types",
            ],
            &except,
        ),
    );
}

#[test]
fn workflow_folders_do_no_io_of_their_own() {
    let (line, _) = invariant("a workflow folder does no I/O of its own");
    check(
        &line,
        offenders(
            "src/workflows/",
            &[
                "tokio",
                "actix",
                "aws_sdk_",
                "aws_smithy_",
                "std::fs",
                "std::net",
                "reqwest",
                "rumqttc",
            ],
            &[],
        ),
    );
}

#[test]
fn a_workflow_is_known_only_by_its_folder_and_registration() {
    let (line, except) = invariant("a workflow is known only by its folder and its registration");
    let folders: Vec<String> = std::fs::read_dir(root().join("src/workflows"))
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            e.file_type()
                .unwrap()
                .is_dir()
                .then(|| format!("workflows::{}::", e.file_name().to_str().unwrap()))
        })
        .collect();
    assert!(folders.len() >= 8, "{folders:?}");
    let needles: Vec<&str> = folders.iter().map(String::as_str).collect();
    let mut except = except;
    except.push("src/workflows/".into());
    check(&line, offenders("src/", &needles, &except));
}

#[test]
fn the_engine_knows_no_actor_system() {
    let (line, _) = invariant("the engine knows no actor system");
    check(&line, offenders("src/engine/", &["actix"], &[]));
}

#[test]
fn the_contract_imports_nothing_of_the_crate() {
    let (line, _) = invariant("`src/contract/` imports nothing of the crate");
    let found: Vec<String> = offenders("src/contract/", &["crate::"], &[]);
    check(&line, found);
}

#[test]
fn every_status_change_is_the_lifecycles() {
    let (line, except) = invariant("every status change is the lifecycle's");
    check(
        &line,
        offenders("src/", &[".status = Status::", "status: Status::"], &except),
    );
}

#[test]
fn only_settling_and_the_dlq_command_delete_or_release_messages() {
    let (line, except) = invariant("only `src/intake/settling.rs`");
    check(
        &line,
        offenders(
            "src/",
            &[
                ".delete_batch(",
                ".change_visibility_batch(",
                ".delete_message",
                ".change_message_visibility",
            ],
            &except,
        ),
    );
}

#[test]
fn only_aws_classify_decides_retryability() {
    let (line, except) = invariant("only `src/aws/mod.rs` decides");
    check(
        &line,
        offenders(
            "src/aws/",
            &[
                "Retry::",
                "StepError::permanent",
                "StepError::retryable",
                "StepError {",
                "QueueError {",
            ],
            &except,
        ),
    );
}

/// The top-level module a source file belongs to (`src/engine/runner.rs` → `engine`).
fn module_of(path: &str) -> String {
    let rest = path.trim_start_matches("src/");
    let first = rest.split('/').next().unwrap_or(rest);
    first.trim_end_matches(".rs").to_owned()
}

#[test]
fn the_modules_depend_on_each_other_without_cycles() {
    let (line, _) = invariant("the modules' dependencies have no cycle");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in sources() {
        let from = module_of(&s.path);
        let deps = graph.entry(from.clone()).or_default();
        for (_, code) in &s.lines {
            for part in code.split("crate::").skip(1) {
                let to: String = part
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !to.is_empty() && to != from {
                    deps.insert(to);
                }
            }
        }
    }
    // Depth-first search for a back edge; report the cycle it closes.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            panic!("{line}\ncycle: {}", cycle.join(" → "));
        }
    }
    // And the graph is the one the code map describes: the bottom layers stay at the bottom.
    for (module, forbidden) in [
        (
            "contract",
            &["engine", "journal", "ports", "workflows", "config"][..],
        ),
        (
            "ports",
            &["workflows", "engine", "journal", "aws", "mqtt", "http"][..],
        ),
        ("journal", &["workflows", "engine", "intake", "ports"]),
        ("routing", &["config", "workflows", "engine"]),
        (
            "engine",
            &["actors", "intake", "aws", "mqtt", "http", "app", "cli"],
        ),
        (
            "workflows",
            &["engine", "aws", "mqtt", "http", "intake", "actors", "app"],
        ),
    ] {
        let deps = graph.get(module).cloned().unwrap_or_default();
        for f in forbidden {
            assert!(
                !deps.contains(*f),
                "{line}\n`{module}` depends on `{f}`: {deps:?}"
            );
        }
    }
}

/// The checks themselves: a file that breaks an invariant is found (so none of the checks
/// above passes by finding nothing at all).
#[test]
fn the_checks_find_what_they_look_for() {
    let found = offenders("src/aws/", &["aws_sdk_"], &[]);
    assert!(
        found.iter().any(|f| f.starts_with("src/aws/sqs.rs")),
        "{found:?}"
    );
    let found = offenders("src/intake/", &[".delete_batch("], &[]);
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("src/intake/settling.rs")),
        "{found:?}"
    );
    let found = offenders("src/actors/", &["actix"], &[]);
    assert!(!found.is_empty());
    let found = offenders("src/agent/", &["workflows::spot_drain::"], &[]);
    assert!(!found.is_empty());
    assert_eq!(module_of("src/engine/runner.rs"), "engine");
    assert_eq!(module_of("src/app.rs"), "app");
    let (_, paths) = invariant("only `src/aws/` names AWS SDK types");
    assert_eq!(paths, ["src/aws/"]);
}

/// Every test that starts `tugboat serve` names its own journal: without `[journal]` the
/// service opens `tugboat-journal` in the repository root, which every such run would share
/// (a second run then sees the first's instances, and two at once cannot both open it).
#[test]
fn every_service_test_names_its_own_journal() {
    let dir = root().join("tests");
    let mut missing = Vec::new();
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        if text.contains("Service::start") {
            checked += 1;
            if !text.contains("[journal]") {
                missing.push(path.display().to_string());
            }
        }
    }
    assert!(checked >= 10, "only {checked} service tests found");
    assert!(
        missing.is_empty(),
        "these start tugboat serve on the default journal path: {missing:?}"
    );
}
