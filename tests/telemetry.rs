//! Traces, checked at an OTLP/HTTP receiver of the test's own (protobuf decoded with the
//! OpenTelemetry proto definitions): a producer's `traceparent` continues through the
//! message's consumer span, the workflow run, its steps and the AWS calls they make, and the
//! spans reach the receiver at shutdown; an `AWSTraceHeader` is continued the same way; a
//! workflow resumed after `kill -9` links to the run that was killed.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeNameForSends, MessageSystemAttributeValue,
};
use serde_json::json;
use support::otlp::{Received, Span, receiver};
use support::service::{Service, create_queue, succeeded, topic_into, until};
use support::{clients, unique};

struct Fixture {
    _dir: tempfile::TempDir,
    queue: String,
    queue_url: String,
    config: PathBuf,
}

/// A queue routed to the `log` workflow (log → [delay] → notify, an SNS Publish).
async fn fixture(prefix: &str, visibility: &str, params: &str) -> Fixture {
    let p = unique(prefix);
    let queue = format!("{p}-q");
    let queue_url = create_queue(&queue).await;
    create_queue(&format!("{p}-dlq")).await;
    let notifications = create_queue(&format!("{p}-n")).await;
    let topic = topic_into(&format!("{p}-ok"), &notifications, true).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[[queues]]\nname = \"{queue}\"\ndlq = \"{p}-dlq\"\nvisibility_timeout = \"{visibility}\"\nreceive_wait = \"1s\"\n\n\
         [[routes]]\nname = \"r\"\npattern = {{ source = [\"test\"] }}\nworkflow = \"log\"\nparams = {{ {params} }}\n\n\
         [notify]\nsuccess_topic = \"{topic}\"\n\n[journal]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[shutdown]\ndeadline = \"5s\"\n",
        dir.path().join("journal").display()
    );
    let config = support::write_config(dir.path(), &[], &extra);
    Fixture {
        _dir: dir,
        queue,
        queue_url,
        config,
    }
}

fn event(id: &str) -> String {
    json!({"version": "0", "id": id, "source": "test", "detail-type": "t", "detail": {}})
        .to_string()
}

/// Sends `body` with the producer's `traceparent` attribute.
async fn send_traced(queue_url: &str, body: String, traceparent: String) {
    clients()
        .await
        .sqs
        .send_message()
        .queue_url(queue_url)
        .message_body(body)
        .message_attributes(
            "traceparent",
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(traceparent)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

fn of_trace(spans: &Received, trace: &str) -> Vec<Span> {
    spans
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.trace == trace)
        .cloned()
        .collect()
}

fn find<'a>(spans: &'a [Span], what: &str, pred: impl Fn(&Span) -> bool) -> &'a Span {
    spans
        .iter()
        .find(|s| pred(s))
        .unwrap_or_else(|| panic!("no {what} among {spans:#?}"))
}

