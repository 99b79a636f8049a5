//! SQS's own redrive (a queue's `maxReceiveCount`, kept as the backstop for a message that
//! crashes the process every time) never takes a message whose workflow is alive: long
//! back-offs and shutdown releases that would reach the limit go back as fresh copies. Against
//! the local AWS emulator, which applies redrive policies as SQS does.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Value, json};

use support::app::spawn_app;
use support::service::{Service, create_queue, depth, queue_arn, send, succeeded, until};
use support::{clients, unique};
use tugboat::app::Dependencies;
use tugboat::aws::sqs::SqsQueues;
use tugboat::contract::{Act, Decision, Flow, Next, RetryPolicy, StepContext, StepError, Typed};
use tugboat::journal::Status;
use tugboat::journal::memory::MemoryJournal;
use tugboat::workflows::{Catalog, Registration};

/// A work queue whose redrive policy moves a message to its DLQ after `max` receives (the
/// shipped migrations say 3); returns (queue, queue URL, DLQ name, DLQ URL).
async fn queue_with_redrive(prefix: &str, max: u32) -> (String, String, String, String) {
    let c = clients().await;
    let p = unique(prefix);
    let dlq = format!("{p}-dlq");
    let dlq_url = create_queue(&dlq).await;
    let dlq_arn = queue_arn(&dlq_url).await;
    let queue = format!("{p}-q");
    let policy = json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max.to_string()});
    let url = c
        .sqs
        .create_queue()
        .queue_name(&queue)
        .attributes(QueueAttributeName::RedrivePolicy, policy.to_string())
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    (queue, url, dlq, dlq_url)
}

fn event(id: &str) -> String {
    json!({"version": "0", "id": id, "source": "test", "detail-type": "t", "detail": {}})
        .to_string()
}

/// One step that fails with a throttling error its first `failures` times.
struct Flaky {
    failures: u32,
    calls: Arc<AtomicU32>,
}

#[async_trait]
impl Flow for Flaky {
    const KIND: &'static str = "flaky";
    type State = ();
    type Step = ();

    fn start(&self, _event: &Value, _params: &Value) -> Result<((), Decision<()>), String> {
        // Back-offs of up to 1 s, ten attempts: every one of them longer than the
        // configured in-process wait (0 s), so each goes back to SQS.
        let retry = RetryPolicy {
            initial_interval: Duration::from_secs(1),
            coefficient: 1.0,
            max_interval: Duration::from_secs(1),
            max_attempts: 10,
            deadline: None,
        };
        Ok(((), Next::Run(Act::handler("call", ()).retry(retry))))
    }

    fn advance(&self, _: &mut (), _: (), outcome: Result<Value, StepError>) -> Decision<()> {
        match outcome {
            Ok(v) => Next::Complete(v),
            Err(e) => Next::Fail(e.message),
        }
    }

    async fn perform(&self, _ctx: StepContext<'_>, _step: &()) -> Result<Value, StepError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n <= self.failures {
            return Err(StepError::retryable("ThrottlingException: Rate exceeded"));
        }
        Ok(json!({"calls": n}))
    }
}

#[actix_rt::test]
async fn a_step_that_fails_six_times_with_long_backoffs_succeeds_and_the_dlq_stays_empty() {
    let (queue, queue_url, dlq, dlq_url) = queue_with_redrive("flaky", 3).await;
    let calls = Arc::new(AtomicU32::new(0));
    let flaky = Flaky {
        failures: 6,
        calls: calls.clone(),
    };
    let clients = clients().await;
    let mut deps = Dependencies::memory(Arc::new(SqsQueues::new(clients.sqs.clone())));
    deps.journal = Some(Arc::new(MemoryJournal::default()));
    deps.catalog = Catalog::builtin().with(Registration::ready(Arc::new(Typed(flaky))));
    let config = format!(
        r#"[aws]
region = "us-east-1"

[[queues]]
name = "{queue}"
dlq = "{dlq}"
visibility_timeout = "30s"
receive_wait = "1s"

[[routes]]
name = "r"
pattern = {{ source = ["test"] }}
workflow = "flaky"

[admin]
listen = "127.0.0.1:0"

[engine]
max_in_process_wait = "0s"
"#
    );
    let app = spawn_app(&config, deps).await;
    let id = unique("ev");
    send(&queue_url, &event(&id)).await;
    app.until("the workflow succeeds", 60, |a| {
        a.statuses() == ["succeeded"]
    })
    .await;
    let r = app.record(&format!("r:{id}"));
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(
        r.step("call").unwrap().attempts,
        7,
        "six failures, then success"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 7);
    until("the queue is empty", Duration::from_secs(10), async || {
        depth(&queue_url).await == (0, 0)
    })
    .await;
    assert_eq!(
        depth(&dlq_url).await,
        (0, 0),
        "seven receives of one event, and SQS's redrive (3) took none"
    );
    let refreshed = app.stats(&queue).refreshed.load(Ordering::Relaxed);
    assert!(refreshed >= 2, "fresh copies near the limit: {refreshed}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn three_sigterm_releases_in_a_row_do_not_move_the_message_either() {
    let (queue, queue_url, dlq, dlq_url) = queue_with_redrive("sigterm", 3).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[[queues]]\nname = \"{queue}\"\ndlq = \"{dlq}\"\nvisibility_timeout = \"30s\"\nreceive_wait = \"1s\"\n\n\
         [[routes]]\nname = \"r\"\npattern = {{ source = [\"test\"] }}\nworkflow = \"log\"\nparams = {{ delay = \"8s\" }}\n\n\
         [journal]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[shutdown]\ndeadline = \"5s\"\n",
        dir.path().join("journal").display()
    );
    let config = support::write_config(dir.path(), &[], &extra);
    let id = unique("ev");
    send(&queue_url, &event(&id)).await;
    for round in 1..=3u64 {
        let service = Service::start(&config, None);
        // The in-process sleep of the `delay` step has begun for the round-th time.
        until(
            &format!("round {round}: the delay step runs"),
            Duration::from_secs(30),
            async || {
                service.workflows().first().is_some_and(|w| {
                    w["steps"]
                        .as_array()
                        .and_then(|s| s.iter().find(|s| s["name"] == "delay"))
                        .is_some_and(|s| s["attempts"].as_u64() == Some(round))
                })
            },
        )
        .await;
        let (code, log) = service.terminate();
        assert_eq!(code, 0, "{log}");
        assert_eq!(depth(&dlq_url).await, (0, 0), "round {round}");
    }
    let service = Service::start(&config, None);
    let start = std::time::Instant::now();
    while succeeded(&service) != 1 {
        if start.elapsed() > Duration::from_secs(30) {
            let (_, log) = service.terminate();
            panic!(
                "the workflow did not succeed; queue {:?}, dlq {:?}; log:\n{log}",
                depth(&queue_url).await,
                depth(&dlq_url).await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    until("the queue is empty", Duration::from_secs(10), async || {
        depth(&queue_url).await == (0, 0)
    })
    .await;
    assert_eq!(depth(&dlq_url).await, (0, 0));
    let w = &service.workflows()[0];
    assert_eq!(w["id"], format!("r:{id}"));
    assert_eq!(service.terminate().0, 0);
}
