//! `tugboat agent` against a metadata server of the test's own on 127.0.0.1 (IMDSv2: a token
//! is required; 404 until a notice is set): a notice runs the command handler once however
//! often it is seen, and not again after a restart; tokens are renewed when they end; server
//! errors and malformed bodies are logged and polling goes on; a notice whose deadline has
//! passed skips its handlers and says so.

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use support::agent::{Agent, later, until};
use support::imds::server;

#[test]
fn a_notice_runs_the_handlers_once_across_polls_restarts_token_expiry_and_bad_answers() {
    let (imds, port) = server();
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran.jsonl");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "instance_id = \"i-0abc\"\nstate_file = \"{}\"\nmargin = \"0s\"\n\n\
             [aws]\nbase_url = \"http://127.0.0.1:{port}\"\npoll_interval = \"100ms\"\ntoken_ttl = \"1s\"\n\n\
             [[handlers]]\nname = \"checkpoint\"\ntype = \"command\"\npriority = 1\n\
             command = [\"sh\", \"-c\", \"cat >> {} && echo >> {}\"]\n\n\
             [[handlers]]\nname = \"slow\"\ntype = \"command\"\npriority = 2\ntimeout = \"300ms\"\ncommand = [\"sleep\", \"5\"]\n",
            dir.path().join("state.json").display(),
            ran.display(),
            ran.display()
        ),
    )
    .unwrap();
    let agent = Agent::start(&config);
    // Nothing yet: 404s; then a server error and a malformed body, both logged, no run.
    std::thread::sleep(Duration::from_millis(500));
    imds.lock().unwrap().spot = Some(Err(500));
    until("the 500 is logged", Duration::from_secs(5), || {
        agent.saw("HTTP 500")
    });
    imds.lock().unwrap().spot = Some(Ok("{not json".into()));
    until("the bad body is logged", Duration::from_secs(5), || {
        agent.saw("not JSON")
    });
    assert!(!ran.exists(), "no notice, no run");

    let deadline = later(120);
    imds.lock().unwrap().spot = Some(Ok(format!(
        "{{\"action\": \"terminate\", \"time\": \"{deadline}\"}}"
    )));
    until("the handlers ran", Duration::from_secs(5), || {
        !agent.reports().is_empty()
    });
    // Seen on many more polls (and across token renewals: the TTL is 1 s), run once.
    std::thread::sleep(Duration::from_millis(2_500));
    let reports = agent.reports();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let report = &reports[0];
    assert_eq!(report["notice"]["kind"], "spot-interruption");
    assert_eq!(report["handlers"][0]["outcome"], "ok", "{report}");
    assert_eq!(report["handlers"][1]["outcome"], "failed", "{report}");
    assert!(
        report["handlers"][1]["reason"]
            .as_str()
            .unwrap()
            .starts_with("cut off after 300 ms"),
        "{report}"
    );
    let lines = std::fs::read_to_string(&ran).unwrap();
    let got: Vec<Value> = lines
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), 1, "{lines}");
    assert_eq!(got[0]["instance"], "i-0abc");
    {
        let s = imds.lock().unwrap();
        assert!(s.tokens_issued >= 3, "tokens renewed: {}", s.tokens_issued);
        assert_eq!(s.gets_without_token, 0, "IMDSv1 is off by default");
    }
    agent.stop();

    // A restart remembers the notice: no second run.
    let agent = Agent::start(&config);
    until(
        "the restarted agent sees the notice",
        Duration::from_secs(10),
        || agent.saw("notice already acted on"),
    );
    assert!(agent.reports().is_empty(), "{:?}", agent.reports());

    // A notice whose deadline has passed: every handler skipped, and said so.
    imds.lock().unwrap().spot = Some(Ok(format!(
        "{{\"action\": \"stop\", \"time\": \"{}\"}}",
        later(-30)
    )));
    until("the late notice's report", Duration::from_secs(5), || {
        !agent.reports().is_empty()
    });
    let report = &agent.reports()[0];
    for h in report["handlers"].as_array().unwrap() {
        assert_eq!(h["outcome"], "skipped", "{report}");
    }
    assert_eq!(
        std::fs::read_to_string(&ran)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count(),
        1
    );
    agent.stop();
}

#[test]
fn a_bad_agent_config_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "state_file = \"s\"\n[aws]\npoll_interval = \"0s\"\n",
    )
    .unwrap();
    let out = support::run(
        Command::new(env!("CARGO_BIN_EXE_tugboat"))
            .args(["agent", "--config"])
            .arg(&config)
            .env_remove("TUGBOAT_CONFIG"),
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("aws.poll_interval"), "{}", out.stderr);
}

