//! The agent's handlers against real servers, and its local and peer sources.
//!
//! - `postgres` really checkpoints and `mysql` really flushes: each server's own counter
//!   (`pg_stat_checkpointer.num_requested`, or `pg_stat_bgwriter.checkpoints_req` before
//!   PostgreSQL 17; MariaDB's `Com_flush`) moves; a wrong connection string fails without its
//!   password showing anywhere; a handler over its timeout is cut off and reported.
//! - A disk-usage notice (threshold below the test folder's usage) runs the `disk` handlers
//!   only, once while it lasts (a restart too), and again after it cleared.
//! - A notice published by one agent's `mqtt` handler runs another agent's `peer` handlers.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::agent::{Agent, until};

/// `tugboat agent simulate spot` with `config`; the report.
fn simulate(dir: &std::path::Path, config: &str) -> (Value, String) {
    let path = dir.join("agent.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tugboat"))
        .args(["agent", "--config"])
        .arg(&path)
        .args(["simulate", "spot", "--in", "60s"])
        .env("TUGBOAT_AGENT_SIGNING_KEY", support::SIGNING_KEY)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}{stderr}");
    let report = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (report, stdout + &stderr)
}

fn outcome<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["handlers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {report}"))
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn checkpoints(url: &str) -> i64 {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    // PostgreSQL 17 moved the counter to pg_stat_checkpointer.
    match client
        .query_one("SELECT num_requested FROM pg_stat_checkpointer", &[])
        .await
    {
        Ok(row) => row.get(0),
        Err(_) => client
            .query_one("SELECT checkpoints_req FROM pg_stat_bgwriter", &[])
            .await
            .unwrap()
            .get(0),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_handler_checkpoints_as_the_servers_counter_shows() {
    let (url, _own) = support::databases::postgres();
    let before = checkpoints(&url).await;
    let dir = tempfile::tempdir().unwrap();
    let closed = closed_port();
    let config = format!(
        "instance_id = \"i-0pg\"\nstate_file = \"{}\"\nmargin = \"0s\"\n\n\
         [[handlers]]\nname = \"pg\"\ntype = \"postgres\"\nurl = \"{url}\"\ntimeout = \"30s\"\n\n\
         [[handlers]]\nname = \"pg-wrong\"\ntype = \"postgres\"\nurl = \"postgresql://postgres:hunter2@127.0.0.1:{closed}/postgres\"\n\n\
         [[handlers]]\nname = \"pg-cut\"\ntype = \"postgres\"\nurl = \"{url}\"\ntimeout = \"1ms\"\n",
        dir.path().join("state.json").display()
    );
    let d = dir.path().to_owned();
    let (report, output) = tokio::task::spawn_blocking(move || simulate(&d, &config))
        .await
        .unwrap();
    assert_eq!(outcome(&report, "pg")["outcome"], "ok", "{report}");
    assert_eq!(outcome(&report, "pg")["detail"]["ran"], "CHECKPOINT");
    assert_eq!(
        outcome(&report, "pg-wrong")["outcome"],
        "failed",
        "{report}"
    );
    assert!(
        !output.contains("hunter2"),
        "a password in the output: {output}"
    );
    assert_eq!(outcome(&report, "pg-cut")["outcome"], "failed", "{report}");
    assert_eq!(outcome(&report, "pg-cut")["reason"], "cut off after 1 ms");
    // The checkpointer reports its counters a moment after it finishes.
    let start = std::time::Instant::now();
    loop {
        let after = checkpoints(&url).await;
        if after > before {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no checkpoint counted: {before} → {after}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn com_flush(url: &str) -> u64 {
    use mysql_async::prelude::Queryable;
    let mut conn = mysql_async::Conn::from_url(url).await.unwrap();
    let row: Option<(String, u64)> = conn
        .query_first("SHOW GLOBAL STATUS LIKE 'Com_flush'")
        .await
        .unwrap();
    let _ = conn.disconnect().await;
    row.expect("MariaDB has Com_flush").1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mysql_handler_flushes_tables_as_the_servers_counter_shows() {
    let (url, _own) = support::databases::mariadb();
    let before = com_flush(&url).await;
    let dir = tempfile::tempdir().unwrap();
    let closed = closed_port();
    let config = format!(
        "instance_id = \"i-0my\"\nstate_file = \"{}\"\nmargin = \"0s\"\n\n\
         [[handlers]]\nname = \"db\"\ntype = \"mysql\"\nurl = \"{url}\"\ntimeout = \"30s\"\n\n\
         [[handlers]]\nname = \"db-wrong\"\ntype = \"mysql\"\nurl = \"mysql://root:hunter2@127.0.0.1:{closed}/mysql\"\n",
        dir.path().join("state.json").display()
    );
    let d = dir.path().to_owned();
    let (report, output) = tokio::task::spawn_blocking(move || simulate(&d, &config))
        .await
        .unwrap();
    assert_eq!(outcome(&report, "db")["outcome"], "ok", "{report}");
    assert_eq!(outcome(&report, "db")["detail"]["ran"], "FLUSH TABLES");
    assert_eq!(
        outcome(&report, "db-wrong")["outcome"],
        "failed",
        "{report}"
    );
    assert!(
        !output.contains("hunter2"),
        "a password in the output: {output}"
    );
    let after = com_flush(&url).await;
    assert!(after > before, "no flush counted: {before} → {after}");
}

fn disk_config(dir: &std::path::Path, above: f64, ran: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            "provider = \"none\"\ninstance_id = \"i-0disk\"\nstate_file = \"{}\"\n\n\
             [local]\ninterval = \"100ms\"\n[[local.disk]]\nmount = \"{}\"\nabove_percent = {above}\n\n\
             [[handlers]]\nname = \"clean-up\"\ntype = \"command\"\non = [\"disk\"]\n\
             command = [\"sh\", \"-c\", \"cat >> {} && echo >> {}\"]\n\n\
             [[handlers]]\nname = \"checkpoint\"\ntype = \"command\"\ncommand = [\"false\"]\n",
            dir.join("state.json").display(),
            dir.display(),
            ran.display(),
            ran.display(),
        ),
    )
    .unwrap();
    path
}

fn runs(ran: &std::path::Path) -> usize {
    std::fs::read_to_string(ran)
        .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count())
        .unwrap_or(0)
}

#[test]
fn a_full_disk_runs_the_disk_handlers_once_while_it_lasts_and_again_after_it_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran.jsonl");
    let used = tugboat::agent::local::disk_used_percent(dir.path()).unwrap();
    assert!(used > 0.0, "the test folder's file system is empty");
    let low = disk_config(dir.path(), used / 2.0, &ran);
    let agent = Agent::start(&low);
    until("the disk notice's report", Duration::from_secs(10), || {
        !agent.reports().is_empty()
    });
    // Seen again at the next look (every 100 ms): remembered, not run again.
    until("the notice seen again", Duration::from_secs(10), || {
        agent.saw("notice already acted on")
    });
    let reports = agent.reports();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0]["notice"]["kind"], "disk-usage");
    // The interruption handler is not `on` disk notices.
    assert_eq!(reports[0]["handlers"].as_array().unwrap().len(), 1);
    assert_eq!(reports[0]["handlers"][0]["name"], "clean-up");
    agent.stop();
    assert_eq!(runs(&ran), 1);
    let seen: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("ran.jsonl")).unwrap())
            .unwrap();
    assert!(seen["raw"]["used_percent"].as_f64().unwrap() > used / 2.0);

    // Still full after a restart: the same condition, not run again.
    let agent = Agent::start(&low);
    until(
        "the notice seen after the restart",
        Duration::from_secs(10),
        || agent.saw("notice already acted on"),
    );
    assert!(agent.reports().is_empty(), "{:?}", agent.reports());
    agent.stop();
    // Below the threshold: cleared; full again: a new notice.
    let agent = Agent::start(&disk_config(dir.path(), 100.0, &ran));
    until("the condition clears", Duration::from_secs(10), || {
        agent.saw("condition cleared")
    });
    agent.stop();
    let agent = Agent::start(&disk_config(dir.path(), used / 2.0, &ran));
    until("the second disk notice", Duration::from_secs(10), || {
        !agent.reports().is_empty()
    });
    agent.stop();
    assert_eq!(runs(&ran), 2);
}

