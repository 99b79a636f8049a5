//! `tugboat agent` on Azure and GCP, and `provider = "auto"`, against the tests' own metadata
//! server on 127.0.0.1 (see `support::imds`): Azure's Scheduled Events document is read when
//! its incarnation changes, a notice runs the handlers once and is then acknowledged; errors,
//! malformed documents and a stalled answer are logged while polling goes on. GCP's
//! `preempted` and `maintenance-event` are long-polled; auto picks the provider that answers.

mod support;

use std::time::Duration;

use support::agent::{Agent, until};
use support::imds::server;

fn config(dir: &std::path::Path, provider: &str, port: u16) -> std::path::PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            "provider = \"{provider}\"\nstate_file = \"{}\"\nmargin = \"0s\"\n\n\
             [aws]\nbase_url = \"http://127.0.0.1:{port}\"\npoll_interval = \"100ms\"\n\
             [azure]\nbase_url = \"http://127.0.0.1:{port}\"\npoll_interval = \"100ms\"\n\
             [gcp]\nbase_url = \"http://127.0.0.1:{port}\"\nwait = \"2s\"\n\n\
             [[handlers]]\nname = \"note\"\ntype = \"command\"\ncommand = [\"sh\", \"-c\", \"cat > /dev/null\"]\n",
            dir.join("state.json").display(),
        ),
    )
    .unwrap();
    path
}

fn http_date(secs_from_now: u64) -> String {
    httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(secs_from_now))
}

#[test]
fn azure_scheduled_events_run_the_handlers_once_then_are_acknowledged() {
    let (imds, port) = server();
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&config(dir.path(), "azure", port));
    let preempt = format!(
        r#"{{"EventId": "A1B2C3D4-0000-4000-8000-000000000001", "EventType": "Preempt", "ResourceType": "VirtualMachine",
            "Resources": ["vm-azure-1"], "EventStatus": "Scheduled", "NotBefore": "{}",
            "Description": "", "EventSource": "Platform", "DurationInSeconds": -1}}"#,
        http_date(30)
    );
    // Another VM's event in the same availability set: not this agent's.
    let other = r#"{"EventId": "OTHER", "EventType": "Reboot", "ResourceType": "VirtualMachine",
        "Resources": ["vm-azure-2"], "EventStatus": "Scheduled", "NotBefore": "", "Description": "",
        "EventSource": "User", "DurationInSeconds": -1}"#;
    until("the agent polls", Duration::from_secs(10), || {
        imds.lock().unwrap().azure_gets > 2
    });
    imds.lock().unwrap().azure_doc = Some(Ok(format!(
        r#"{{"DocumentIncarnation": 2, "Events": [{preempt}, {other}]}}"#
    )));
    until("the handlers ran", Duration::from_secs(5), || {
        !agent.reports().is_empty()
    });
    let report = &agent.reports()[0];
    assert_eq!(report["notice"]["provider"], "azure", "{report}");
    assert_eq!(report["notice"]["kind"], "spot-interruption", "{report}");
    assert_eq!(report["notice"]["instance"], "vm-azure-1", "{report}");
    assert_eq!(report["notice"]["action"], "Preempt", "{report}");
    assert!(
        report["notice"]["deadline_ms"].as_u64().is_some(),
        "{report}"
    );
    assert_eq!(report["handlers"][0]["outcome"], "ok", "{report}");
    assert_eq!(report["acknowledged"], true, "{report}");
    until("the acknowledgement", Duration::from_secs(5), || {
        !imds.lock().unwrap().azure_acks.is_empty()
    });
    assert_eq!(
        imds.lock().unwrap().azure_acks,
        vec![
            serde_json::json!({"StartRequests": [{"EventId": "A1B2C3D4-0000-4000-8000-000000000001"}]})
        ]
    );

    // A new incarnation that still lists the event: not run again. Then a 500, a malformed
    // document and an answer slower than the agent waits: each logged, polling goes on.
    imds.lock().unwrap().azure_doc = Some(Ok(format!(
        r#"{{"DocumentIncarnation": 3, "Events": [{preempt}]}}"#
    )));
    std::thread::sleep(Duration::from_millis(500));
    imds.lock().unwrap().azure_doc = Some(Err(500));
    until("the 500 is logged", Duration::from_secs(5), || {
        agent.saw("HTTP 500")
    });
    imds.lock().unwrap().azure_doc = Some(Ok(
        r#"{"DocumentIncarnation": 4, "Events": [{"EventId": 7}]}"#.into(),
    ));
    until(
        "the malformed document is logged",
        Duration::from_secs(5),
        || agent.saw("without \\\"EventId\\\"") || agent.saw("without \"EventId\""),
    );
    imds.lock().unwrap().azure_stall = Duration::from_secs(3);
    until("the timeout is logged", Duration::from_secs(10), || {
        agent.saw("timed out")
            || agent.saw("operation timed out")
            || agent.saw("error sending request")
    });
    {
        let mut s = imds.lock().unwrap();
        s.azure_stall = Duration::ZERO;
        s.azure_doc = Some(Ok(format!(
            r#"{{"DocumentIncarnation": 5, "Events": [{{"EventId": "R2", "EventType": "Reboot",
                "Resources": ["vm-azure-1"], "EventStatus": "Scheduled", "NotBefore": "{}"}}]}}"#,
            http_date(600)
        )));
    }
    until("the reboot's report", Duration::from_secs(10), || {
        agent.reports().len() == 2
    });
    let reports = agent.reports();
    assert_eq!(reports[1]["notice"]["kind"], "scheduled-maintenance");
    assert_eq!(reports[1]["notice"]["action"], "Reboot");
    assert_eq!(imds.lock().unwrap().azure_acks.len(), 2);
    agent.stop();
}

