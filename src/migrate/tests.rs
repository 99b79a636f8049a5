use std::path::Path;

use super::*;

fn plan(files: &[(&str, &str)]) -> Result<Plan, String> {
    let mut p = Plan::default();
    for (name, text) in files {
        p.merge_text(name, text)?;
    }
    p.check()?;
    Ok(p)
}

#[test]
fn shipped_migrations_load_with_defaults() {
    let p = Plan::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations")).unwrap();
    let q = &p.queues["tugboat-events"];
    let dlq = q.dead_letter.as_ref().unwrap();
    assert_eq!(dlq.max_receive_count, 3);
    assert_eq!(dlq.retention, Duration::from_secs(14 * 86_400));
    assert!(p.tables.contains_key("tugboat-daily-cost"));
    assert!(p.tables.contains_key("tugboat-findings"));
    for t in ["tugboat-success", "tugboat-error", "tugboat-anomaly"] {
        assert!(p.topics.contains_key(t), "{t}");
    }
    assert_eq!(p.subscriptions.len(), 3);
}

#[test]
fn a_later_migration_replaces_a_resource() {
    let p = plan(&[
        ("0001_a.toml", "[[queues]]\nname = \"q\"\n"),
        (
            "0002_b.toml",
            "[[queues]]\nname = \"q\"\nvisibility_timeout = \"90s\"\n",
        ),
    ])
    .unwrap();
    assert_eq!(p.queues["q"].visibility_timeout, Duration::from_secs(90));
    assert_eq!(p.files.len(), 2);
}

#[test]
fn malformed_migrations_are_refused() {
    for (text, part) in [
        ("[[queue]]\nname = \"q\"", "unknown field `queue`"),
        (
            "[[queues]]\nname = \"q\"\nvisibility = \"1s\"",
            "unknown field `visibility`",
        ),
        (
            "[[queues]]\nname = \"q\"\nvisibility_timeout = 30",
            "invalid type",
        ),
        (
            "[[queues]]\nname = \"q\"\nvisibility_timeout = \"13h\"",
            "at most 12h",
        ),
        ("[[queues]]\nname = \"q\"\nfifo = true", "FIFO"),
        (
            "[[queues]]\nname = \"q\"\ndead_letter = { name = \"d\", max_receive_count = 0 }",
            "max_receive_count",
        ),
        ("[[queues]]\nname = \"bad name\"", "queue name"),
        (
            "[[tables]]\nname = \"t\"\npartition_key = { name = \"pk\", type = \"X\" }",
            "unknown variant",
        ),
        (
            "[[subscriptions]]\ntopic = \"t\"\nprotocol = \"sqs\"\nendpoint = \"q\"",
            "no migration declares",
        ),
        (
            "[[topics]]\nname = \"t\"\n[[subscriptions]]\ntopic = \"t\"\nprotocol = \"sqs\"\nendpoint = \"q\"",
            "queue \"q\"",
        ),
        (
            "[[topics]]\nname = \"t\"\n[[subscriptions]]\ntopic = \"t\"\nprotocol = \"email\"\nendpoint = \"a@b\"\nraw_message_delivery = true",
            "raw_message_delivery",
        ),
        (
            "[[subscriptions]]\ntopic = \"t\"\nprotocol = \"carrier-pigeon\"\nendpoint = \"x\"",
            "unknown variant",
        ),
    ] {
        let err = plan(&[("0001_x.toml", text)]).expect_err(text);
        assert!(err.contains(part), "{text}: {err}");
    }
}

#[test]
fn file_names_must_be_numbered() {
    for ok in ["0001_a.toml", "0042_work_queues_2.toml"] {
        assert!(parse_file_name(ok).is_ok(), "{ok}");
    }
    for bad in [
        "1_a.toml",
        "0001.toml",
        "0001_.toml",
        "0001_A.toml",
        "0001_a.yaml",
        "notes.txt",
        "00a1_x.toml",
    ] {
        assert!(
            parse_file_name(bad)
                .unwrap_err()
                .contains("unknown migration file"),
            "{bad}"
        );
    }
}

#[test]
fn folder_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("0001_a.toml"), "[[queues]]\nname = \"q\"\n").unwrap();
    std::fs::write(dir.path().join("0001_b.toml"), "[[queues]]\nname = \"r\"\n").unwrap();
    let err = Plan::load(dir.path()).unwrap_err();
    assert!(
        err.to_string().contains("0001_b.toml") && err.message.contains("also used"),
        "{err}"
    );

    std::fs::remove_file(dir.path().join("0001_b.toml")).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "hi").unwrap();
    let err = Plan::load(dir.path()).unwrap_err();
    assert!(err.to_string().contains("notes.txt"), "{err}");

    let empty = tempfile::tempdir().unwrap();
    assert!(
        Plan::load(empty.path())
            .unwrap_err()
            .message
            .contains("no migrations")
    );
}
