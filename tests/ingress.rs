//! The HTTP ingress with real AWS clients: `tugboat serve` on the emulator, its ingress on a
//! loopback port, and the AWS CLI's and boto3's EventBridge clients pointed at it
//! (`--endpoint-url`) with an access key of `[ingress.access_keys]`. Their events are put on
//! the queue and run their route's workflow; a malformed entry fails alone; a wrong secret is
//! refused as EventBridge refuses it.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::service::{Service, create_queue};
use support::{REGION, root, run, unique};

const KEY: &str = "AKIDTUGBOATINGRESS";
const SECRET: &str = "ingress-secret-0123456789";

/// The AWS CLI with `secret`, against the ingress.
fn aws(endpoint: &str, secret: &str) -> Command {
    let mut cmd = Command::new(root().join(".venv/bin/aws"));
    cmd.env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_DEFAULT_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_MAX_ATTEMPTS", "1")
        .env_remove("AWS_PROFILE")
        .args(["--endpoint-url", endpoint]);
    cmd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_cli_and_boto3_put_events_to_tugboat_and_the_events_run_their_workflows() {
    let p = unique("ingress");
    let queue = format!("{p}-q");
    create_queue(&queue).await;
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[[queues]]\nname = \"{queue}\"\nreceive_wait = \"1s\"\n\n\
         [[routes]]\nname = \"orders\"\npattern = {{ source = [\"my.app\"] }}\nworkflow = \"log\"\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n[shutdown]\ndeadline = \"3s\"\n\n\
         [journal]\npath = \"{journal}\"\n\n\
         [ingress]\nlisten = \"127.0.0.1:{port}\"\n\n[ingress.access_keys]\n{KEY} = \"{SECRET}\"\n",
        journal = dir.path().join("journal").display()
    );
    let config = support::write_config(dir.path(), &[], &extra);
    let service = Service::start(&config, None);

    // The AWS CLI: two entries, one of them malformed.
    let entries = r#"[{"Source":"my.app","DetailType":"Order Placed","Detail":"{\"order\":1}"},
                      {"Source":"my.app","DetailType":"Order Placed","Detail":"{oops"}]"#;
    let out = run(aws(&endpoint, SECRET).args(["events", "put-events", "--entries", entries]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let answer: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(answer["FailedEntryCount"], 1, "{answer}");
    assert!(answer["Entries"][0]["EventId"].is_string(), "{answer}");
    assert_eq!(answer["Entries"][1]["ErrorCode"], "MalformedDetail");

    // boto3's client, unchanged but for its endpoint.
    let script = format!(
        "import boto3, json\n\
         c = boto3.client('events', endpoint_url='{endpoint}', region_name='{REGION}', \
         aws_access_key_id='{KEY}', aws_secret_access_key='{SECRET}')\n\
         print(json.dumps(c.put_events(Entries=[{{'Source': 'my.app', 'DetailType': 'Order Placed', \
         'Detail': json.dumps({{'order': 2}})}}])))\n"
    );
    let out = run(Command::new(root().join(".venv/bin/python"))
        .args(["-c", &script])
        .env("AWS_EC2_METADATA_DISABLED", "true"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let answer: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(answer["FailedEntryCount"], 0, "{answer}");

    // Both accepted events run their route's workflow.
    support::wait::until_explained(
        "both events ran",
        Duration::from_secs(30),
        async || {
            service
                .workflows()
                .iter()
                .filter(|w| w["queue"] == queue.as_str() && w["status"] == "succeeded")
                .count()
                == 2
        },
        || {
            format!(
                "workflows: {:?}\ntugboat said:\n{}",
                service.workflows(),
                service.lines().join("\n")
            )
        },
    )
    .await;

    // A wrong secret: refused as EventBridge refuses it.
    let out = run(aws(&endpoint, "not-the-secret").args([
        "events",
        "put-events",
        "--entries",
        r#"[{"Source":"my.app","DetailType":"Order Placed","Detail":"{}"}]"#,
    ]));
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("InvalidSignatureException"),
        "{}",
        out.stderr
    );
    let (code, _) = service.terminate();
    assert_eq!(code, 0);
}
