//! The `http_deliver` state machine, its classification of answers and its handler against
//! the scripted in-memory destination.

use super::*;
use serde_json::json;
use crate::contract::{Call, Workflow};
use crate::ports::http::Http;
use crate::ports::memory::MemoryHttp;

use crate::workflows::eventbridge_fixture as fixture;

fn workflow(http: &MemoryHttp) -> HttpDeliver {
    let settings: crate::ports::DestinationSettings =
        toml::from_str("url = \"http://127.0.0.1:1/hook\"").unwrap();
    let endpoint = http.destination("alerts", &settings).unwrap();
    HttpDeliver::new(
        BTreeMap::from([(
            "alerts".to_string(),
            Target {
                endpoint,
                retry: retry_policy(settings.max_attempts, settings.max_age),
            },
        )]),
        Arc::new(BTreeMap::from([(
            "slack_token".to_owned(),
            secrecy::SecretString::from("xoxb-secret-value"),
        )])),
    )
}

fn response(status: u16, retry_after: Option<u64>, excerpt: &str) -> Response {
    Response {
        status,
        retry_after: retry_after.map(Duration::from_secs),
        excerpt: excerpt.into(),
    }
}

#[test]
fn answers_are_classified_as_api_destinations_do() {
    assert_eq!(classify(&response(200, None, "")).unwrap(), Delivered { status: 200 });
    assert_eq!(classify(&response(204, None, "")).unwrap(), Delivered { status: 204 });
    let e = classify(&response(503, Some(7), "busy")).unwrap_err();
    assert!(e.retryable);
    assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
    assert_eq!(e.message, "HTTP 503: busy");
    assert!(classify(&response(429, None, "")).unwrap_err().retryable);
    assert!(classify(&response(500, None, "")).unwrap_err().retryable);
    for status in [400, 401, 403, 404, 409, 413, 302] {
        let e = classify(&response(status, None, "no")).unwrap_err();
        assert!(!e.retryable, "{status}");
        assert_eq!(e.message, format!("HTTP {status}: no"));
    }
}

#[tokio::test]
async fn the_event_is_the_default_body_and_a_template_shapes_a_slack_message() {
    let http = MemoryHttp::default();
    let w = workflow(&http);
    let event = fixture("ecs-task-state-change-stopped-oom.derived.json");
    let (_, next) = w.start(&event, &json!({})).unwrap();
    let Next::Run(act) = next else { panic!() };
    assert_eq!(act.call, Call::Handler);
    assert_eq!(act.retry.max_attempts, 185);
    assert_eq!(act.retry.deadline, Some(Duration::from_secs(86_400)));
    // No copy of the event in the step: it is sent from the instance's record.
    assert_eq!(
        act.step,
        Step::Deliver { destination: "alerts".into(), body: None, secrets: vec![] }
    );
    let ctx = StepContext { workflow_id: "r:e-1", step: "deliver", attempt: 1, generation: 0, continued: 0, event: &event };
    Flow::perform(&w, ctx, &act.step).await.unwrap();
    assert_eq!(http.sent()[0].1, event, "the event is the body");
    let params = json!({"body": {"text": "Task {detail.taskArn|basename} in {detail.clusterArn|basename} stopped: {detail.stoppedReason}"}});
    let (_, next) = w.start(&event, &params).unwrap();
    let Next::Run(act) = next else { panic!() };
    let Step::Deliver { body, .. } = act.step;
    assert_eq!(
        body.unwrap(),
        json!({"text": "Task c13b4cb40f1f4fe4a2971f76ae5a47ad in FargateCluster stopped: OutOfMemoryError: Container killed due to memory usage"})
    );
    let e = w.start(&fixture("ecs-task-state-change-running-fargate.awsdocs.json"), &params).unwrap_err();
    assert!(e.contains("detail.stoppedReason"), "{e}");
}

#[test]
fn params_are_checked() {
    let names = vec!["alerts".to_string()];
    for (params, says) in [
        (json!({"destination": "nope"}), "not configured"),
        (json!({"destination": 1}), "must be a name"),
        (json!({"body": {"t": "{x"}}), "params.body.t"),
        (json!({"bdy": {}}), "unknown param"),
        (json!({"maps": []}), "params.maps"),
    ] {
        let e = Params::parse(&params, &names).err().unwrap();
        assert!(e.contains(says), "{params}: {e}");
    }
    assert!(Params::parse(&json!({}), &[]).is_err());
    assert_eq!(Params::parse(&json!({}), &names).unwrap().destination, "alerts");
}

