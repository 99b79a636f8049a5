//! Shared support for integration tests: the local AWS emulator, clients pointed at it, unique
//! resource names, and the `tugboat` binary configured for it.
//!
//! One emulator serves a whole test binary. It is started on first use by the project's own
//! launcher (`scripts/moto_launcher.py`), which exits when its standard input closes; this
//! process holds that pipe open for its lifetime, so the emulator stops with the test binary
//! however the binary ends. Tests never share resource names (see [`unique`]), so they do not
//! depend on each other's state.

#![allow(dead_code)] // Each test binary uses a different part of this module.

pub mod agent;
pub mod app;
pub mod broker;
pub mod browser;
pub mod databases;
pub mod imds;
pub mod otlp;
pub mod service;

/// The one way tests wait (in `app.rs`'s folder; `app.rs` includes it, as benches include
/// `app.rs` alone).
pub use app::wait;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use tugboat::aws::Clients;
use tugboat::config::{AwsSettings, StaticCredentials};

pub const REGION: &str = "us-east-1";

/// A running emulator.
pub struct Emulator {
    pub endpoint: String,
    pub log: PathBuf,
    _child: Option<Child>,
    // Dropping this closes the launcher's stdin and stops it; it lives as long as the process.
    _stdin: Option<Mutex<ChildStdin>>,
}

/// A shared EventBridge sample from `tests/fixtures/events/eventbridge/`, as text.
pub fn eventbridge(name: &str) -> String {
    std::fs::read_to_string(root().join("tests/fixtures/events/eventbridge").join(name))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The emulator for this test binary, started on first use.
pub fn emulator() -> &'static Emulator {
    EMULATOR.get_or_init(|| start_emulator(&[]))
}

static EMULATOR: OnceLock<Emulator> = OnceLock::new();

/// The emulator, started with `env` for its launcher (`TUGBOAT_MOTO_INITIAL_HEALTH`) if this
/// is the first use in the test binary; a binary whose tests ask for it calls this first.
pub fn emulator_with_env(env: &[(&str, &str)]) -> &'static Emulator {
    EMULATOR.get_or_init(|| start_emulator(env))
}

#[allow(
    clippy::zombie_processes,
    reason = "the launcher lives as long as this process and exits when its stdin closes"
)]
fn start_emulator(env: &[(&str, &str)]) -> Emulator {
    // A process of a run whose parent started the emulator (a bench's worker) uses that one.
    if let Ok(endpoint) = std::env::var("TUGBOAT_TEST_EMULATOR") {
        return Emulator {
            endpoint,
            log: PathBuf::new(),
            _child: None,
            _stdin: None,
        };
    }
    let status = Command::new("bash")
        .arg(root().join("scripts/local-aws.sh"))
        .arg("install")
        .status()
        .expect("run scripts/local-aws.sh install");
    assert!(status.success(), "installing the emulator failed");
    let dir = root().join("target/local-aws");
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join(format!("test-{}.log", std::process::id()));
    let mut child = Command::new(root().join(".venv/bin/python"))
        .arg(root().join("scripts/moto_launcher.py"))
        .arg("--exit-on-stdin-eof")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start the emulator launcher");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    let mut reader = BufReader::new(stdout);
    loop {
        line.clear();
        let n = reader.read_line(&mut line).unwrap();
        if n == 0 {
            let status = child.wait();
            panic!(
                "the emulator exited ({status:?}) before it was ready; see {}",
                log.display()
            );
        }
        if let Some(endpoint) = line.trim().strip_prefix("TUGBOAT_MOTO_READY ") {
            let mut stdin = child.stdin.take().unwrap();
            stdin.flush().unwrap();
            return Emulator {
                endpoint: endpoint.to_owned(),
                log,
                _child: Some(child),
                _stdin: Some(Mutex::new(stdin)),
            };
        }
    }
}

/// Settings for a client of the emulator: static credentials, an explicit region and the
/// endpoint, so that the SDK never probes the instance-metadata address.
pub fn aws_settings() -> AwsSettings {
    AwsSettings {
        region: REGION.into(),
        endpoint_url: Some(emulator().endpoint.clone()),
        credentials: Some(StaticCredentials {
            access_key_id: "test".into(),
            secret_access_key: "test".to_owned().into(),
        }),
        attempt_timeout: std::time::Duration::from_secs(30),
        call_timeout: std::time::Duration::from_secs(90),
    }
}

pub async fn clients() -> Clients {
    Clients::new(&aws_settings()).await
}

