//! The conformance corpus (`tests/fixtures/states/`, sources in `tests/fixtures/INDEX.md`): the
//! intrinsic functions' documented examples, data-flow and control-flow cases from the
//! States Language specification and the Step Functions guide, and the seed flows written as
//! definitions; then definitions that must be refused, each naming its JSON pointer.

use serde_json::{Value, json};

use super::definition::Definition;
use super::intrinsic::Call;
use super::run::{StateError, run};
use super::tool::Fakes;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/states/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn cases(name: &str) -> Vec<Value> {
    serde_json::from_str(&fixture(name)).unwrap()
}

#[test]
fn the_intrinsic_functions_give_the_documented_results() {
    let cases = cases("intrinsics.json");
    assert!(cases.len() >= 18, "{}", cases.len());
    for c in cases {
        let field = c["field"].as_str().unwrap();
        let mut draw = || 7u64;
        let got = Call::parse(field)
            .and_then(|call| call.eval(&c["input"], &json!({}), &mut draw))
            .unwrap_or_else(|e| panic!("{}: {field}: {e}", c["source"]));
        assert_eq!(got, c["output"], "{}: {field}", c["source"]);
    }
}

async fn run_case(c: &Value) -> (Result<Value, StateError>, Fakes) {
    let d = Definition::parse(&c["definition"]).unwrap_or_else(|e| panic!("{}: {e}", c["source"]));
    let mut fakes = Fakes::default();
    if let Some(results) = c["results"].as_object() {
        fakes.results = results.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    }
    if let Some(fail) = c["fail"].as_object() {
        for (state, f) in fail {
            let e = StateError::new(f["Error"].as_str().unwrap(), f["Cause"].as_str().unwrap_or(""));
            fakes.failures.insert(state.clone(), (e, f["Times"].as_u64().map_or(u32::MAX, |t| t as u32)));
        }
    }
    let out = run(&d, c["input"].clone(), &json!({"Execution": {"Id": "x"}}), &mut fakes).await;
    (out, fakes)
}

#[tokio::test]
async fn data_and_control_flow_follow_the_specification() {
    let cases = cases("dataflow.json");
    assert!(cases.len() >= 14, "{}", cases.len());
    for c in &cases {
        let (out, fakes) = run_case(c).await;
        match (&c.get("output"), out) {
            (Some(want), Ok(got)) => assert_eq!(&got, *want, "{}", c["source"]),
            (None, Err(e)) => assert_eq!(e.to_value(), c["error"], "{}", c["source"]),
            (_, other) => panic!("{}: {other:?}\n{}", c["source"], fakes.trace.join("\n")),
        }
        if let Some(waits) = c.get("waits") {
            let want: Vec<f64> = serde_json::from_value(waits.clone()).unwrap();
            assert_eq!(fakes.waits, want, "{}", c["source"]);
        }
    }
}