#[tokio::test]
async fn the_handler_sends_once_per_attempt_and_reports_what_came_back() {
    let http = MemoryHttp::default();
    let w = Typed(workflow(&http));
    let t = w.start(&json!({"id": "e-1"}), &json!({})).unwrap();
    let Next::Run(action) = t.next else { panic!() };
    let event = json!({"id": "e-1"});
    let ctx = StepContext { workflow_id: "r:e-1", step: "deliver", attempt: 1, generation: 0, continued: 0, event: &event };
    http.fail("connection refused");
    http.answer(503, Some(Duration::from_secs(2)), "");
    http.answer(400, None, "{\"error\":\"bad field\"}");
    let e = w.perform(ctx, &action.step).await.unwrap_err();
    assert!(e.retryable && e.message.contains("connection refused"));
    let e = w.perform(ctx, &action.step).await.unwrap_err();
    assert_eq!((e.retryable, e.retry_after), (true, Some(Duration::from_secs(2))));
    let e = w.perform(ctx, &action.step).await.unwrap_err();
    assert!(!e.retryable);
    let failed = w.advance(t.state.clone(), &action, Err(e));
    assert!(matches!(failed.next, Next::Fail(ref m) if m == "delivery to alerts: HTTP 400: {\"error\":\"bad field\"}"));
    let ok = w.perform(ctx, &action.step).await.unwrap();
    let done = w.advance(t.state, &action, Ok(ok));
    assert_eq!(done.next, Next::Complete(json!({"destination": "alerts", "status": 200})));
    assert_eq!(http.sent().len(), 4);
}

/// The attack: a secret written in a body template, read back from the journal or the console
/// by anyone who may read them. A `{secret:NAME}` value is journaled as a placeholder and put
/// in only as the request is sent; an event cannot ask for it.
#[tokio::test]
async fn a_secret_in_a_body_is_never_journaled_and_is_sent() {
    let http = MemoryHttp::default();
    let w = workflow(&http);
    let event = json!({"detail": {"note": "{secret:slack_token}"}});
    let params = json!({"body": {"token": "{secret:slack_token}", "text": "{detail.note}", "list": ["{secret:slack_token}"]}});
    let (_, next) = w.start(&event, &params).unwrap();
    let Next::Run(act) = next else { panic!() };
    let journaled = serde_json::to_string(&act.step).unwrap();
    assert!(!journaled.contains("xoxb"), "{journaled}");
    assert!(journaled.contains("[secret slack_token]"), "{journaled}");
    let ctx = StepContext { workflow_id: "w", step: "deliver", attempt: 1, generation: 0, continued: 0, event: &event };
    Flow::perform(&w, ctx, &act.step).await.unwrap();
    let sent = http.sent();
    assert_eq!(sent[0].1["token"], "xoxb-secret-value");
    assert_eq!(sent[0].1["list"][0], "xoxb-secret-value");
    assert_eq!(sent[0].1["text"], "{secret:slack_token}", "an event's text is never a secret's place");
    // A secret that is not configured fails for good, naming it; a secret inside a text, or in
    // another workflow's template, is refused at load.
    let (_, next) = w.start(&event, &json!({"body": {"t": "{secret:other}"}})).unwrap();
    let Next::Run(act) = next else { panic!() };
    let e = Flow::perform(&w, ctx, &act.step).await.unwrap_err();
    assert!(!e.retryable && e.message.contains("[secrets] other"), "{}", e.message);
    let e = Params::parse(&json!({"body": {"t": "Bearer {secret:x}"}}), &["alerts".into()]).err().unwrap();
    assert!(e.contains("a secret is a whole value"), "{e}");
    let e = crate::workflows::template::BodyTemplate::parse(&json!({"t": "{secret:x}"}), &Default::default()).unwrap_err();
    assert!(e.contains("http_deliver bodies only"), "{e}");
}