/// A name no other test uses: `prefix` plus the process id and a counter.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The `tugboat` binary with the emulator's endpoint and credentials in its environment and
/// every ambient AWS setting removed.
pub fn tugboat(config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tugboat"));
    for var in [
        "AWS_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "TUGBOAT_CONFIG",
        // Traces only where a test asks for them.
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_SDK_DISABLED",
        "OTEL_TRACES_EXPORTER",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("AWS_EC2_METADATA_DISABLED", "true")
        .env("TUGBOAT__AWS__ENDPOINT_URL", &emulator().endpoint)
        .env("TUGBOAT__SECURITY__SIGNING_KEY", SIGNING_KEY)
        .arg("--config")
        .arg(config)
        .current_dir(root());
    if shared_journal() {
        // The same tests over the shared journal: one table per configuration (a test's
        // restarts find their records again), short leases (a killed process's instances
        // are taken over within seconds).
        cmd.env("TUGBOAT__JOURNAL__KIND", "dynamodb")
            .env("TUGBOAT__JOURNAL__TABLE", journal_table_for(config))
            .env("TUGBOAT__JOURNAL__LEASE", "3s");
    }
    cmd
}

/// `TUGBOAT_TEST_JOURNAL=dynamodb` runs the service tests over the shared journal (scripts/test.sh
/// does, for the tests that exercise the journal).
pub fn shared_journal() -> bool {
    std::env::var("TUGBOAT_TEST_JOURNAL").as_deref() == Ok("dynamodb")
}

/// The journal table of the configuration at `config`, created on first use.
pub fn journal_table_for(config: &Path) -> String {
    use sha2::Digest;
    static MADE: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let digest = sha2::Sha256::digest(config.to_string_lossy().as_bytes());
    let name = format!("journal-{}", hex::encode(&digest[..8]));
    let mut made = MADE.lock().unwrap();
    if !made.contains(&name) {
        let out = run(aws_cli().args([
            "dynamodb",
            "create-table",
            "--table-name",
            &name,
            "--billing-mode",
            "PAY_PER_REQUEST",
            "--attribute-definitions",
            "AttributeName=id,AttributeType=S",
            "--key-schema",
            "AttributeName=id,KeyType=HASH",
        ]));
        assert!(
            out.code == 0 || out.stderr.contains("ResourceInUseException"),
            "creating the journal table: {}",
            out.stderr
        );
        made.push(name.clone());
    }
    name
}

/// The real AWS CLI (awscli from PyPI, in the project's venv) against the emulator.
pub fn aws_cli() -> Command {
    let mut cmd = Command::new(root().join(".venv/bin/aws"));
    cmd.env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .arg("--endpoint-url")
        .arg(&emulator().endpoint);
    cmd
}

/// What the AWS CLI prints (`--output text`) for `args` against the emulator.
pub fn aws_text(args: &[&str]) -> String {
    let out = run(aws_cli().args(args).args(["--output", "text"]));
    assert_eq!(out.code, 0, "aws {args:?}: {}", out.stderr);
    out.stdout.trim().to_owned()
}

/// The emulator's default VPC (for target groups).
pub fn default_vpc() -> String {
    aws_text(&[
        "ec2",
        "describe-vpcs",
        "--filters",
        "Name=isDefault,Values=true",
        "--query",
        "Vpcs[0].VpcId",
    ])
}

/// Starts an EC2 instance (m5.large) in the emulator; its id. (ECS registers only instances
/// EC2 knows.)
pub fn ec2_instance() -> String {
    let image = aws_text(&["ec2", "describe-images", "--query", "Images[0].ImageId"]);
    aws_text(&[
        "ec2",
        "run-instances",
        "--image-id",
        &image,
        "--instance-type",
        "m5.large",
        "--count",
        "1",
        "--query",
        "Instances[0].InstanceId",
    ])
}

/// Creates an `ip` target group (HTTP, port 8080) named `name` in `vpc`; its ARN.
pub async fn ip_target_group(name: &str, vpc: &str) -> String {
    ip_target_group_checked(name, vpc, None).await
}

/// [`ip_target_group`] with health checks every `interval` seconds, healthy after
/// `threshold` of them (which an emulator restoring `initial` health waits for).
pub async fn ip_target_group_checked(name: &str, vpc: &str, checks: Option<(i32, i32)>) -> String {
    clients()
        .await
        .elbv2
        .create_target_group()
        .name(name)
        .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
        .port(8080)
        .vpc_id(vpc)
        .target_type(aws_sdk_elasticloadbalancingv2::types::TargetTypeEnum::Ip)
        .set_health_check_interval_seconds(checks.map(|c| c.0))
        .set_healthy_threshold_count(checks.map(|c| c.1))
        .send()
        .await
        .unwrap()
        .target_groups()[0]
        .target_group_arn()
        .unwrap()
        .to_owned()
}

/// Where Fargate tasks of the tests run: the default VPC, its first subnet and its default
/// security group.
pub struct Network {
    pub vpc: String,
    pub subnet: String,
    pub security_group: String,
}

pub fn network() -> Network {
    let vpc = default_vpc();
    let subnet = aws_text(&[
        "ec2",
        "describe-subnets",
        "--filters",
        &format!("Name=vpc-id,Values={vpc}"),
        "--query",
        "Subnets[0].SubnetId",
    ]);
    let security_group = aws_text(&[
        "ec2",
        "describe-security-groups",
        "--filters",
        &format!("Name=vpc-id,Values={vpc}"),
        "Name=group-name,Values=default",
        "--query",
        "SecurityGroups[0].GroupId",
    ]);
    Network {
        vpc,
        subnet,
        security_group,
    }
}

/// Registers a Fargate task definition `family` with one nginx container `container`
/// listening on 8080.
pub async fn fargate_task_definition(family: &str, container: &str) {
    clients()
        .await
        .ecs
        .register_task_definition()
        .family(family)
        .network_mode(aws_sdk_ecs::types::NetworkMode::Awsvpc)
        .requires_compatibilities(aws_sdk_ecs::types::Compatibility::Fargate)
        .cpu("256")
        .memory("512")
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder()
                .name(container)
                .image("public.ecr.aws/nginx/nginx:latest")
                .memory(512)
                .port_mappings(
                    aws_sdk_ecs::types::PortMapping::builder()
                        .container_port(8080)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
}

pub use app::SIGNING_KEY;

/// The `[aws]` section of a configuration for the emulator (static credentials, region,
/// endpoint), ending in a blank line.
pub fn aws_section() -> String {
    format!(
        "[aws]\nregion = \"{REGION}\"\nendpoint_url = \"{}\"\n\n[aws.credentials]\naccess_key_id = \"test\"\nsecret_access_key = \"test\"\n\n",
        emulator().endpoint
    )
}

/// Creates an ECS cluster named `name` in the emulator.
pub async fn ecs_cluster(name: &str) {
    clients()
        .await
        .ecs
        .create_cluster()
        .cluster_name(name)
        .send()
        .await
        .unwrap();
}

/// A config file in `dir` for the emulator, with `queues` and anything in `extra`.
pub fn write_config(dir: &Path, queues: &[&str], extra: &str) -> PathBuf {
    let mut text = aws_section();
    for q in queues {
        text.push_str(&format!("[[queues]]\nname = \"{q}\"\n\n"));
    }
    text.push_str(extra);
    let path = dir.join("tugboat.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Output of a finished command as text, for assertions and failure messages.
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().expect("run command");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The calls of kind `call` (`autoscaling:CompleteLifecycleAction` …) the launcher logged.
pub fn emulator_calls(call: &str) -> Vec<serde_json::Value> {
    let log = std::fs::read_to_string(&emulator().log).unwrap_or_default();
    log.lines()
        .filter_map(|l| l.strip_prefix("TUGBOAT_CALL "))
        .filter_map(|j| serde_json::from_str::<serde_json::Value>(j).ok())
        .filter(|v| v["call"] == call)
        .collect()
}

/// How many times the emulator was asked to stop `task` (ECS `StopTask`), read from the
/// launcher's log of those calls.
pub fn stop_task_calls(task: &str) -> usize {
    let log = std::fs::read_to_string(&emulator().log).unwrap_or_default();
    log.lines()
        .filter_map(|l| l.strip_prefix("TUGBOAT_CALL "))
        .filter_map(|j| serde_json::from_str::<serde_json::Value>(j).ok())
        .filter(|v| v["call"] == "ecs:StopTask" && v["task"] == task)
        .count()
}

/// Serves `app` on a free port of 127.0.0.1 from a thread of its own (its own runtime), until
/// the test binary ends; the port. For servers that must outlive a test's runtime, or serve
/// tests without one.
pub fn serve_on_thread(app: axum::Router) -> u16 {
    serve_listener_on_thread(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), app)
}

/// [`serve_on_thread`] on a listener the caller bound (a port chosen earlier: a server that
/// comes up late).
pub fn serve_listener_on_thread(listener: std::net::TcpListener, app: axum::Router) -> u16 {
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    port
}