#[tokio::test]
async fn the_seed_flows_run_as_definitions() {
    // ECS start: the task runs, the success is announced with its address.
    let ecs = Definition::from_json(&fixture("ecs-start-with-compensation.asl.json")).unwrap();
    let event = json!({"detail": {"cluster": "c", "taskDefinition": "web:3", "service": "web"}});
    let mut fakes = Fakes::default();
    fakes.results.insert("StartTask".into(), json!({"task_arn": "arn:t/1", "ip": "10.0.0.5", "other": 1}));
    let out = run(&ecs, event.clone(), &json!({}), &mut fakes).await.unwrap();
    assert_eq!(out["task"], json!({"taskArn": "arn:t/1", "ip": "10.0.0.5"}));
    let published: Vec<&Value> = fakes.calls.iter().filter(|(k, _, _)| k == "AnnounceStarted").map(|(_, _, p)| p).collect();
    assert_eq!(published, [&json!({"TopicArn": "tugboat-success", "Message": "task arn:t/1 runs at 10.0.0.5"})]);
    assert_eq!(fakes.calls[0].2, json!({"Service": "web"}));

    // Throttled twice (retried with jittered delays of at most 2 and 4 s), then it fails for
    // good: the compensation announces the failure and the run fails with the task's error.
    let mut fakes = Fakes::default();
    fakes.failures.insert("StartTask".into(), (StateError::new("Tugboat.Retryable", "rate"), 2));
    fakes.results.insert("StartTask".into(), json!({"task_arn": "arn:t/2", "ip": "10.0.0.6"}));
    run(&ecs, event.clone(), &json!({}), &mut fakes).await.unwrap();
    assert_eq!(fakes.waits.len(), 2);
    assert!(fakes.waits[0] <= 2.0 && fakes.waits[1] <= 4.0, "{:?}", fakes.waits);
    let mut fakes = Fakes::default();
    fakes.failures.insert("StartTask".into(), (StateError::new("TaskNeverHealthy", "target unhealthy for 300 s"), u32::MAX));
    let e = run(&ecs, event, &json!({}), &mut fakes).await.unwrap_err();
    assert_eq!(e, StateError::new("TaskNeverHealthy", "target unhealthy for 300 s"));
    let (key, _, payload) = fakes.calls.last().unwrap();
    assert_eq!(key, "AnnounceFailure");
    assert_eq!(payload["Message"], "{\"Cause\":\"target unhealthy for 300 s\",\"Error\":\"TaskNeverHealthy\"}");

    // OOM forwarder: an out-of-memory stop goes to both destinations; another stop to none.
    let oom = Definition::from_json(&fixture("oom-stop-forwarder.asl.json")).unwrap();
    let stopped = |reason: &str| {
        json!({"detail": {"lastStatus": "STOPPED", "group": "service:web", "taskArn": "arn:t/9",
            "containers": [{"name": "app", "reason": reason}]}})
    };
    let mut fakes = Fakes::default();
    let out = run(&oom, stopped("OutOfMemoryError: Container killed due to memory usage"), &json!({}), &mut fakes).await.unwrap();
    assert_eq!(out["detail"]["taskArn"], "arn:t/9", "ResultPath null keeps the event");
    let keys: Vec<&str> = fakes.calls.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(keys, ["Forward/0/ToMqtt", "Forward/1/ToWebhook"]);
    assert_eq!(fakes.calls[0].2["Topic"], "ecs/service:web/oom");
    let mut fakes = Fakes::default();
    run(&oom, stopped("Essential container in task exited"), &json!({}), &mut fakes).await.unwrap();
    assert!(fakes.calls.is_empty());
}

