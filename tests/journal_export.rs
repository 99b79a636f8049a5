//! `tugboat journal export` and `import`: a sled journal's records, exported as JSON lines and
//! imported into the shared DynamoDB journal (the emulator's), read back equal; importing
//! again changes nothing; a file with a bad line is refused naming the line, and nothing of it
//! is written.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{clients, run, tugboat, unique};
use tugboat::journal::sled::SledJournal;
use tugboat::journal::{Journal, ListFilter, Origin, Record, Status};

fn record(id: &str, at: u64) -> Record {
    let mut r = Record::new(
        id,
        "log",
        Origin {
            route: "r".into(),
            queue: "q".into(),
            message_id: "m".into(),
            trace: None,
        },
        json!({"id": id}),
        json!({}),
    );
    r.status = Status::Succeeded;
    r.step_mut("log").output = Some(json!({"logged": true}));
    r.updated_ms = at;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sled_journal_moves_into_the_shared_one_and_bad_exports_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let originals: Vec<Record> = (0..3)
        .map(|i| record(&format!("r:e-{i}"), 1_000 + i))
        .collect();
    {
        let sled = SledJournal::open(&path).unwrap();
        for r in &originals {
            sled.put(r).await.unwrap();
        }
    }
    let config = support::write_config(
        dir.path(),
        &[],
        &format!("[journal]\npath = \"{}\"\n", path.display()),
    );
    let export = dir.path().join("export.jsonl");
    let out = run(tugboat(&config)
        .args(["journal", "export", "--out"])
        .arg(&export));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("exported 3 record(s)"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_to_string(&export).unwrap().lines().count(), 3);

    let table = unique("import");
    support::service::create_journal_table(&table).await;
    let into_dynamodb = |cmd: &mut std::process::Command| {
        cmd.env("TUGBOAT__JOURNAL__KIND", "dynamodb")
            .env("TUGBOAT__JOURNAL__TABLE", &table);
    };
    let mut cmd = tugboat(&config);
    into_dynamodb(&mut cmd);
    let out = run(cmd.args(["journal", "import"]).arg(&export));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("imported 3 record(s)"),
        "{}",
        out.stderr
    );
    let shared = tugboat::aws::journal::DynamoJournal::new(
        clients().await.dynamodb,
        &table,
        "reader",
        Duration::from_secs(30),
    );
    let mut back = shared.list(&ListFilter::default()).await.unwrap();
    back.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(back, originals);
    // `workflows list` reads the shared table without a running service.
    let mut cmd = tugboat(&config);
    into_dynamodb(&mut cmd);
    let listed = run(cmd.args(["workflows", "list"]));
    assert!(
        listed.stdout.contains("r:e-2") && listed.stdout.contains("3 workflow(s)"),
        "{}",
        listed.stdout
    );

    // Again: nothing changes. A newer record already there is kept.
    let mut newer = originals[0].clone();
    newer.updated_ms = 9_999;
    newer.status = Status::Failed {
        reason: "later".into(),
    };
    assert_eq!(
        shared.claim(&newer.id).await.unwrap(),
        tugboat::journal::Claim::Granted
    );
    shared.put(&newer).await.unwrap();
    shared.release(&newer.id).await;
    let mut cmd = tugboat(&config);
    into_dynamodb(&mut cmd);
    let out = run(cmd.args(["journal", "import"]).arg(&export));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("kept 1 newer"), "{}", out.stderr);
    assert_eq!(shared.get(&newer.id).await.unwrap(), Some(newer));

    // A bad line: refused naming it, nothing written.
    let bad = dir.path().join("bad.jsonl");
    let mut text = std::fs::read_to_string(&export).unwrap();
    text = text.replacen("r:e-1", "r:e-new", 1);
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(1, "{\"schema\": 99, \"id\": \"x\"}");
    std::fs::write(&bad, lines.join("\n")).unwrap();
    let mut cmd = tugboat(&config);
    into_dynamodb(&mut cmd);
    let out = run(cmd.args(["journal", "import"]).arg(&bad));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("line 2") && out.stderr.contains("schema version"),
        "{}",
        out.stderr
    );
    assert!(
        shared.get("r:e-new").await.unwrap().is_none(),
        "nothing of it written"
    );
    let out = run(tugboat(&config).args(["journal", "import", "/no/such/export"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
}