#[test]
fn a_notice_published_by_one_agent_runs_the_peer_handlers_of_another() {
    let broker = support::broker::Broker::shared();
    let group = format!("tugboat-test/peers-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("peer.jsonl");
    let watcher = dir.path().join("watcher.toml");
    std::fs::write(
        &watcher,
        format!(
            "provider = \"none\"\ninstance_id = \"i-0replica\"\nstate_file = \"{}\"\n\n\
             [peer]\nbroker = \"127.0.0.1:{}\"\ntopic = \"{group}/+/notice\"\n\n\
             [[handlers]]\nname = \"promote\"\ntype = \"command\"\non = [\"peer\"]\n\
             command = [\"sh\", \"-c\", \"cat >> {} && echo >> {}\"]\n",
            dir.path().join("watcher-state.json").display(),
            broker.port,
            ran.display(),
            ran.display(),
        ),
    )
    .unwrap();
    let agent = Agent::start(&watcher);
    until("the watcher subscribes", Duration::from_secs(10), || {
        agent.saw("watching peers")
    });
    // The attack: any client of the broker says the primary is going. Unsigned, it is logged
    // and ignored: no handler runs (the count below is the signed notice's run alone).
    let forged = serde_json::json!({"version": "0", "id": "forged", "source": "aws.ec2",
        "detail-type": "EC2 Spot Instance Interruption Warning", "time": "2026-12-06T10:00:00Z",
        "resources": [], "detail": {"instance-id": "i-0primary", "instance-action": "terminate"}});
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(support::broker::publish(
            broker.port,
            &format!("{group}/i-0primary/notice"),
            &forged.to_string(),
        ));
    until("the forgery is refused", Duration::from_secs(10), || {
        agent.saw("not believed: it carries no signature")
    });
    assert!(agent.reports().is_empty(), "no handler ran for it");
    let primary = tempfile::tempdir().unwrap();
    let (report, _) = simulate(
        primary.path(),
        &format!(
            "instance_id = \"i-0primary\"\nstate_file = \"{}\"\n\n\
             [[handlers]]\nname = \"tell-peers\"\ntype = \"mqtt\"\nbroker = \"127.0.0.1:{}\"\ntopic = \"{group}/{{instance}}/notice\"\n",
            primary.path().join("state.json").display(),
            broker.port,
        ),
    );
    assert_eq!(outcome(&report, "tell-peers")["outcome"], "ok", "{report}");
    assert_eq!(
        outcome(&report, "tell-peers")["detail"]["topic"],
        format!("{group}/i-0primary/notice")
    );
    until("the peer handler ran", Duration::from_secs(10), || {
        !agent.reports().is_empty()
    });
    let report = &agent.reports()[0];
    assert_eq!(report["notice"]["kind"], "peer-interruption", "{report}");
    assert_eq!(report["notice"]["instance"], "i-0primary", "{report}");
    assert_eq!(report["notice"]["action"], "spot-interruption", "{report}");
    assert_eq!(report["handlers"][0]["outcome"], "ok", "{report}");
    assert_eq!(runs(&ran), 1);
    agent.stop();
}