/// producer → message (consumer) → workflow → steps → the SNS Publish, parents and
/// attributes checked; the message span's parent is `producer`.
fn check_chain(spans: &[Span], producer: &str, queue: &str) {
    let process = find(spans, "message span", |s| s.kind == 5);
    assert_eq!(process.parent, producer, "{process:#?}");
    assert_eq!(process.service, "tugboat-under-test");
    assert_eq!(process.attr("messaging.system"), "aws_sqs");
    assert_eq!(process.attr("messaging.destination.name"), queue);
    assert_eq!(process.attr("messaging.operation.type"), "process");
    assert!(
        !process.attr("messaging.message.id").is_empty(),
        "{process:#?}"
    );
    let workflow = find(spans, "workflow span", |s| s.name == "log run");
    assert_eq!(workflow.parent, process.id, "{workflow:#?}");
    assert!(
        workflow.attr("workflow.id").starts_with("r:"),
        "{workflow:#?}"
    );
    assert_eq!(workflow.attr("outcome"), "succeeded");
    let log = find(spans, "log step", |s| s.name == "log log");
    let notify = find(spans, "notify step", |s| s.name == "log notify");
    for step in [log, notify] {
        assert_eq!(step.parent, workflow.id, "{step:#?}");
        assert_eq!(step.attr("step.attempt"), "1");
        assert_eq!(step.attr("outcome"), "ok");
        assert_eq!(step.attr("workflow.id"), workflow.attr("workflow.id"));
    }
    let publish = find(spans, "SNS Publish span", |s| {
        s.attr("rpc.method") == "Publish"
    });
    assert_eq!(publish.kind, 3, "a client span: {publish:#?}");
    assert_eq!(publish.parent, notify.id, "{publish:#?}");
    assert_eq!(publish.attr("rpc.system"), "aws-api");
    assert_eq!(publish.attr("rpc.service"), "SNS");
    assert!(!publish.attr("aws.request_id").is_empty(), "{publish:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producers_traceparent_continues_to_the_aws_calls_and_is_flushed_at_shutdown() {
    let (spans, endpoint) = receiver();
    let f = fixture("otel-tp", "30s", "").await;
    // A minute between exports: only the flush at shutdown can deliver the spans in time.
    let service = Service::start_with_env(
        &f.config,
        None,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "60000"),
            ("OTEL_SERVICE_NAME", "tugboat-under-test"),
        ],
    );
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let producer = "00f067aa0ba902b7";
    send_traced(
        &f.queue_url,
        event("otel-1"),
        format!("00-{trace}-{producer}-01"),
    )
    .await;
    until(
        "the workflow succeeded",
        Duration::from_secs(30),
        async || succeeded(&service) == 1,
    )
    .await;
    assert!(
        of_trace(&spans, trace).is_empty(),
        "nothing exported before the minute"
    );
    let (code, log) = service.terminate();
    assert_eq!(code, 0, "{log}");
    let got = of_trace(&spans, trace);
    check_chain(&got, producer, &f.queue);
    // The log lines of the run carry its trace id.
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("\"trace_id\":\"{trace}\""))
                && l.contains("\"workflow_id\"")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aws_trace_header_is_continued_the_same_way() {
    let (spans, endpoint) = receiver();
    let f = fixture("otel-xray", "30s", "").await;
    let service = Service::start_with_env(
        &f.config,
        None,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_SERVICE_NAME", "tugboat-under-test"),
        ],
    );
    // AWS's documented example.
    let header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    clients()
        .await
        .sqs
        .send_message()
        .queue_url(&f.queue_url)
        .message_body(event("otel-2"))
        .message_system_attributes(
            MessageSystemAttributeNameForSends::AwsTraceHeader,
            MessageSystemAttributeValue::builder()
                .data_type("String")
                .string_value(header)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let trace = "5759e988bd862e3fe1be46a994272793";
    until(
        "the trace's spans arrive",
        Duration::from_secs(30),
        async || of_trace(&spans, trace).iter().any(|s| s.name == "log run"),
    )
    .await;
    check_chain(&of_trace(&spans, trace), "53995c3f42cd8ad8", &f.queue);
    drop(service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_resumed_after_kill_9_links_to_the_killed_run() {
    let (spans, endpoint) = receiver();
    // A 4 s sleep between the log step and the notification: time to kill the process.
    let f = fixture("otel-crash", "2s", "delay = \"4s\"").await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_SERVICE_NAME", "tugboat-under-test"),
    ];
    let first = Service::start_with_env(&f.config, None, &env);
    let trace = "0af7651916cd43dd8448eb211c80319c";
    send_traced(
        &f.queue_url,
        event("otel-3"),
        format!("00-{trace}-b7ad6b7169203331-01"),
    )
    .await;
    until(
        "the first run's log step is exported",
        Duration::from_secs(30),
        async || of_trace(&spans, trace).iter().any(|s| s.name == "log log"),
    )
    .await;
    first.kill9();
    let killed_run = of_trace(&spans, trace)
        .into_iter()
        .find(|s| s.name == "log log")
        .unwrap()
        .parent;
    let second = Service::start_with_env(&f.config, None, &env);
    until(
        "the resumed run succeeded",
        Duration::from_secs(60),
        async || succeeded(&second) == 1,
    )
    .await;
    until(
        "the resumed run's span arrives",
        Duration::from_secs(30),
        async || of_trace(&spans, trace).iter().any(|s| s.name == "log run"),
    )
    .await;
    let got = of_trace(&spans, trace);
    let resumed = find(&got, "resumed run", |s| s.name == "log run");
    assert_ne!(resumed.id, killed_run);
    assert!(
        resumed
            .links
            .contains(&(trace.to_owned(), killed_run.clone())),
        "the resumed run links to the killed one ({killed_run}): {resumed:#?}"
    );
    // Its steps are its own children: the notify step ran in the resumed run.
    let notify = find(&got, "notify step", |s| s.name == "log notify");
    assert_eq!(notify.parent, resumed.id);
    drop(second);
}

fn healthcheck(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tugboat"))
        .arg("healthcheck")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn get(url: &str) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}", url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// The sample of `name` whose labels contain every one of `labels`.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            return None;
        }
        labels
            .iter()
            .all(|want| rest.contains(want))
            .then(|| rest.rsplit(' ').next()?.parse().ok())
            .flatten()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_readiness_over_http_and_the_healthcheck_command() {
    let f = fixture("metrics", "30s", "").await;
    let service = Service::start(&f.config, None);
    let admin = service.admin.clone().unwrap();
    support::service::send(&f.queue_url, &event("metrics-1")).await;
    until(
        "the workflow succeeded",
        Duration::from_secs(30),
        async || succeeded(&service) == 1,
    )
    .await;

    let m = service.metrics();
    let q = format!("queue=\"{}\"", f.queue);
    let end = ["route=\"r\"", "workflow=\"log\"", "outcome=\"succeeded\""];
    assert_eq!(
        sample(&m, "tugboat_messages_received_total", &[&q]),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "tugboat_workflows_started_total",
            &["route=\"r\"", "workflow=\"log\""]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "tugboat_workflows_finished_total", &end),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "tugboat_workflows_running", &[]),
        Some(0.0),
        "{m}"
    );
    for step in ["log", "notify"] {
        let s = format!("step=\"{step}\"");
        assert_eq!(
            sample(&m, "tugboat_step_attempts_total", &[&s]),
            Some(1.0),
            "{m}"
        );
        assert_eq!(
            sample(
                &m,
                "tugboat_step_duration_seconds_count",
                &[&s, "outcome=\"ok\""]
            ),
            Some(1.0),
            "{m}"
        );
        // Cumulative buckets: the last one holds every observation.
        assert_eq!(
            sample(
                &m,
                "tugboat_step_duration_seconds_bucket",
                &[&s, "le=\"+Inf\""]
            ),
            Some(1.0),
            "{m}"
        );
    }
    assert!(
        sample(
            &m,
            "tugboat_step_duration_seconds_bucket",
            &["step=\"notify\"", "le=\"0.005\""]
        )
        .is_some(),
        "{m}"
    );
    assert_eq!(
        sample(&m, "tugboat_workflow_duration_seconds_count", &end),
        Some(1.0),
        "{m}"
    );
    let commits = sample(&m, "tugboat_journal_commit_seconds_count", &[]).unwrap();
    assert!(commits >= 3.0, "a write per transition: {commits}\n{m}");
    assert_eq!(
        sample(
            &m,
            "tugboat_journal_commit_seconds_bucket",
            &["le=\"+Inf\""]
        ),
        Some(commits)
    );
    assert_eq!(
        sample(&m, "tugboat_message_age_seconds_count", &[&q]),
        Some(1.0),
        "{m}"
    );
    assert!(
        sample(&m, "tugboat_queue_lag_seconds", &[&q]).is_some(),
        "{m}"
    );
    assert_eq!(
        sample(&m, "tugboat_messages_in_flight", &[&q]),
        Some(0.0),
        "{m}"
    );
    assert!(m.trim_end().ends_with("# EOF"), "OpenMetrics text: {m}");

    let (code, body) = get(&format!("http://{admin}/healthz"));
    assert_eq!(code, 200, "{body}");
    let (code, body) = get(&format!("http://{admin}/readyz"));
    assert_eq!(code, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["journal"]["ok"], true, "{body}");
    assert_eq!(ready["queues"][0]["reachable"], true, "{body}");
    assert_eq!(ready["traces"]["ok"], true, "{body}");
    let (code, out) = healthcheck(&["--url", &format!("http://{admin}/healthz")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("healthy: HTTP 200"), "{out}");

    // The queue goes away: receives fail, the service is alive but not ready.
    clients()
        .await
        .sqs
        .delete_queue()
        .queue_url(&f.queue_url)
        .send()
        .await
        .unwrap();
    until(
        "/readyz says the queue is unreachable",
        Duration::from_secs(30),
        async || get(&format!("http://{admin}/readyz")).0 == 503,
    )
    .await;
    let (_, body) = get(&format!("http://{admin}/readyz"));
    assert!(body.contains("\"reachable\":false"), "{body}");
    let (code, out) = healthcheck(&[
        "--url",
        &format!("http://{admin}/readyz"),
        "--timeout",
        "2s",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("unhealthy: HTTP 503"), "{out}");
    let (code, _) = healthcheck(&["--url", &format!("http://{admin}/healthz")]);
    assert_eq!(code, 0, "still alive");

    // Stopped: nothing answers.
    drop(service);
    let (code, out) = healthcheck(&[
        "--url",
        &format!("http://{admin}/healthz"),
        "--timeout",
        "1s",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("unhealthy"), "{out}");
    let (code, out) = healthcheck(&["--url", "not a url"]);
    assert_eq!(code, 1, "{out}");
}
