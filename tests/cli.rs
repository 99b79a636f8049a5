//! The command line without AWS: help texts, usage errors and configuration errors.

mod support;

use support::{root, run};

fn tugboat() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tugboat"));
    cmd.env_remove("TUGBOAT_CONFIG").current_dir(root());
    cmd
}

#[test]
fn help_is_useful_to_a_newcomer() {
    let out = run(tugboat().arg("--help"));
    assert_eq!(out.code, 0);
    for word in [
        "serve",
        "migrate",
        "send",
        "workflows",
        "dlq",
        "pattern",
        "route",
        // The commands workflows register with themselves (spot_drain, cur_ingest).
        "spot",
        "cur",
        "Exit codes",
        "TUGBOAT__",
    ] {
        assert!(
            out.stdout.contains(word),
            "{word} missing from:\n{}",
            out.stdout
        );
    }
    for sub in [
        "serve",
        "migrate",
        "send",
        "workflows",
        "dlq",
        "pattern",
        "route",
        "spot",
        "cur",
    ] {
        let out = run(tugboat().args([sub, "--help"]));
        assert_eq!(out.code, 0, "{sub}");
        assert!(out.stdout.contains("Usage: tugboat"), "{}", out.stdout);
    }
    // A workflow's command lists its pages' subcommands and its tool's, with their options.
    let out = run(tugboat().args(["cur", "--help"]));
    for word in ["costs", "summarize", "anomalies"] {
        assert!(
            out.stdout.contains(word),
            "{word} missing from:\n{}",
            out.stdout
        );
    }
    let out = run(tugboat().args(["cur", "costs", "--help"]));
    assert_eq!(out.code, 0);
    for word in ["--period", "--account", "--json"] {
        assert!(
            out.stdout.contains(word),
            "{word} missing from:\n{}",
            out.stdout
        );
    }
    let out = run(tugboat().args(["spot", "history", "--help"]));
    assert!(out.stdout.contains("--since"), "{}", out.stdout);
}

#[test]
fn a_workflow_command_refuses_what_it_does_not_have() {
    for args in [
        &["spot"][..],
        &["spot", "costs"],
        &["cur", "history"],
        &["spot", "history", "--period", "2026-11"],
        &["cur", "costs", "--since", "30d"],
    ] {
        let out = run(tugboat().args(args));
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
    }
}

#[test]
fn workflows_kinds_lists_the_build_s_workflows_without_a_config() {
    let out = run(tugboat().args(["--config", "/nonexistent/t.toml", "workflows", "kinds"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    for kind in ["log", "ecs_start", "ecs_stop", "ecs_task_event"] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.split_whitespace().next() == Some(kind)),
            "{kind} missing from:\n{}",
            out.stdout
        );
    }
    assert!(
        out.stdout
            .contains("ecs_start        config section [services]"),
        "{}",
        out.stdout
    );
    let bad = run(tugboat().args(["workflows", "kinds", "extra"]));
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["frobnicate"],
        vec!["send"],
        vec!["send", "--queue"],
        vec!["workflows", "cancel"],
        vec!["workflows", "retry"],
        vec!["workflows", "list", "--status", "gone"],
        vec!["route", "pause"],
        vec!["route", "resume"],
        vec![],
    ] {
        let out = run(tugboat().args(&args));
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
    }
}

