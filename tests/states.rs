//! Definitions users write (Amazon States Language), run by `tugboat serve` against the
//! emulator: a route starts `[workflows.NAME]`, each Task calls SQS or SNS for real, a Wait is
//! the engine's sleep, a `Catch` takes a failed call, a `Fail` state dead-letters the event
//! with its error; `kill -9` at every state boundary resumes without repeating a side effect.
//! The out-of-memory forwarder seed flow runs against the machine's Mosquitto and an HTTP
//! receiver of the test's own on loopback.

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use support::service::{Service, create_queue, depth, drain, send, succeeded, topic_into, until};
use support::{emulator, run, tugboat, unique};

/// A work queue with its DLQ, a queue the definition sends to, a topic it publishes to (into
/// a queue the test reads), and a configuration naming `definition` as `[workflows.flow]`.
struct Fixture {
    _dir: tempfile::TempDir,
    queue: String,
    queue_url: String,
    dlq_url: String,
    out_url: String,
    topic_arn: String,
    notes_url: String,
    config: PathBuf,
}

async fn fixture(prefix: &str, definition: impl Fn(&str, &str) -> Value) -> Fixture {
    let p = unique(prefix);
    let queue = format!("{p}-q");
    let queue_url = create_queue(&queue).await;
    let dlq_url = create_queue(&format!("{p}-dlq")).await;
    let out_url = create_queue(&format!("{p}-out")).await;
    let notes_url = create_queue(&format!("{p}-n")).await;
    let topic_arn = topic_into(&format!("{p}-t"), &notes_url, true).await;
    let dir = tempfile::tempdir().unwrap();
    // A relative path: read beside the configuration file.
    std::fs::create_dir(dir.path().join("flows")).unwrap();
    std::fs::write(
        dir.path().join("flows/flow.asl.json"),
        serde_json::to_string_pretty(&definition(&out_url, &topic_arn)).unwrap(),
    )
    .unwrap();
    let extra = format!(
        "[[queues]]\nname = \"{queue}\"\ndlq = \"{p}-dlq\"\nvisibility_timeout = \"5s\"\nreceive_wait = \"1s\"\n\n\
         [[routes]]\nname = \"r\"\npattern = {{ source = [\"test\"] }}\nworkflow = \"states\"\nparams = {{ definition = \"flow\" }}\n\n\
         [workflows.flow]\ndefinition = \"flows/flow.asl.json\"\n\n\
         [journal]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[shutdown]\ndeadline = \"5s\"\n",
        dir.path().join("journal").display()
    );
    let config = support::write_config(dir.path(), &[], &extra);
    Fixture {
        _dir: dir,
        queue,
        queue_url,
        dlq_url,
        out_url,
        topic_arn,
        notes_url,
        config,
    }
}

fn event(id: &str, detail: Value) -> String {
    json!({"version": "0", "id": id, "source": "test", "detail-type": "t", "detail": detail})
        .to_string()
}

/// Choice on the event; an SQS send (to the test's queue, or to the one the event names, with
/// a Catch); a one-second Wait; an SNS publish; a Fail for n ≤ 0.
fn branching(out_url: &str, topic_arn: &str) -> Value {
    json!({
        "Comment": "tests/states.rs",
        "StartAt": "Route",
        "States": {
            "Route": {"Type": "Choice", "Choices": [
                {"Variable": "$.detail.n", "NumericLessThanEquals": 0, "Next": "Refuse"},
                {"Variable": "$.detail.queue", "IsPresent": true, "Next": "SendThere"}
            ], "Default": "Send"},
            "Send": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage",
                     "Parameters": {"QueueUrl": out_url, "MessageBody.$": "States.Format('n={} id={}', $.detail.n, $.id)"},
                     "ResultPath": "$.sent", "Next": "Pause"},
            "SendThere": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage",
                     "Parameters": {"QueueUrl.$": "$.detail.queue", "MessageBody": "never"},
                     "ResultPath": "$.sent",
                     "Catch": [{"ErrorEquals": ["Tugboat.Permanent"], "ResultPath": "$.error", "Next": "Announce"}],
                     "Next": "Pause"},
            "Pause": {"Type": "Wait", "Seconds": 1, "Next": "Announce"},
            "Announce": {"Type": "Task", "Resource": "arn:aws:states:::sns:publish",
                     "Parameters": {"TopicArn": topic_arn, "Subject": "done", "Message.$": "States.JsonToString($)"},
                     "ResultPath": "$.announced", "OutputPath": "$.announced", "End": true},
            "Refuse": {"Type": "Fail", "Error": "NotPositive", "Cause": "n must be more than 0"}
        }
    })
}

