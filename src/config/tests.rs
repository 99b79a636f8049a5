use std::path::Path;

use super::*;
use crate::workflows::Catalog;

const MINIMAL: &str = r#"
[aws]
region = "us-east-1"

[[queues]]
name = "q"

[[routes]]
name = "r"
pattern = { source = ["custom.app"] }
workflow = "log"

[services.auth]
cluster = "c"
task_definition = "auth:1"
target_group = "tg"
container_name = "auth"
container_port = 8080
subnets = ["subnet-1"]
"#;

fn load(text: &str) -> Result<Config, ConfigError> {
    load_env(text, &[])
}

fn load_env(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Config::from_toml_str(text, Path::new("test.toml"), env, &Catalog::builtin())
}

/// Loads `text`, expects a failure, and checks the key it names and a part of its message.
fn check_error(text: &str, env: &[(&str, &str)], key: &str, message_part: &str) {
    let err = load_env(text, env).expect_err("config should be refused");
    assert_eq!(err.key, key, "{err}");
    assert!(err.message.contains(message_part), "{err}");
    assert!(err.to_string().starts_with("test.toml: "), "{err}");
}

#[test]
fn minimal_config_loads_with_documented_defaults() {
    let c = load(MINIMAL).unwrap();
    assert_eq!(c.queues[0].concurrency, 10);
    assert_eq!(c.queues[0].visibility_timeout, Duration::from_secs(60));
    assert_eq!(c.queues[0].receive_wait, Duration::from_secs(20));
    assert_eq!(c.shutdown.deadline, Duration::from_secs(25));
    assert_eq!(c.admin.listen.to_string(), "127.0.0.1:9090");
    assert_eq!(c.unmatched, UnmatchedPolicy::Acknowledge);
    assert_eq!(c.engine.workflow_concurrency, 64);
    assert_eq!(c.engine.max_in_process_wait, Duration::from_secs(20));
    assert_eq!(c.engine.max_panics, 3);
    assert_eq!(c.aws.attempt_timeout, Duration::from_secs(30));
    assert_eq!(c.aws.call_timeout, Duration::from_secs(90));
}

#[test]
fn aws_timeouts_are_checked_against_each_other_and_the_long_polls() {
    let with = |aws: &str, queue: &str| {
        MINIMAL
            .replace(
                "region = \"us-east-1\"",
                &format!("region = \"us-east-1\"\n{aws}"),
            )
            .replace("name = \"q\"", &format!("name = \"q\"\n{queue}"))
    };
    let c = load(&with(
        "attempt_timeout = \"10s\"\ncall_timeout = \"1m\"",
        "receive_wait = \"5s\"",
    ))
    .unwrap();
    assert_eq!(c.aws.attempt_timeout, Duration::from_secs(10));
    assert_eq!(c.aws.call_timeout, Duration::from_secs(60));
    for (aws, queue, key, message) in [
        (
            "attempt_timeout = \"24s\"",
            "",
            "aws.attempt_timeout",
            "5s longer than queues[0].receive_wait (20s)",
        ),
        (
            "attempt_timeout = \"9s\"",
            "receive_wait = \"5s\"",
            "aws.attempt_timeout",
            "got 9s",
        ),
        (
            "attempt_timeout = \"500ms\"",
            "receive_wait = \"0s\"",
            "aws.attempt_timeout",
            "at least 1s",
        ),
        (
            "call_timeout = \"29s\"",
            "",
            "aws.call_timeout",
            "at least attempt_timeout (30s)",
        ),
        ("call_timeout = 90", "", "aws.call_timeout", ""),
        ("attempt_timeout = \"soon\"", "", "aws.attempt_timeout", ""),
    ] {
        check_error(&with(aws, queue), &[], key, message);
    }
}