#[test]
fn gcp_preemption_and_maintenance_are_long_polled_and_run_the_handlers_once_each() {
    let (imds, port) = server();
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&config(dir.path(), "gcp", port));
    until("a long poll is waiting", Duration::from_secs(10), || {
        imds.lock().unwrap().gcp_waits >= 2
    });
    assert!(agent.reports().is_empty());
    let set_at = std::time::Instant::now();
    imds.lock().unwrap().set_preempted("TRUE");
    until("the preemption's report", Duration::from_secs(5), || {
        !agent.reports().is_empty()
    });
    // A long poll answers at the change, not at the next poll.
    assert!(
        set_at.elapsed() < Duration::from_secs(1),
        "{:?}",
        set_at.elapsed()
    );
    let report = &agent.reports()[0];
    assert_eq!(report["notice"]["provider"], "gcp", "{report}");
    assert_eq!(report["notice"]["kind"], "spot-interruption", "{report}");
    assert_eq!(report["notice"]["instance"], "gce-1", "{report}");
    let left = report["left_ms"].as_i64().unwrap();
    assert!((20_000..=30_000).contains(&left), "about 30 s: {report}");

    // Waits that end without a change (wait = 2 s) do not repeat the notice.
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(agent.reports().len(), 1);

    imds.lock().unwrap().set_maintenance("BOGUS");
    until("the bad value is logged", Duration::from_secs(5), || {
        agent.saw("BOGUS")
    });
    imds.lock()
        .unwrap()
        .set_maintenance("TERMINATE_ON_HOST_MAINTENANCE");
    until("the maintenance report", Duration::from_secs(5), || {
        agent.reports().len() == 2
    });
    let report = &agent.reports()[1];
    assert_eq!(
        report["notice"]["kind"], "scheduled-maintenance",
        "{report}"
    );
    assert_eq!(report["notice"]["action"], "terminate", "{report}");
    agent.stop();
}

#[test]
fn auto_picks_the_provider_that_answers_and_fails_clearly_when_none_does() {
    let (imds, port) = server();
    imds.lock().unwrap().only = Some("gcp");
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&config(dir.path(), "auto", port));
    until("the agent watches", Duration::from_secs(15), || {
        agent.saw("agent watching")
    });
    assert!(
        // Log lines are JSON when stderr is not a terminal.
        agent.saw("\"provider\":\"gcp\""),
        "{:?}",
        agent.out.lock().unwrap()
    );
    imds.lock().unwrap().set_preempted("TRUE");
    until("the preemption's report", Duration::from_secs(5), || {
        !agent.reports().is_empty()
    });
    assert_eq!(agent.reports()[0]["notice"]["provider"], "gcp");
    agent.stop();

    // Nothing answers: a clear error naming the three places tried, and a failed exit.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tugboat"))
        .args(["agent", "--config"])
        .arg(config(dir.path(), "auto", closed))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no metadata service answered"), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{closed}")), "{stderr}");
}