/// The instance of event `id` on route `route`, as the admin API shows it.
fn instance_of(service: &Service, route: &str, id: &str) -> Value {
    service
        .workflows()
        .into_iter()
        .find(|w| w["id"] == format!("{route}:{id}"))
        .unwrap_or_default()
}

/// The names of an instance's steps, in order.
fn step_names(record: &Value) -> Vec<&str> {
    record["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_definition_runs_its_tasks_waits_catches_and_fails_through_the_engine() {
    emulator();
    let f = fixture("states", branching).await;
    let (ok, refused, caught) = (unique("ok"), unique("no"), unique("catch"));
    send(&f.queue_url, &event(&ok, json!({"n": 2}))).await;
    send(&f.queue_url, &event(&refused, json!({"n": 0}))).await;
    send(
        &f.queue_url,
        &event(
            &caught,
            json!({"n": 1, "queue": format!("{}-missing", f.queue)}),
        ),
    )
    .await;
    let service = Service::start(&f.config, None);
    until(
        "two executions succeed",
        Duration::from_secs(30),
        async || succeeded(&service) == 2,
    )
    .await;
    until(
        "the refused one is dead-lettered",
        Duration::from_secs(20),
        async || depth(&f.dlq_url).await.0 == 1,
    )
    .await;
    until(
        "the work queue is empty",
        Duration::from_secs(20),
        async || depth(&f.queue_url).await == (0, 0),
    )
    .await;

    // The SQS Task sent exactly one message, rendered from the event.
    let out = drain(&f.out_url).await;
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, format!("n=2 id={ok}"));

    // The SNS Task published the state's data for both that ran to it: the caught failure
    // carries its error, named as a Catch matches it.
    let notes = drain(&f.notes_url).await;
    assert_eq!(notes.len(), 2, "{notes:?}");
    let note = |id: &str| -> Value {
        let body = &notes
            .iter()
            .find(|(b, _)| b.contains(id))
            .unwrap_or_else(|| panic!("no note for {id}: {notes:?}"))
            .0;
        serde_json::from_str(body).unwrap()
    };
    assert!(
        note(&ok)["sent"]["MessageId"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        note(&ok)
    );
    let error = &note(&caught)["error"];
    assert_eq!(error["Error"], "Tugboat.Permanent", "{error}");
    assert!(
        error["Cause"].as_str().unwrap().contains("-missing"),
        "{error}"
    );
    assert!(
        notes
            .iter()
            .all(|(_, a)| a.get("tugboat-dedup-id").is_some_and(|d| d.len() == 32)),
        "{notes:?}"
    );

    // The journal: the output, each effect a step, the state path.
    let done = instance_of(&service, "r", &ok);
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(done["output"]["MessageId"].is_string(), "{done}");
    assert_eq!(
        done["state"]["path"],
        json!(["Route", "Send", "Pause", "Announce"]),
        "{done}"
    );
    let steps = step_names(&done);
    assert_eq!(steps, ["Send", "Pause", "Announce"], "{done}");
    let shown = run(tugboat(&f.config)
        .args(["workflows", "show", &format!("r:{ok}")])
        .env("TUGBOAT__ADMIN__LISTEN", service.admin.clone().unwrap()));
    assert!(
        shown
            .stdout
            .contains("path:      Route → Send → Pause → Announce"),
        "{}{}",
        shown.stdout,
        shown.stderr
    );
    let caught_run = instance_of(&service, "r", &caught);
    assert_eq!(
        caught_run["state"]["path"],
        json!(["Route", "SendThere", "Announce"]),
        "{caught_run}"
    );

    // The Fail state's error and cause are the dead letter's reason.
    let listed = run(tugboat(&f.config).args(["dlq", "list", "--queue", &f.queue]));
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(
        listed.stdout.contains("NotPositive: n must be more than 0"),
        "{}",
        listed.stdout
    );
    assert!(listed.stdout.contains(&refused), "{}", listed.stdout);

    let (code, log) = service.terminate();
    assert_eq!(code, 0, "{log}");
}

/// Send → Wait → Publish: three effects, each a step.
fn three_effects(out_url: &str, topic_arn: &str) -> Value {
    json!({
        "StartAt": "Send",
        "States": {
            "Send": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage",
                     "Parameters": {"QueueUrl": out_url, "MessageBody.$": "$.id"}, "ResultPath": "$.sent", "Next": "Pause"},
            "Pause": {"Type": "Wait", "Seconds": 1, "Next": "Announce"},
            "Announce": {"Type": "Task", "Resource": "arn:aws:states:::sns:publish",
                     "Parameters": {"TopicArn": topic_arn, "Message.$": "$.id"}, "End": true}
        }
    })
}