#[test]
fn shipped_configs_load() {
    for file in ["config/local.toml", "config/example.toml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        Config::load(&path, std::iter::empty(), &Catalog::builtin())
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn unknown_keys_are_refused_by_path() {
    check_error(
        &MINIMAL.replace("name = \"q\"", "name = \"q\"\nconcurency = 3"),
        &[],
        "queues[0].concurency",
        "unknown field `concurency`",
    );
    check_error(
        &format!("surprise = 1\n{MINIMAL}"),
        &[],
        "surprise",
        "unknown field `surprise`",
    );
    check_error(
        &MINIMAL.replace("region =", "regoin = \"x\"\nregion ="),
        &[],
        "aws.regoin",
        "unknown field `regoin`",
    );
}

#[test]
fn wrong_types_are_refused_by_path() {
    check_error(
        &MINIMAL.replace("name = \"q\"", "name = \"q\"\nconcurrency = \"ten\""),
        &[],
        "queues[0].concurrency",
        "invalid type",
    );
    check_error(
        &MINIMAL.replace("container_port = 8080", "container_port = 70000"),
        &[],
        "services.auth.container_port",
        "",
    );
    check_error(
        &MINIMAL.replace(
            "name = \"q\"",
            "name = \"q\"\nvisibility_timeout = \"soon\"",
        ),
        &[],
        "queues[0].visibility_timeout",
        "",
    );
    check_error(
        &MINIMAL.replace("subnets = [\"subnet-1\"]", "subnets = \"subnet-1\""),
        &[],
        "services.auth.subnets",
        "invalid type",
    );
    check_error(
        &format!("{MINIMAL}\n[admin]\nlisten = \"localhost\""),
        &[],
        "admin.listen",
        "",
    );
}

#[test]
fn console_and_pause_settings_of_the_wrong_shape_are_refused() {
    check_error(
        &format!("{MINIMAL}\n[admin]\nallow_actions = \"yes\""),
        &[],
        "admin.allow_actions",
        "invalid type",
    );
    check_error(
        &format!("{MINIMAL}\n[admin]\ntrace_url = \"https://jaeger/trace/\""),
        &[],
        "admin.trace_url",
        "{trace_id}",
    );
    check_error(
        &format!("{MINIMAL}\n[admin]\nhosts = [\"https://console.example.com/\"]"),
        &[],
        "admin.hosts",
        "not a host name",
    );
    check_error(
        &format!("{MINIMAL}\n[admin]\nhosts = \"console.example.com\""),
        &[],
        "admin.hosts",
        "invalid type",
    );
    // Actions on a listener anyone on the network reaches: refused unless a proxy in front
    // authenticates every user, said by name.
    check_error(
        &format!("{MINIMAL}\n[admin]\nlisten = \"0.0.0.0:9090\"\nallow_actions = true"),
        &[],
        "admin.allow_actions",
        "admin.proxy_authenticates = true",
    );
    check_error(
        &format!("{MINIMAL}\n[admin]\nproxy_authenticates = \"yes\""),
        &[],
        "admin.proxy_authenticates",
        "invalid type",
    );
    let c = load(&format!(
        "{MINIMAL}\n[admin]\nlisten = \"0.0.0.0:9090\"\nallow_actions = true\nproxy_authenticates = true"
    ))
    .unwrap();
    assert!(c.admin.allow_actions && c.admin.proxy_authenticates);
    assert!(
        load(&format!("{MINIMAL}\n[admin]\nlisten = \"0.0.0.0:9090\"")).is_ok(),
        "a read-only console may listen anywhere"
    );
    check_error(
        &format!("{MINIMAL}\n[engine]\npause_recheck = \"100ms\""),
        &[],
        "engine.pause_recheck",
        "between 1s and 12h",
    );
    check_error(
        &format!("{MINIMAL}\n[engine]\npause_recheck = \"later\""),
        &[],
        "engine.pause_recheck",
        "",
    );
    let c = load(&format!(
        "{MINIMAL}\n[admin]\nallow_actions = true\nhosts = [\"console.example.com:8443\"]\ntrace_url = \"https://j/{{trace_id}}\""
    ))
    .unwrap();
    assert!(c.admin.allow_actions);
    assert_eq!(c.admin.hosts, ["console.example.com:8443"]);
    assert_eq!(c.engine.pause_recheck, Duration::from_secs(60));
}

#[test]
fn a_route_naming_an_unknown_workflow_is_refused() {
    check_error(
        &MINIMAL.replace("workflow = \"log\"", "workflow = \"nope\""),
        &[],
        "routes[0].workflow",
        "unknown workflow \"nope\"",
    );
}

#[test]
fn a_service_mapping_missing_its_target_group_is_refused() {
    check_error(
        &MINIMAL.replace("target_group = \"tg\"\n", ""),
        &[],
        "services.auth",
        "missing field `target_group`",
    );
}

#[test]
fn cross_field_rules_name_the_key() {
    check_error(
        &format!("{MINIMAL}\n[journal]\nkind = \"postgres\"\n"),
        &[],
        "journal.kind",
        "\"sled\" or \"dynamodb\"",
    );
    check_error(
        &format!("{MINIMAL}\n[journal]\nkind = \"dynamodb\"\nlease = \"1s\"\n"),
        &[],
        "journal.lease",
        "at least 3s",
    );
    check_error(
        &format!("{MINIMAL}\n[journal]\nlease = \"soon\"\n"),
        &[],
        "journal.lease",
        "",
    );
    check_error(
        &MINIMAL.replace("name = \"q\"", "name = \"q\"\nconcurrency = 0"),
        &[],
        "queues[0].concurrency",
        "1 to 1000",
    );
    check_error(
        &MINIMAL.replace("name = \"q\"", "name = \"q\"\nvisibility_timeout = \"13h\""),
        &[],
        "queues[0].visibility_timeout",
        "12h",
    );
    check_error(
        &MINIMAL.replace("name = \"q\"", "name = \"q\"\nreceive_wait = \"21s\""),
        &[],
        "queues[0].receive_wait",
        "0s to 20s",
    );
    check_error(
        &MINIMAL.replace("name = \"q\"", "name = \"q\"\nreceive_wait = 5"),
        &[],
        "queues[0].receive_wait",
        "",
    );
    check_error(
        &format!("{MINIMAL}\n[[queues]]\nname = \"q\""),
        &[],
        "queues[1].name",
        "twice",
    );
    check_error(
        &MINIMAL.replace("subnets = [\"subnet-1\"]", "subnets = []"),
        &[],
        "services.auth.subnets",
        "at least one",
    );
    check_error(
        &MINIMAL.replace(
            "pattern = { source = [\"custom.app\"] }",
            "pattern = { source = \"custom.app\" }",
        ),
        &[],
        "routes[0].pattern",
        "source",
    );
    check_error(
        &MINIMAL.replace(
            "pattern = { source = [\"custom.app\"] }",
            "pattern = '{\"source\": '",
        ),
        &[],
        "routes[0].pattern",
        "not valid JSON",
    );
    check_error(
        &MINIMAL.replace(
            "workflow = \"log\"",
            "workflow = \"log\"\nqueues = [\"other\"]",
        ),
        &[],
        "routes[0].queues",
        "unknown queue",
    );
    check_error(
        &format!("{MINIMAL}\n[shutdown]\ndeadline = \"5m\""),
        &[],
        "shutdown.deadline",
        "120s",
    );
    check_error(
        &format!("{MINIMAL}\n[engine]\nworkflow_concurrency = 0"),
        &[],
        "engine.workflow_concurrency",
        "at least 1",
    );
    check_error(
        &format!("{MINIMAL}\n[engine]\nmax_panics = 0"),
        &[],
        "engine.max_panics",
        "at least 1",
    );
    check_error(
        &format!("{MINIMAL}\n[engine]\nmax_in_process_wait = 20"),
        &[],
        "engine.max_in_process_wait",
        "",
    );
    check_error(
        &MINIMAL.replace(
            "region = \"us-east-1\"",
            "region = \"us-east-1\"\nendpoint_url = \"127.0.0.1:5000\"",
        ),
        &[],
        "aws.endpoint_url",
        "http://",
    );
}

#[test]
fn syntax_errors_say_where() {
    let err = load("[aws\nregion = 1").unwrap_err();
    assert_eq!(err.key, "(syntax)");
    assert!(err.message.contains("line 1"), "{err}");
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let err = Config::load(
        Path::new("/nonexistent/tugboat.toml"),
        std::iter::empty(),
        &Catalog::builtin(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/tugboat.toml"),
        "{err}"
    );
}

#[test]
fn the_whole_configuration_may_come_from_tugboat_config_toml_instead_of_the_file() {
    let env = |text: &str| {
        vec![
            ("TUGBOAT_CONFIG_TOML".to_owned(), text.to_owned()),
            ("TUGBOAT__AWS__REGION".to_owned(), "eu-west-3".to_owned()),
        ]
    };
    let c = Config::load(
        Path::new("/nonexistent/tugboat.toml"),
        env(MINIMAL),
        &Catalog::builtin(),
    )
    .unwrap();
    assert_eq!(c.aws.region, "eu-west-3", "overrides still apply");
    let err = Config::load(
        Path::new("/nonexistent/tugboat.toml"),
        env("[aws\n"),
        &Catalog::builtin(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("$TUGBOAT_CONFIG_TOML"), "{err}");
    // Empty: the file, as without it.
    assert!(
        Config::load(
            Path::new("/nonexistent/tugboat.toml"),
            vec![("TUGBOAT_CONFIG_TOML".to_owned(), " ".to_owned())],
            &Catalog::builtin(),
        )
        .is_err()
    );
}

#[test]
fn environment_overrides_keep_types_and_name_the_variable() {
    let c = load_env(
        MINIMAL,
        &[
            ("TUGBOAT__AWS__ENDPOINT_URL", "http://127.0.0.1:5000"),
            ("TUGBOAT__QUEUES__0__CONCURRENCY", "4"),
            ("TUGBOAT__SERVICES__AUTH__CLUSTER", "12345"),
            ("TUGBOAT__SHUTDOWN__DEADLINE", "5s"),
            ("NOT_OURS", "ignored"),
        ],
    )
    .unwrap();
    assert_eq!(c.aws.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
    assert_eq!(c.queues[0].concurrency, 4);
    assert_eq!(
        c.sections["services"]["auth"]["cluster"].as_str(),
        Some("12345"),
        "overrides reach the sections workflows own"
    );
    assert_eq!(c.shutdown.deadline, Duration::from_secs(5));

    check_error(
        MINIMAL,
        &[("TUGBOAT__QUEUES__0__CONCURRENCY", "many")],
        "queues[0].concurrency",
        "TUGBOAT__QUEUES__0__CONCURRENCY",
    );
    check_error(
        MINIMAL,
        &[("TUGBOAT__AWS__REGOIN", "x")],
        "aws.regoin",
        "TUGBOAT__AWS__REGOIN",
    );
    check_error(
        MINIMAL,
        &[("TUGBOAT__QUEUES__5__NAME", "x")],
        "queues[5].name",
        "out of range",
    );
    check_error(
        MINIMAL,
        &[("TUGBOAT__AWS____REGION", "x")],
        "TUGBOAT__AWS____REGION",
        "empty key segment",
    );
}

#[test]
fn secrets_are_never_printed() {
    let text = MINIMAL.replace(
        "region = \"us-east-1\"",
        "region = \"us-east-1\"\ncredentials = { access_key_id = \"AKIDEXAMPLE\", secret_access_key = \"s3cr3t-value\" }",
    );
    let c = load(&text).unwrap();
    let printed = format!("{c:?}");
    assert!(!printed.contains("s3cr3t-value"), "{printed}");
    assert!(printed.contains("us-east-1"));
}

#[test]
fn patterns_as_json_strings_and_tables_agree() {
    let json = MINIMAL.replace(
        "pattern = { source = [\"custom.app\"] }",
        "pattern = '{\"source\": [\"custom.app\"]}'",
    );
    let a = load(&json).unwrap().routes[0].pattern.json().clone();
    let b = load(MINIMAL).unwrap().routes[0].pattern.json().clone();
    assert_eq!(a, b);
}

#[test]
fn a_wrong_schedule_is_refused_naming_its_key() {
    let with = |schedule: &str| {
        format!(
            "{MINIMAL}\n[[schedules]]\nname = \"s\"\n{schedule}\n[schedules.event]\nsource = \"a\"\ndetail-type = \"b\"\n"
        )
    };
    let ok = load(&with(
        "cron = \"0 8 ? * MON-FRI *\"\ntimezone = \"Europe/Berlin\"",
    ))
    .unwrap();
    assert_eq!(ok.compiled_schedules().unwrap()[0].queue, "q");
    for (schedule, key, says) in [
        (
            "cron = \"0 8 ? * 0 *\"",
            "schedules[0].cron",
            "day-of-week must be 1 to 7, got 0",
        ),
        ("rate = \"often\"", "schedules[0].rate", "value unit"),
        ("", "schedules[0].cron", "one of cron and rate"),
        (
            "rate = \"1 hour\"\ntimezone = \"CEST\"",
            "schedules[0].timezone",
            "not a time zone",
        ),
        (
            "rate = \"1 hour\"\nqueue = \"nope\"",
            "schedules[0].queue",
            "unknown queue",
        ),
        (
            "rate = \"1 hour\"\ncatch_up = \"twice\"",
            "schedules[0].catch_up",
            "unknown variant",
        ),
        (
            "rate = \"1 hour\"\nflexible_window = \"soon\"",
            "schedules[0].flexible_window",
            "",
        ),
        (
            "rate = \"1 hour\"\nenabled = \"yes\"",
            "schedules[0].enabled",
            "expected a boolean",
        ),
        (
            "rate = \"1 hour\"\nstart = \"monday\"",
            "schedules[0].start",
            "RFC 3339",
        ),
    ] {
        check_error(&with(schedule), &[], key, says);
    }
    // Two of one name.
    let twice = format!(
        "{}\n[[schedules]]\nname = \"s\"\nrate = \"1 day\"\n[schedules.event]\nsource = \"a\"\ndetail-type = \"b\"\n",
        with("rate = \"1 hour\"")
    );
    check_error(&twice, &[], "schedules[1].name", "configured twice");
}