/// The actions need the running service: without one they say so (exit 1), and a listen
/// port chosen at start (0) is a usage error naming what to give instead.
#[test]
fn actions_without_a_running_service_say_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = dir.path().join("t.toml");
    let text = format!("[aws]\nregion = \"us-east-1\"\n[admin]\nlisten = \"127.0.0.1:{port}\"\n");
    std::fs::write(&path, text).unwrap();
    for args in [
        vec!["workflows", "cancel", "r:1"],
        vec!["workflows", "retry", "r:1"],
        vec!["route", "pause", "r"],
        vec!["route", "list"],
    ] {
        let out = run(tugboat().arg("--config").arg(&path).args(&args));
        assert_eq!(out.code, 1, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("no tugboat answers"),
            "{args:?}: {}",
            out.stderr
        );
    }
    std::fs::write(
        &path,
        "[aws]\nregion = \"us-east-1\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let out = run(tugboat()
        .arg("--config")
        .arg(&path)
        .args(["workflows", "cancel", "r:1"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("TUGBOAT__ADMIN__LISTEN"),
        "{}",
        out.stderr
    );
}

/// Bad configuration exits 2 and names the key.
#[test]
fn config_errors_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let base = "[aws]\nregion = \"us-east-1\"\n[[queues]]\nname = \"q\"\n";
    let service = "[services.auth]\ncluster = \"c\"\ntask_definition = \"t\"\ncontainer_name = \"a\"\ncontainer_port = 80\nsubnets = [\"s\"]\n";
    for (text, key, part) in [
        (
            format!("{base}colour = \"blue\"\n"),
            "queues[0].colour",
            "unknown field `colour`",
        ),
        (
            format!("{base}concurrency = \"lots\"\n"),
            "queues[0].concurrency",
            "invalid type",
        ),
        (
            format!(
                "{base}[[routes]]\nname = \"r\"\npattern = {{ source = [\"x\"] }}\nworkflow = \"teleport\"\n"
            ),
            "routes[0].workflow",
            "unknown workflow \"teleport\"",
        ),
        (
            format!(
                "{base}[[routes]]\nname = \"r\"\npattern = {{ source = [\"x\"] }}\nworkflow = \"states\"\n"
            ),
            "routes[0].params",
            "params.definition is required",
        ),
        (
            format!(
                "{base}[[routes]]\nname = \"r\"\npattern = {{ source = [\"x\"] }}\nworkflow = \"states\"\nparams = {{ definition = \"flow\" }}\n"
            ),
            "routes[0].params",
            "params.definition \"flow\" is not a [workflows.NAME] of this configuration (configured: none)",
        ),
        (
            format!(
                "{base}[workflows.flow]\ndefinition_json = '{{\"StartAt\": \"A\", \"States\": {{\"A\": {{\"Type\": \"Wait\", \"Seconds\": -1, \"End\": true}}}}}}'\n"
            ),
            "workflows.flow.definition_json",
            "/States/A/Seconds",
        ),
        (
            format!("{base}{service}"),
            "services.auth",
            "missing field `target_group`",
        ),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, &text).unwrap();
        let event = dir.path().join("e.json");
        std::fs::write(&event, "{}").unwrap();
        let out = run(tugboat()
            .arg("--config")
            .arg(&path)
            .args(["send", "--queue", "q"])
            .arg(&event));
        assert_eq!(out.code, 2, "{text}\n{}", out.stderr);
        assert!(
            out.stderr.contains(&format!("bad.toml: {key}: ")),
            "{text}\n{}",
            out.stderr
        );
        assert!(out.stderr.contains(part), "{text}\n{}", out.stderr);
    }
}