/// Kills the service at `failpoint`'s `n`-th pass, restarts it on the same journal, and checks
/// that the execution completed and each side effect happened once — or, where the kill falls
/// between a call and its journal write (`step-called`), at most twice.
async fn crash_and_recover(failpoint: &str, n: u32) {
    let f = fixture("sk", three_effects).await;
    let id = unique("ev");
    send(&f.queue_url, &event(&id, json!({}))).await;
    Service::killed_at(&f.config, &format!("{failpoint}:{n}"));

    let service = Service::start(&f.config, None);
    let case = format!("{failpoint}:{n}");
    support::wait::until_explained(
        "the execution succeeds",
        Duration::from_secs(30),
        async || succeeded(&service) == 1,
        || {
            format!(
                "{case}: {:?}\n{}",
                service.workflows(),
                service.lines().join("\n")
            )
        },
    )
    .await;
    until("the queue is empty", Duration::from_secs(30), async || {
        depth(&f.queue_url).await == (0, 0)
    })
    .await;
    let (code, log) = service.terminate();
    assert_eq!(code, 0, "{log}");

    let most = if failpoint == "step-called" { 2 } else { 1 };
    let sent = drain(&f.out_url).await;
    assert!(
        !sent.is_empty() && sent.len() <= most,
        "{case}: sent {sent:?}"
    );
    assert!(sent.iter().all(|(b, _)| *b == id), "{case}: {sent:?}");
    let notes = drain(&f.notes_url).await;
    assert!(
        !notes.is_empty() && notes.len() <= most,
        "{case}: published {notes:?}"
    );
    let dedup: std::collections::BTreeSet<_> = notes
        .iter()
        .filter_map(|(_, a)| a.get("tugboat-dedup-id"))
        .collect();
    assert_eq!(
        dedup.len(),
        1,
        "{case}: a repeated publish carries the same deduplication id: {notes:?}"
    );
    assert_eq!(
        depth(&f.dlq_url).await,
        (0, 0),
        "{case}: nothing was dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_every_state_boundary_resumes_without_repeating_a_side_effect() {
    emulator();
    // Three steps (Send, Pause, Announce): each failpoint at each of them, the failpoints in
    // parallel, each on a thread of its own.
    let mut runs = Vec::new();
    for failpoint in ["step-journaled", "step-called", "transition-journaled"] {
        runs.push(std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            for n in 1..=3 {
                rt.block_on(crash_and_recover(failpoint, n));
            }
        }));
    }
    for r in runs {
        r.join().expect("a crash run failed");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_definition_that_cannot_run_stops_the_service_naming_it() {
    emulator();
    let cases: [(&str, Value, &str); 3] = [
        (
            "unknown broker",
            json!({"StartAt": "M", "States": {"M": {"Type": "Task", "Resource": "tugboat:mqtt:publish",
                "Parameters": {"Broker": "nowhere", "Topic": "a/b", "Payload.$": "$"}, "End": true}}}),
            "workflows.flow: /States/M: Parameters/Broker: \"nowhere\" is not a [brokers] name",
        ),
        (
            "unknown destination",
            json!({"StartAt": "H", "States": {"H": {"Type": "Task", "Resource": "arn:aws:states:::http:invoke",
                "Parameters": {"Destination": "nowhere", "RequestBody.$": "$"}, "End": true}}}),
            "workflows.flow: /States/H: Parameters/Destination: \"nowhere\" is not a [destinations] name",
        ),
        (
            "a field SQS does not take",
            json!({"StartAt": "S", "States": {"S": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage",
                "Parameters": {"QueueUrl": "q", "MessageBody": "b", "Priority": 1}, "End": true}}}),
            "/States/S/Parameters/Priority: not a parameter of arn:aws:states:::sqs:sendMessage",
        ),
    ];
    for (what, definition, want) in cases {
        let f = fixture("bad", |_, _| definition.clone()).await;
        let out = run(tugboat(&f.config).args(["serve"]).env("RUST_LOG", "error"));
        assert_ne!(out.code, 0, "{what}: {}", out.stderr);
        assert!(out.stderr.contains(want), "{what}: {}", out.stderr);
    }
    // A definition file that is missing is named with its path.
    let f = fixture("gone", branching).await;
    std::fs::remove_file(f.config.parent().unwrap().join("flows/flow.asl.json")).unwrap();
    let out = run(tugboat(&f.config).args(["serve"]));
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("workflows.flow.definition:")
            && out.stderr.contains("flows/flow.asl.json"),
        "{}",
        out.stderr
    );
    let _ = &f.topic_arn;
}

