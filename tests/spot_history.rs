//! `tugboat spot history` over a journal holding interruptions of several pools, read from the
//! journal file (no service running), as text and JSON, with `--since`; and its usage errors.

mod support;

use serde_json::{Value, json};
use support::run;
use tugboat::journal::sled::SledJournal;
use tugboat::journal::{Journal, Origin, Record, Status};

const HOUR: u64 = 3_600_000;

fn tugboat(config: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tugboat"));
    cmd.env_remove("TUGBOAT_CONFIG").arg("--config").arg(config);
    cmd
}

fn record(n: u32, kind: &str, ty: &str, zone: &str, noticed_ms: u64) -> Record {
    let mut r = Record::new(
        &format!("spot_drain:i-{n}:x"),
        "spot_drain",
        Origin::default(),
        json!({}),
        json!({}),
    );
    r.status = Status::Succeeded;
    r.state = json!({"notice": {"kind": kind, "source": "tugboat.agent", "instances": [format!("i-{n}")],
        "noticed_ms": noticed_ms, "ends_ms": null, "zone": zone, "instance_type": ty}});
    r
}

#[test]
fn history_counts_interruptions_per_pool_and_hour_from_the_journal_file() {
    let dir = tempfile::tempdir().unwrap();
    let journal_path = dir.path().join("journal");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let day = now - now % (24 * HOUR);
    {
        let journal = SledJournal::open(&journal_path).unwrap();
        let mut n = 0;
        let mut put = |kind: &str, ty: &str, zone: &str, at: u64| {
            n += 1;
            futures::executor::block_on(journal.put(&record(n, kind, ty, zone, at))).unwrap();
        };
        for h in [1, 1, 3, 5, 7, 9, 11] {
            put(
                "spot-interruption",
                "m5.large",
                "us-east-1a",
                day - 24 * HOUR + h * HOUR,
            );
        }
        put(
            "spot-interruption",
            "c5.xlarge",
            "us-east-1b",
            day - 24 * HOUR + 2 * HOUR,
        );
        put(
            "fargate-spot-task",
            "unknown",
            "unknown",
            day - 24 * HOUR + 2 * HOUR,
        );
        put(
            "rebalance-recommendation",
            "m5.large",
            "us-east-1a",
            day - 24 * HOUR + 4 * HOUR,
        );
        // Forty days ago: outside the default 30 days.
        put(
            "spot-interruption",
            "r5.large",
            "us-east-1c",
            now - 40 * 24 * HOUR,
        );
        // Another workflow's record is passed over.
        let mut other = record(99, "spot-interruption", "x", "y", now);
        other.workflow = "log".into();
        futures::executor::block_on(journal.put(&other)).unwrap();
        journal.flush().unwrap();
    }
    let config = dir.path().join("tugboat.toml");
    std::fs::write(
        &config,
        format!(
            "[aws]\nregion = \"us-east-1\"\n\n[journal]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:1\"\n",
            journal_path.display()
        ),
    )
    .unwrap();

    let out = run(tugboat(&config).args(["spot", "history"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .starts_with("9 interruption(s), 1 other notice(s)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("m5.large             us-east-1a        7"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "m5.large in us-east-1a: 7 of 9 interruptions; diversify instance types or zones"
        ),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("01:00       2"), "{}", out.stdout);

    let out = run(tugboat(&config).args(["spot", "history", "--since", "60d", "--json"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let h: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(h["interruptions"], 10);
    let pools: Vec<(String, u64)> = h["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["instance_type"].as_str().unwrap().to_owned(),
                p["interruptions"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(pools[0], ("m5.large".to_owned(), 7));
    assert_eq!(pools.len(), 4);
    assert_eq!(h["by_hour"].as_array().unwrap().len(), 24);

    let out = run(tugboat(&config).args(["spot", "history", "--since", "a while"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--since"), "{}", out.stderr);
}