#[tokio::test]
async fn keys_stay_unique_in_loops_and_random_draws_repeat_on_replay() {
    let d = Definition::parse(&json!({"StartAt": "Count", "States": {
        "Count": {"Type": "Pass", "Parameters": {"n.$": "States.MathAdd($.n, 1)", "id.$": "States.UUID()"}, "Next": "Again?"},
        "Again?": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericLessThan": 3, "Next": "Count"}], "Default": "Call"},
        "Call": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage", "End": true}}}))
    .unwrap();
    let mut first = Fakes::default();
    let a = run(&d, json!({"n": 0}), &json!({}), &mut first).await.unwrap();
    let entered: Vec<&str> = first.trace.iter().filter(|l| !l.starts_with(' ')).map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(entered, ["Count", "Again?", "Count#2", "Again?#2", "Count#3", "Again?#3", "Call"]);
    let mut again = Fakes::default();
    let b = run(&d, json!({"n": 0}), &json!({}), &mut again).await.unwrap();
    assert_eq!(a, b, "the same draws: the same UUIDs");
    assert_eq!(first.calls[0].2["n"], 3);
}

#[test]
fn definitions_that_cannot_run_are_refused_naming_the_pointer() {
    let task = |extra: Value| {
        let mut t = json!({"Type": "Task", "Resource": "arn:aws:states:::sns:publish", "End": true});
        t.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({"StartAt": "T", "States": {"T": t}})
    };
    for (d, says) in [
        (json!([]), "a definition must be a JSON object"),
        (json!({"States": {}}), "/StartAt: a state name is required"),
        (json!({"StartAt": "A", "States": {}}), "/States: an object of at least one state"),
        (json!({"StartAt": "B", "States": {"A": {"Type": "Succeed"}}}), "/StartAt: \"B\" is not a state"),
        (json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Z"}}}), "/States/A/Next: \"Z\" is not a state"),
        (json!({"StartAt": "A", "States": {"A": {"Type": "Succeed"}, "B": {"Type": "Succeed"}}}), "/States/B: no transition reaches"),
        (json!({"StartAt": "A", "States": {"A": {"Type": "Pass"}}}), "/States/A: a Pass state needs Next or \"End\": true"),
        (json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "Next": "A"}}}), "not both"),
        (json!({"StartAt": "A", "States": {"A": {"Type": "Loop", "End": true}}}), "/States/A/Type: \"Loop\" is not a state type"),
        (json!({"StartAt": "A", "States": {"A": {"Type": "Succeed", "Next": "A"}}}), "/States/A/Next: is not a field of a Succeed state"),
        (json!({"StartAt": "A", "QueryLanguage": "JSONata", "States": {"A": {"Type": "Succeed"}}}), "/QueryLanguage"),
        (task(json!({"Resource": "arn:aws:states:::lambda:invoke"})), "/States/T/Resource: \"arn:aws:states:::lambda:invoke\" is not a resource tugboat runs"),
        (task(json!({"HeartbeatSeconds": 60})), "/States/T/HeartbeatSeconds: task heartbeats are not supported"),
        (task(json!({"Arguments": {}})), "/States/T/Arguments: JSONata"),
        (task(json!({"Retry": [{"ErrorEquals": ["States.ALL", "X"]}]})), "/States/T/Retry/0/ErrorEquals/0: States.ALL must stand alone"),
        (task(json!({"Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}]})), "/States/T/Retry/0/ErrorEquals/0: States.ALL must stand alone, in the last"),
        (task(json!({"Retry": [{"ErrorEquals": ["States.Nope"]}]})), "/States/T/Retry/0/ErrorEquals/0: \"States.Nope\" is not an error"),
        (task(json!({"Retry": [{"ErrorEquals": ["States.Http.StatusCode.5xx"]}]})), "/States/T/Retry/0/ErrorEquals/0: \"States.Http.StatusCode.5xx\" is not an error"),
        (task(json!({"Resource": "arn:aws:states:::http:invoke", "Parameters": {"Destination": "d", "Subject": "s"}})), "/States/T/Parameters/Subject: not a parameter of arn:aws:states:::http:invoke"),
        (task(json!({"Parameters": {"TopicArn": "t"}})), "/States/T/Parameters: arn:aws:states:::sns:publish needs Message"),
        // A definition cannot send a destination's credentials elsewhere: the URL is the
        // configuration's, never a parameter.
        (task(json!({"Resource": "arn:aws:states:::http:invoke", "Parameters": {"Destination": "d", "ApiEndpoint": "https://attacker.example"}})), "/States/T/Parameters/ApiEndpoint: not a parameter of arn:aws:states:::http:invoke"),
        (task(json!({"Retry": [{"ErrorEquals": ["X"], "BackoffRate": 0.5}]})), "/States/T/Retry/0/BackoffRate: must be a number, at least 1.0"),
        (task(json!({"Retry": [{"ErrorEquals": ["X"], "JitterStrategy": "SOME"}]})), "/States/T/Retry/0/JitterStrategy"),
        (task(json!({"Retry": [{"ErrorEquals": []}]})), "/States/T/Retry/0/ErrorEquals: a non-empty array"),
        (task(json!({"Catch": [{"ErrorEquals": ["X"]}]})), "/States/T/Catch/0/Next: a state's name is required"),
        (task(json!({"Parameters": {"a.$": "not a path"}})), "/States/T/Parameters/a.$"),
        (task(json!({"Parameters": {"a.$": "States.Format('{}')"}})), "/States/T/Parameters/a.$"),
        (task(json!({"ResultPath": "$.a[*]"})), "/States/T/ResultPath: \"$.a[*]\" is not a reference path"),
        (task(json!({"ResultPath": "$$.a"})), "/States/T/ResultPath: a result is placed in the state's data"),
        (task(json!({"InputPath": 3})), "/States/T/InputPath: must be a path or null"),
        (task(json!({"TimeoutSeconds": 0})), "/States/T/TimeoutSeconds: must be a whole number of seconds, at least 1"),
        (json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 1, "Timestamp": "2026-01-01T00:00:00Z", "End": true}}}), "/States/W: a Wait state has exactly one"),
        (json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Timestamp": "tomorrow", "End": true}}}), "/States/W/Timestamp: must be an RFC 3339"),
        (json!({"StartAt": "C", "States": {"C": {"Type": "Choice", "Choices": []}}}), "/States/C/Choices: a non-empty array"),
        (json!({"StartAt": "C", "States": {"C": {"Type": "Choice", "Choices": [{"Variable": "$.a", "IsNull": true, "Next": "Nowhere"}]}}}), "/States/C/Choices/0/Next: \"Nowhere\" is not a state"),
        (json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "Branches": [{"StartAt": "X", "States": {"X": {"Type": "Pass", "Next": "Y"}}}], "End": true}}}), "/States/P/Branches/0/States/X/Next: \"Y\" is not a state of /States/P/Branches/0/States"),
        (json!({"StartAt": "M", "States": {"M": {"Type": "Map", "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED"}, "StartAt": "X", "States": {"X": {"Type": "Succeed"}}}, "End": true}}}), "/States/M/ItemProcessor/ProcessorConfig/Mode: \"DISTRIBUTED\" is not supported"),
        (json!({"StartAt": "M", "States": {"M": {"Type": "Map", "MaxConcurrency": -1, "Iterator": {"StartAt": "X", "States": {"X": {"Type": "Succeed"}}}, "End": true}}}), "/States/M/MaxConcurrency"),
        (json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "E", "ErrorPath": "$.e"}}}), "/States/F: Error or ErrorPath, not both"),
        (json!({"StartAt": "a/b", "States": {"a/b": {"Type": "Pass", "End": true, "Bogus": 1}}}), "/States/a~1b/Bogus: is not a field of a Pass state"),
    ] {
        let e = Definition::parse(&d).unwrap_err();
        assert!(e.contains(says), "{d}\n  said: {e}\n  want: {says}");
    }
    // The HTTP task's status names are Step Functions' own.
    let http = task(json!({"Resource": "arn:aws:states:::http:invoke", "Parameters": {"Destination": "d"},
        "Retry": [{"ErrorEquals": ["States.Http.StatusCode.429"]}]}));
    assert!(Definition::parse(&http).is_ok());
    let long = "x".repeat(81);
    let e = Definition::parse(&json!({"StartAt": long, "States": {long.clone(): {"Type": "Succeed"}}})).unwrap_err();
    assert!(e.contains("1 to 80 characters"), "{e}");
}