#[tokio::test]
async fn end_to_end_a_notice_in_the_metadata_reaches_spot_drain_through_the_central_queue() {
    use support::service::{Service, create_queue, depth, drain, topic_into, until as until_async};
    let p = support::unique("agent");
    let queue = format!("{p}-q");
    let queue_url = create_queue(&queue).await;
    create_queue(&format!("{p}-dlq")).await;
    let inbox = create_queue(&format!("{p}-inbox")).await;
    let topic = topic_into(&format!("{p}-ok"), &inbox, false).await;
    let dir = tempfile::tempdir().unwrap();
    let service_config = support::write_config(
        dir.path(),
        &[],
        &format!(
            "[[queues]]\nname = \"{queue}\"\ndlq = \"{p}-dlq\"\nreceive_wait = \"1s\"\n\n\
             [[routes]]\nname = \"spot\"\nworkflow = \"spot_drain\"\npattern = {{ source = [\"aws.ec2\", \"tugboat.agent\"] }}\n\n\
             [notify]\nsuccess_topic = \"{topic}\"\n\n[journal]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[shutdown]\ndeadline = \"5s\"\n",
            dir.path().join("journal").display()
        ),
    );
    let service = Service::start(&service_config, None);

    let (imds, port) = server();
    let agent_config = dir.path().join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            "instance_id = \"i-0e2e\"\nstate_file = \"{}\"\n\n\
             [aws]\nbase_url = \"http://127.0.0.1:{port}\"\npoll_interval = \"200ms\"\n\n\
             [api]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\
             [api.credentials]\naccess_key_id = \"test\"\nsecret_access_key = \"test\"\n\n\
             [[handlers]]\nname = \"tell-tugboat\"\ntype = \"publish\"\nqueue = \"{queue}\"\n",
            dir.path().join("agent-state.json").display(),
            support::emulator().endpoint
        ),
    )
    .unwrap();
    let agent = Agent::start(&agent_config);
    imds.lock().unwrap().spot = Some(Ok(format!(
        "{{\"action\": \"terminate\", \"time\": \"{}\"}}",
        later(120)
    )));
    until("the agent's report", Duration::from_secs(10), || {
        !agent.reports().is_empty()
    });
    let report = agent.reports()[0].clone();
    assert_eq!(report["handlers"][0]["outcome"], "ok", "{report}");

    let mut reports: Vec<Value> = Vec::new();
    until_async("spot_drain's report", Duration::from_secs(30), async || {
        for (body, _) in drain(&inbox).await {
            let envelope: Value = serde_json::from_str(&body).unwrap();
            reports.push(serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap());
        }
        !reports.is_empty()
    })
    .await;
    assert_eq!(reports[0]["source"], "tugboat.agent");
    assert_eq!(reports[0]["instances"][0], "i-0e2e");
    let runs: Vec<Value> = service
        .workflows()
        .into_iter()
        .filter(|w| w["workflow"] == "spot_drain")
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(
        runs[0]["id"]
            .as_str()
            .unwrap()
            .starts_with("spot_drain:i-0e2e:")
    );
    until_async(
        "the notice is settled",
        Duration::from_secs(20),
        async || depth(&queue_url).await == (0, 0),
    )
    .await;
    agent.stop();
    let (code, _) = service.terminate();
    assert_eq!(code, 0);
}

#[test]
fn an_http_handler_is_retried_on_503_and_sends_its_template_over_the_notice() {
    use axum::http::StatusCode;
    let (imds, port) = server();
    // The application's checkpoint endpoint: 503 first, then 200; every body kept.
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let hook_port = {
        let seen = seen.clone();
        let app = axum::Router::new().route(
            "/checkpoint",
            axum::routing::post(move |body: String| {
                let seen = seen.clone();
                async move {
                    let mut s = seen.lock().unwrap();
                    s.push(serde_json::from_str(&body).unwrap_or(Value::Null));
                    if s.len() == 1 {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    }
                }
            }),
        );
        support::serve_on_thread(app)
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "instance_id = \"i-0http\"\nstate_file = \"{}\"\n\n\
             [aws]\nbase_url = \"http://127.0.0.1:{port}\"\npoll_interval = \"100ms\"\n\n\
             [[handlers]]\nname = \"checkpoint\"\ntype = \"http\"\nurl = \"http://127.0.0.1:{hook_port}/checkpoint\"\n\
             body = {{ reason = \"{{kind}}\", by = \"{{deadline}}\" }}\n",
            dir.path().join("state.json").display()
        ),
    )
    .unwrap();
    let agent = Agent::start(&config);
    imds.lock().unwrap().spot = Some(Ok(format!(
        "{{\"action\": \"terminate\", \"time\": \"{}\"}}",
        later(120)
    )));
    until("the report", Duration::from_secs(10), || {
        !agent.reports().is_empty()
    });
    let report = agent.reports()[0].clone();
    assert_eq!(report["handlers"][0]["outcome"], "ok", "{report}");
    assert_eq!(report["handlers"][0]["detail"]["attempts"], 2, "{report}");
    let bodies = seen.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[1]["reason"], "spot-interruption");
    assert!(
        bodies[1]["by"].as_str().unwrap().starts_with("20"),
        "{bodies:?}"
    );
    agent.stop();
}

/// A Redis to test against: the one on 127.0.0.1:6379 where it answers, else a
/// `redis-server` of the test's own on a free port; neither → the test fails saying so.
fn redis() -> (String, Option<(Child, tempfile::TempDir)>) {
    fn ping(address: &str) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(address) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }
    if ping("127.0.0.1:6379") {
        return ("127.0.0.1:6379".into(), None);
    }
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("no Redis on 127.0.0.1:6379 and no redis-server to start ({e}): install the redis-server package")
        });
    let address = format!("127.0.0.1:{port}");
    until("redis-server answers", Duration::from_secs(10), || {
        ping(&address)
    });
    (address, Some((child, dir)))
}