/// One request the receiver saw.
type Seen = Arc<Mutex<Vec<Value>>>;

async fn receiver() -> (Seen, u16) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let s = s.clone();
            async move {
                s.lock()
                    .unwrap()
                    .push(serde_json::from_str(&body).unwrap_or(Value::String(body)));
                "{\"ok\": true}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (seen, port)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_out_of_memory_forwarder_seed_flow_reaches_mqtt_and_http() {
    emulator();
    let broker = support::broker::Broker::shared();
    let root = support::root();
    let definition = root.join("tests/fixtures/states/oom-stop-forwarder.asl.json");
    let p = unique("oom");
    let queue = format!("{p}-q");
    let queue_url = create_queue(&queue).await;
    create_queue(&format!("{p}-dlq")).await;
    let (seen, port) = receiver().await;
    let group = unique("grp");
    let heard =
        support::broker::subscribe(broker.port, &[&format!("ecs/{group}/oom")], false).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[[queues]]\nname = \"{queue}\"\ndlq = \"{p}-dlq\"\nreceive_wait = \"1s\"\n\n\
         [[routes]]\nname = \"oom\"\npattern = {{ source = [\"aws.ecs\"], detail-type = [\"ECS Task State Change\"] }}\nworkflow = \"states\"\nparams = {{ definition = \"oom-forwarder\" }}\n\n\
         [workflows.oom-forwarder]\ndefinition = \"{}\"\n\n{}\n\
         [destinations.ops-webhook]\nurl = \"http://127.0.0.1:{port}/hook\"\n\n\
         [journal]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        definition.display(),
        broker.section("local"),
        dir.path().join("journal").display()
    );
    let config = support::write_config(dir.path(), &[], &extra);
    // The real-shaped OOM stop (its group made unique), and an exit that is not OOM.
    let mut oom: Value = serde_json::from_str(&support::eventbridge(
        "ecs-task-state-change-stopped-oom.derived.json",
    ))
    .unwrap();
    oom["id"] = json!(unique("oom"));
    oom["detail"]["group"] = json!(group);
    let mut exited: Value = serde_json::from_str(&support::eventbridge(
        "ecs-task-state-change-stopped-exited.derived.json",
    ))
    .unwrap();
    exited["id"] = json!(unique("exit"));
    send(&queue_url, &oom.to_string()).await;
    send(&queue_url, &exited.to_string()).await;

    let service = Service::start(&config, None);
    until(
        "both executions succeed",
        Duration::from_secs(30),
        async || succeeded(&service) == 2,
    )
    .await;
    until(
        "the MQTT publish is heard",
        Duration::from_secs(10),
        async || !heard.lock().unwrap().is_empty(),
    )
    .await;
    let heard = heard.lock().unwrap().clone();
    assert_eq!(heard.len(), 1, "{heard:?}");
    let payload: Value = serde_json::from_str(&heard[0].1).unwrap();
    assert_eq!(
        payload["taskArn"], oom["detail"]["taskArn"],
        "the Payload is the event's detail"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            json!({"task": oom["detail"]["taskArn"], "reason": oom["detail"]["containers"][0]["reason"]})
        ]
    );
    // The Parallel's two Tasks were called together, in one step.
    let forwarded = instance_of(&service, "oom", oom["id"].as_str().unwrap());
    let steps = step_names(&forwarded);
    assert_eq!(steps, ["Forward/0/ToMqtt+1"], "{forwarded}");
    let quiet = instance_of(&service, "oom", exited["id"].as_str().unwrap());
    assert_eq!(
        quiet["state"]["path"],
        json!(["OutOfMemory?", "NotOurs"]),
        "{quiet}"
    );
    let (code, log) = service.terminate();
    assert_eq!(code, 0, "{log}");
    let _ = Path::new("");
}