#[tokio::test]
async fn runtime_errors_carry_the_languages_names() {
    for (d, input, error) in [
        (json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "InputPath": "$.missing", "End": true}}}), json!({}), "States.Runtime"),
        (json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "Parameters": {"x.$": "States.ArrayGetItem($.l, 9)"}, "End": true}}}), json!({"l": []}), "States.IntrinsicFailure"),
        (json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": 1, "ResultPath": "$.a.b", "End": true}}}), json!({"a": 5}), "States.ResultPathMatchFailure"),
        (json!({"StartAt": "C", "States": {"C": {"Type": "Choice", "Choices": [{"Variable": "$.a", "IsNull": true, "Next": "E"}]}, "E": {"Type": "Succeed"}}}), json!({"a": 1}), "States.NoChoiceMatched"),
        (json!({"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.items", "ItemProcessor": {"StartAt": "X", "States": {"X": {"Type": "Succeed"}}}, "End": true}}}), json!({"items": 3}), "States.Runtime"),
    ] {
        let def = Definition::parse(&d).unwrap();
        let e = run(&def, input, &json!({}), &mut Fakes::default()).await.unwrap_err();
        assert_eq!(e.error, error, "{d}: {e:?}");
    }
    // States.Runtime is never caught by States.ALL.
    let def = Definition::parse(&json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:aws:states:::sns:publish", "InputPath": "$.missing",
              "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}], "End": true},
        "Caught": {"Type": "Succeed"}}}))
    .unwrap();
    let e = run(&def, json!({}), &json!({}), &mut Fakes::default()).await.unwrap_err();
    assert_eq!(e.error, "States.Runtime");
}

#[test]
fn a_yaml_definition_is_the_same_definition() {
    let json = Definition::from_json(&fixture("oom-stop-forwarder.asl.json")).unwrap();
    let yaml = Definition::from_yaml(&fixture("oom-stop-forwarder.asl.yaml")).unwrap();
    assert_eq!(yaml, json);
    let e = Definition::from_yaml("StartAt: A\nStates:\n  A: {Type: Wait, Seconds: -1, End: true}\n").unwrap_err();
    assert!(e.contains("/States/A/Seconds"), "{e}");
    assert!(Definition::from_yaml("StartAt: [").unwrap_err().starts_with("not YAML"));
}