fn lastsave(address: &str) -> u64 {
    use std::io::{BufRead, Write};
    let mut s = std::net::TcpStream::connect(address).unwrap();
    s.write_all(b"LASTSAVE\r\n").unwrap();
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line).unwrap();
    line.trim().trim_start_matches(':').parse().unwrap()
}

#[test]
fn a_redis_handler_makes_redis_save_as_its_own_lastsave_shows() {
    let (address, own) = redis();
    let (imds, port) = server();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "instance_id = \"i-0redis\"\nstate_file = \"{}\"\n\n\
             [aws]\nbase_url = \"http://127.0.0.1:{port}\"\npoll_interval = \"100ms\"\n\n\
             [[handlers]]\nname = \"redis\"\ntype = \"redis\"\naddress = \"{address}\"\ntimeout = \"20s\"\n",
            dir.path().join("state.json").display()
        ),
    )
    .unwrap();
    let before = lastsave(&address);
    let agent = Agent::start(&config);
    imds.lock().unwrap().spot = Some(Ok(format!(
        "{{\"action\": \"terminate\", \"time\": \"{}\"}}",
        later(120)
    )));
    until("the report", Duration::from_secs(30), || {
        !agent.reports().is_empty()
    });
    let report = agent.reports()[0].clone();
    assert_eq!(report["handlers"][0]["outcome"], "ok", "{report}");
    let after = lastsave(&address);
    assert!(after > before, "LASTSAVE {before} -> {after}");
    assert_eq!(report["handlers"][0]["detail"]["lastsave"], after);
    agent.stop();
    if let Some((mut child, _dir)) = own {
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[test]
fn simulate_runs_the_handlers_against_a_made_up_notice_and_prints_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran.json");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "instance_id = \"i-0sim\"\nstate_file = \"{}\"\nmargin = \"0s\"\n\n\
             [aws]\nbase_url = \"http://127.0.0.1:9\"\n\n\
             [[handlers]]\nname = \"checkpoint\"\ntype = \"command\"\ncommand = [\"sh\", \"-c\", \"cat > {}\"]\n",
            dir.path().join("state.json").display(),
            ran.display()
        ),
    )
    .unwrap();
    let out = support::run(
        Command::new(env!("CARGO_BIN_EXE_tugboat"))
            .args(["agent", "--config"])
            .arg(&config)
            .args(["simulate", "rebalance", "--in", "90s"])
            .env("TUGBOAT_AGENT_SIGNING_KEY", support::SIGNING_KEY)
            .env_remove("TUGBOAT_CONFIG"),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(report["notice"]["kind"], "rebalance-recommendation");
    assert_eq!(report["handlers"][0]["outcome"], "ok", "{report}");
    let left = report["left_ms"].as_i64().unwrap();
    assert!(left > 80_000 && left <= 90_000, "{left}");
    let seen: Value = serde_json::from_str(&std::fs::read_to_string(&ran).unwrap()).unwrap();
    assert_eq!(seen["instance"], "i-0sim");
    // A kind it does not know is a usage error.
    let out = support::run(
        Command::new(env!("CARGO_BIN_EXE_tugboat"))
            .args(["agent", "--config"])
            .arg(&config)
            .args(["simulate", "earthquake"])
            .env_remove("TUGBOAT_CONFIG"),
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
}

#[test]
fn the_shipped_agent_config_systemd_unit_and_daemon_task_agree_with_the_agent() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/agent");
    let config = tugboat::agent::config::AgentConfig::load(&root.join("agent.toml"))
        .unwrap_or_else(|e| panic!("deploy/agent/agent.toml: {e}"));
    assert!(config.handlers.len() >= 5);
    let task: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("ecs-daemon-task.json")).unwrap())
            .unwrap();
    let container = &task["containerDefinitions"][0];
    assert_eq!(container["command"][0], "agent");
    assert_eq!(container["command"][2], "/etc/tugboat/agent.toml");
    let unit = std::fs::read_to_string(root.join("tugboat-agent.service")).unwrap();
    // The agent runs as its own user; the 0600 config reaches it as a systemd credential.
    assert!(unit.contains("LoadCredential=agent.toml:/etc/tugboat/agent.toml"));
    assert!(unit.contains(
        "ExecStart=/usr/local/bin/tugboat agent --config ${CREDENTIALS_DIRECTORY}/agent.toml"
    ));
    assert!(unit.contains("DynamicUser=yes") && !unit.contains("User=root\n"));
    assert!(unit.contains("install -m 0600 agent.toml"));
    assert!(
        config.signing_key.is_some(),
        "the example shows the signing key"
    );
    // The unit's state directory is where the example keeps its state.
    assert!(unit.contains("StateDirectory=tugboat-agent"));
    assert_eq!(
        config.state_file,
        std::path::PathBuf::from("/var/lib/tugboat-agent/state.json")
    );
}