#[test]
fn a_missing_config_file_exits_2() {
    let out = run(tugboat().args([
        "--config",
        "/nonexistent/t.toml",
        "send",
        "--queue",
        "q",
        "-",
    ]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("/nonexistent/t.toml"), "{}", out.stderr);
}

fn material(rel: &str) -> String {
    root()
        .join("tests/fixtures/events")
        .join(rel)
        .display()
        .to_string()
}

#[test]
fn pattern_test_exits_0_for_match_1_for_no_match_2_for_invalid() {
    let spot = material("eventbridge/ec2-spot-instance-interruption-warning.awsdocs.json");
    let yes = run(tugboat().args([
        "pattern",
        "test",
        "--pattern",
        r#"{"source":["aws.ec2"],"detail":{"instance-id":[{"prefix":"i-"}]}}"#,
        "--event",
        &spot,
    ]));
    assert_eq!(
        (yes.code, yes.stdout.trim()),
        (0, "match"),
        "{}",
        yes.stderr
    );
    let no = run(tugboat().args([
        "pattern",
        "test",
        "--pattern",
        r#"{"source":["aws.ecs"]}"#,
        "--event",
        &spot,
    ]));
    assert_eq!((no.code, no.stdout.trim()), (1, "no match"));
    assert!(no.stderr.contains("source"), "{}", no.stderr);
    let dir = tempfile::tempdir().unwrap();
    let pattern_file = dir.path().join("p.json");
    std::fs::write(
        &pattern_file,
        r#"{"detail-type":[{"wildcard":"EC2 Spot *"}]}"#,
    )
    .unwrap();
    let from_file = run(tugboat()
        .arg("pattern")
        .arg("test")
        .arg("--pattern")
        .arg(&pattern_file)
        .args(["--event", &spot]));
    assert_eq!(from_file.code, 0, "{}", from_file.stderr);
    for (pattern, event, part) in [
        (
            r#"{"source":"aws.ec2"}"#,
            spot.as_str(),
            "invalid pattern at source",
        ),
        (
            r#"{"n":[{"numeric":[">"]}]}"#,
            spot.as_str(),
            "invalid pattern at n[0].numeric",
        ),
        ("{not json", spot.as_str(), "pattern: not valid JSON"),
        (
            r#"{"source":["x"]}"#,
            "[1,2]",
            "event: must be a JSON object",
        ),
        (r#"{"source":["x"]}"#, "/nonexistent.json", "cannot read"),
    ] {
        let out = run(tugboat().args(["pattern", "test", "--pattern", pattern, "--event", event]));
        assert_eq!(out.code, 2, "{pattern} {event}: {}", out.stderr);
        assert!(out.stderr.contains(part), "{pattern}: {}", out.stderr);
    }
}

#[test]
fn route_explain_lists_matches_and_the_first_failing_field() {
    let out = run(tugboat().args([
        "--config",
        "config/local.toml",
        "route",
        "explain",
        "--event",
        &material("eventbridge/ec2-spot-instance-interruption-warning.nth.json"),
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("match    spot-interruption"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("no match start-ecs-task           first failing field: detail-type"),
        "{}",
        out.stdout
    );
    let s3 = run(tugboat().args([
        "--config",
        "config/local.toml",
        "route",
        "explain",
        "--event",
        &material("sqs/s3-notification-test-event.awsdocs.json"),
    ]));
    assert!(s3.stdout.contains("ignored"), "{}", s3.stdout);
    let bad = run(tugboat().args([
        "--config",
        "config/local.toml",
        "route",
        "explain",
        "--event",
        "{\"hello\":1}",
    ]));
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("unknown event shape"), "{}", bad.stderr);
}

/// `tugboat schedule test` prints the next fire times from the configuration alone, in UTC
/// and in the schedule's zone, across a daylight-saving change; `list` works without a
/// service or a journal; a schedule that is not configured, or one configured wrongly, is a
/// usage error naming it.
#[test]
fn schedule_test_prints_fire_times_across_daylight_saving_and_refuses_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("t.toml");
    let write = |schedule: &str| {
        std::fs::write(
            &config,
            format!(
                "[aws]\nregion = \"us-east-1\"\n[[queues]]\nname = \"q\"\n[journal]\npath = \"{}\"\n[admin]\nlisten = \"127.0.0.1:1\"\n\
                 [[schedules]]\nname = \"ny\"\n{schedule}\n[schedules.event]\nsource = \"a\"\ndetail-type = \"b\"\n",
                dir.path().join("journal").display()
            ),
        )
        .unwrap();
    };
    write("cron = \"30 2 ? * * *\"\ntimezone = \"America/New_York\"");
    let c = config.to_str().unwrap();
    let out = run(tugboat().args([
        "-c",
        c,
        "schedule",
        "test",
        "ny",
        "--next",
        "3",
        "--from",
        "2026-03-07T00:00:00Z",
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "2026-03-07T07:30:00Z  (2026-03-07 02:30 EST)\n\
         2026-03-09T06:30:00Z  (2026-03-09 02:30 EDT)\n\
         2026-03-10T06:30:00Z  (2026-03-10 02:30 EDT)\n"
    );
    let out = run(tugboat().args(["-c", c, "schedule", "list"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .starts_with("ny  cron(30 2 ? * * *)  America/New_York  -> q  running  next: "),
        "{}",
        out.stdout
    );
    for args in [
        &["schedule", "test", "nope"][..],
        &["schedule", "test", "ny", "--next", "0"],
        &["schedule", "test", "ny", "--from", "yesterday"],
        &["schedule", "pause", "nope"],
    ] {
        let out = run(tugboat().args(["-c", c]).args(args));
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
    }
    write("cron = \"30 2 ? * * *\"\ntimezone = \"Atlantis/Capital\"");
    let out = run(tugboat().args(["-c", c, "schedule", "list"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("schedules[0].timezone"),
        "{}",
        out.stderr
    );
}

#[test]
fn states_validate_checks_definitions_and_run_tries_one_with_fakes() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = "tests/fixtures/states";
    let out = run(tugboat().args([
        "states",
        "validate",
        &format!("{fixtures}/ecs-start-with-compensation.asl.json"),
        &format!("{fixtures}/oom-stop-forwarder.asl.json"),
        &format!("{fixtures}/oom-stop-forwarder.asl.yaml"),
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("oom-stop-forwarder.asl.yaml: ok (5 states)"),
        "{}",
        out.stdout
    );
    // The same tool as `tugboat workflows validate|run`, as the issue named them.
    let aliased = run(tugboat().args([
        "workflows",
        "validate",
        &format!("{fixtures}/oom-stop-forwarder.asl.yaml"),
    ]));
    assert_eq!(aliased.code, 0, "{}", aliased.stderr);
    assert!(
        aliased
            .stdout
            .contains("oom-stop-forwarder.asl.yaml: ok (5 states)"),
        "{}",
        aliased.stdout
    );
    assert!(
        out.stdout
            .contains("ecs-start-with-compensation.asl.json: ok (4 states)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("oom-stop-forwarder.asl.json: ok (5 states)"),
        "{}",
        out.stdout
    );

    // A definition that names what tugboat does not run: exit 1, the file and the pointer.
    let bad = dir.path().join("bad.asl.json");
    std::fs::write(&bad, r#"{"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f", "End": true}}}"#).unwrap();
    let out = run(tugboat().args(["states", "validate"]).arg(&bad));
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stderr.contains("bad.asl.json: /States/T/Resource:"),
        "{}",
        out.stderr
    );
    std::fs::write(&bad, "{not json").unwrap();
    let out = run(tugboat().args(["states", "validate"]).arg(&bad));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("not JSON"), "{}", out.stderr);

    // A dry run: the state path, each task's payload, the output; a failure injected is caught
    // by the definition's compensation and ends the run with the task's error.
    let event = dir.path().join("event.json");
    std::fs::write(
        &event,
        r#"{"detail": {"cluster": "c", "taskDefinition": "web:1", "service": "web"}}"#,
    )
    .unwrap();
    let flow = format!("{fixtures}/ecs-start-with-compensation.asl.json");
    let out = run(tugboat()
        .args(["states", "run", &flow, "--dry-run", "--input"])
        .arg(&event)
        .args([
            "--result",
            r#"StartTask={"task_arn": "arn:t/1", "ip": "10.1.2.3"}"#,
        ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with("StartTask <- {\"detail\""),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("task AnnounceStarted arn:aws:states:::sns:publish attempt 1: {\"Message\":\"task arn:t/1 runs at 10.1.2.3\""), "{}", out.stdout);
    assert!(out.stdout.contains("output: {"), "{}", out.stdout);
    let out = run(tugboat()
        .args(["workflows", "run", &flow, "--dry-run", "--input"])
        .arg(&event)
        .args(["--fail", "StartTask=TaskNeverHealthy:unhealthy"]));
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stdout.contains("AnnounceFailure <- "), "{}", out.stdout);
    assert!(
        out.stderr
            .contains("the run failed: TaskNeverHealthy: unhealthy"),
        "{}",
        out.stderr
    );

    // Without --dry-run nothing runs; wrong shapes of the fakes are usage errors.
    let out = run(tugboat()
        .args(["states", "run", &flow, "--input"])
        .arg(&event));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("give --dry-run"), "{}", out.stderr);
    for bad in [
        ["--result", "StartTask"],
        ["--result", "StartTask={"],
        ["--fail", "StartTask=:x"],
        ["--fail", "StartTask=E:c:many"],
    ] {
        let out = run(tugboat()
            .args(["states", "run", &flow, "--dry-run", "--input"])
            .arg(&event)
            .args(bad));
        assert_eq!(out.code, 1, "{bad:?}: {}", out.stderr);
        assert!(out.stderr.contains(bad[0]), "{bad:?}: {}", out.stderr);
    }
}