/// The ECS seed flow as a definition: `ecs:runTask.sync` runs `ecs_start`'s steps (RunTask,
/// RUNNING, the IP registered, healthy), the success announced; a mapping whose target group
/// is gone fails at registration, `ecs_start`'s compensation stops the task, and the
/// definition's `Catch` announces the failure and fails the execution (the DLQ).
#[tokio::test(flavor = "multi_thread")]
async fn the_ecs_start_seed_flow_starts_a_task_and_its_catch_compensates_a_failure() {
    emulator();
    let support::Network {
        vpc,
        subnet,
        security_group,
    } = support::network();
    let p = unique("secs");
    let cluster = format!("{p}-cluster");
    support::ecs_cluster(&cluster).await;
    let family = format!("{p}-svc");
    support::fargate_task_definition(&family, "app").await;
    let tg_name = format!("tg{}", p.replace("secs-", "").replace('-', ""));
    let target_group = support::ip_target_group(&tg_name, &vpc).await;
    let missing =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/gone/0123456789abcdef";
    let queue = format!("{p}-q");
    let queue_url = create_queue(&queue).await;
    let dlq_url = create_queue(&format!("{p}-dlq")).await;
    let ok_url = create_queue(&format!("{p}-ok")).await;
    let error_url = create_queue(&format!("{p}-err")).await;
    let ok_topic = topic_into(&format!("{p}-okt"), &ok_url, true).await;
    let error_topic = topic_into(&format!("{p}-errt"), &error_url, true).await;
    let dir = tempfile::tempdir().unwrap();
    let seed = std::fs::read_to_string(
        support::root().join("tests/fixtures/states/ecs-start-with-compensation.asl.json"),
    )
    .unwrap();
    let definition = seed
        .replace("\"tugboat-success\"", &format!("{ok_topic:?}"))
        .replace("\"tugboat-error\"", &format!("{error_topic:?}"));
    std::fs::write(dir.path().join("ecs.asl.json"), definition).unwrap();
    let mapping = |name: &str, tg: &str| {
        format!(
            "[services.{name}]\ncluster = \"{cluster}\"\ntask_definition = \"{family}\"\ntarget_group = \"{tg}\"\n\
             container_name = \"app\"\ncontainer_port = 8080\nsubnets = [\"{subnet}\"]\nsecurity_groups = [\"{security_group}\"]\n\n"
        )
    };
    let extra = format!(
        "[[queues]]\nname = \"{queue}\"\ndlq = \"{p}-dlq\"\nvisibility_timeout = \"10s\"\nreceive_wait = \"1s\"\n\n\
         [[routes]]\nname = \"start\"\npattern = {{ source = [\"custom.app\"] }}\nworkflow = \"states\"\nparams = {{ definition = \"ecs\" }}\n\n\
         [workflows.ecs]\ndefinition = \"ecs.asl.json\"\n\n{}{}\
         [journal]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        mapping("svc", &tg_name),
        mapping("broken", missing),
        dir.path().join("journal").display()
    );
    let config = support::write_config(dir.path(), &[], &extra);
    let (good, bad) = (unique("good"), unique("bad"));
    for (id, service) in [(&good, "svc"), (&bad, "broken")] {
        send(&queue_url, &json!({"version": "0", "id": id, "source": "custom.app", "detail-type": "Start ECS Task", "detail": {"service": service}}).to_string()).await;
    }
    let service = Service::start(&config, None);
    until(
        "the good start succeeds",
        Duration::from_secs(60),
        async || succeeded(&service) == 1,
    )
    .await;
    until(
        "the broken one is dead-lettered",
        Duration::from_secs(60),
        async || depth(&dlq_url).await.0 == 1,
    )
    .await;

    let started = instance_of(&service, "start", &good);
    let task = &started["output"]["task"];
    let task_arn = task["taskArn"]
        .as_str()
        .unwrap_or_else(|| panic!("{started}"));
    let ip = task["ip"].as_str().unwrap();
    // The child's steps are the Task's, each journaled under the state's name.
    let steps = step_names(&started);
    assert_eq!(steps.first(), Some(&"StartTask/run-task"), "{steps:?}");
    assert!(
        steps.contains(&"StartTask/register-target") && steps.last() == Some(&"AnnounceStarted"),
        "{steps:?}"
    );
    let c = support::clients().await;
    let health = c
        .elbv2
        .describe_target_health()
        .target_group_arn(&target_group)
        .send()
        .await
        .unwrap();
    assert_eq!(
        health.target_health_descriptions()[0]
            .target()
            .unwrap()
            .id(),
        Some(ip)
    );
    let oks = drain(&ok_url).await;
    assert_eq!(oks.len(), 1, "{oks:?}");
    assert_eq!(oks[0].0, format!("task {task_arn} runs at {ip}"));

    // The broken mapping: its task was stopped by ecs_start's compensation, the failure
    // announced by the Catch, and the Fail state's error is the dead letter's reason.
    let failed = instance_of(&service, "start", &bad);
    assert_eq!(failed["status"], "dead_lettered", "{failed}");
    let path: Vec<&str> = failed["state"]["path"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(path, ["StartTask", "AnnounceFailure", "Failed"], "{failed}");
    let undo: Vec<&str> = step_names(&failed)
        .into_iter()
        .filter(|n| n.contains("/undo/"))
        .collect();
    assert!(undo.iter().any(|n| n.contains("stop-task")), "{failed}");
    let errors = drain(&error_url).await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    let failure: Value = serde_json::from_str(&errors[0].0).unwrap();
    assert_eq!(failure["Error"], "States.TaskFailed", "{failure}");
    assert!(
        failure["Cause"]
            .as_str()
            .unwrap()
            .contains("TargetGroupNotFound"),
        "{failure}"
    );
    let mut stopped = 0;
    for status in [
        aws_sdk_ecs::types::DesiredStatus::Running,
        aws_sdk_ecs::types::DesiredStatus::Stopped,
    ] {
        for arn in c
            .ecs
            .list_tasks()
            .cluster(&cluster)
            .desired_status(status)
            .send()
            .await
            .unwrap()
            .task_arns()
        {
            let d = c
                .ecs
                .describe_tasks()
                .cluster(&cluster)
                .tasks(arn)
                .send()
                .await
                .unwrap();
            let t = &d.tasks()[0];
            if arn != task_arn {
                assert_eq!(
                    t.last_status(),
                    Some("STOPPED"),
                    "the failed start's task is not left running"
                );
                stopped += 1;
            }
        }
    }
    assert_eq!(
        stopped, 1,
        "one task started for the broken mapping, and stopped"
    );
    assert_eq!(service.terminate().0, 0);
}

/// DynamoDB items through a definition: a conditional put, a read, an update that counts,
/// and a second put of the same key refused (`DynamoDB.ConditionalCheckFailedException`,
/// caught).
#[tokio::test(flavor = "multi_thread")]
async fn dynamodb_tasks_put_read_update_and_name_a_refused_condition() {
    emulator();
    let table = unique("items");
    support::service::create_cost_table(&table).await;
    let t = table.clone();
    let f = fixture("ddb", move |_, _| {
        let key = json!({"pk": {"S.$": "$.id"}, "sk": {"S": "run"}});
        json!({
            "StartAt": "Put",
            "States": {
                "Put": {"Type": "Task", "Resource": "arn:aws:states:::dynamodb:putItem",
                        "Parameters": {"TableName": t, "Item": {"pk": {"S.$": "$.id"}, "sk": {"S": "run"}, "count": {"N": "1"}, "detail": {"M": {"n": {"N.$": "States.Format('{}', $.detail.n)"}}}},
                                       "ConditionExpression": "attribute_not_exists(pk)"},
                        "ResultPath": null, "Next": "Read"},
                "Read": {"Type": "Task", "Resource": "arn:aws:states:::dynamodb:getItem",
                         "Parameters": {"TableName": t, "Key": key, "ConsistentRead": true}, "ResultSelector": {"count.$": "$.Item.count.N"}, "ResultPath": "$.read", "Next": "Count"},
                "Count": {"Type": "Task", "Resource": "arn:aws:states:::dynamodb:updateItem",
                          "Parameters": {"TableName": t, "Key": key, "UpdateExpression": "SET #c = #c + :one",
                                         "ExpressionAttributeNames": {"#c": "count"}, "ExpressionAttributeValues": {":one": {"N": "1"}}, "ReturnValues": "UPDATED_NEW"},
                          "ResultPath": "$.counted", "Next": "PutAgain"},
                "PutAgain": {"Type": "Task", "Resource": "arn:aws:states:::dynamodb:putItem",
                             "Parameters": {"TableName": t, "Item": {"pk": {"S.$": "$.id"}, "sk": {"S": "run"}}, "ConditionExpression": "attribute_not_exists(pk)"},
                             "Catch": [{"ErrorEquals": ["DynamoDB.ConditionalCheckFailedException"], "ResultPath": "$.refused", "Next": "Done"}],
                             "Next": "Done"},
                "Done": {"Type": "Succeed"}
            }
        })
    })
    .await;
    let id = unique("ev");
    send(&f.queue_url, &event(&id, json!({"n": 7}))).await;
    let service = Service::start(&f.config, None);
    until(
        "the execution succeeds",
        Duration::from_secs(30),
        async || succeeded(&service) == 1,
    )
    .await;
    let run = instance_of(&service, "r", &id);
    let output = &run["output"];
    assert_eq!(output["read"], json!({"count": "1"}), "{run}");
    assert_eq!(
        output["counted"],
        json!({"Attributes": {"count": {"N": "2"}}}),
        "{run}"
    );
    assert_eq!(
        output["refused"]["Error"], "DynamoDB.ConditionalCheckFailedException",
        "{run}"
    );
    let items = support::service::scan_items(&table).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(service.terminate().0, 0);
}
