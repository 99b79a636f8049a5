//! Schedules in a running service (in process, memory queues, the sled journal): a tick is an
//! event on the schedule's queue that runs its route's workflow; ticks missed while the service
//! was down fire on start as `catch_up` says; a tick sent twice (a crash between the send and
//! the journal's write of the schedule) runs once; a restart fires nothing twice.

mod support;

use std::sync::Arc;

use support::app::{TestApp, spawn_app};
use tugboat::app::Dependencies;
use tugboat::journal::sled::SledJournal;
use tugboat::journal::{Journal, ListFilter};
use tugboat::ports::memory::{MemoryQueue, MemoryQueues};
use tugboat::schedule::{State, state_key};

const MIN: i64 = 60_000;

fn config(schedule: &str) -> String {
    format!(
        r#"[aws]
region = "us-east-1"

[[queues]]
name = "work"
receive_wait = "100ms"

[[routes]]
name = "ticks"
pattern = {{ source = ["tugboat.schedule"] }}
workflow = "log"

[admin]
listen = "127.0.0.1:0"

[shutdown]
deadline = "2s"

[[schedules]]
name = "every-minute"
{schedule}

[schedules.event]
source = "tugboat.schedule"
detail-type = "tick"
detail = {{ job = "cleanup" }}
"#
    )
}

struct Service {
    app: TestApp,
    queue: Arc<MemoryQueue>,
}

async fn start(journal: &Arc<SledJournal>, schedule: &str) -> Service {
    let queue = Arc::new(MemoryQueue::new("work"));
    let queues = Arc::new(MemoryQueues::default());
    queues.add(queue.clone());
    let mut deps = Dependencies::memory(queues);
    deps.journal = Some(journal.clone() as Arc<dyn Journal>);
    let app = spawn_app(&config(schedule), deps).await;
    Service { app, queue }
}

fn instances(app: &TestApp) -> Vec<tugboat::journal::Record> {
    use futures::FutureExt;
    app.journal
        .list(&ListFilter::default())
        .now_or_never()
        .unwrap()
        .unwrap()
}

fn now_ms() -> i64 {
    tugboat::ports::clock::system_ms() as i64
}

async fn put_state(journal: &SledJournal, state: State) {
    journal
        .put_setting(
            &state_key("every-minute"),
            &serde_json::to_value(state).unwrap(),
        )
        .await
        .unwrap();
}

async fn state(journal: &SledJournal) -> State {
    serde_json::from_value(
        journal
            .setting(&state_key("every-minute"))
            .await
            .unwrap()
            .expect("the schedule's state is journaled"),
    )
    .unwrap()
}

#[actix_rt::test]
async fn a_new_rate_fires_at_once_and_its_tick_runs_the_route_s_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(SledJournal::open(&dir.path().join("j")).unwrap());
    let s = start(&journal, "rate = \"1 hour\"").await;
    s.app
        .until("the tick's instance succeeded", 10, |a| {
            a.statuses() == ["succeeded"]
        })
        .await;
    let r = &instances(&s.app)[0];
    assert_eq!(r.workflow, "log");
    assert_eq!(r.route, "ticks");
    support::app::until("the tick's message is deleted", 10, || {
        s.queue.deleted() == 1
    })
    .await;
    let st = state(&journal).await;
    assert!(st.last_ms >= st.anchor_ms, "{st:?}");
    // The fire is counted where Prometheus scrapes.
    let metrics = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{}/metrics", s.app.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tugboat_schedule_fires_total{schedule=\"every-minute\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tugboat_schedule_lateness_seconds_count{schedule=\"every-minute\"} 1")
    );
    s.app.stop().await;
}

#[actix_rt::test]
async fn missed_ticks_fire_on_start_once_each_and_a_resent_tick_runs_once() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(SledJournal::open(&dir.path().join("j")).unwrap());
    // The service was down for five whole minutes: the journal's last tick is older.
    let minute = now_ms() / MIN * MIN;
    let down = minute - 5 * MIN;
    put_state(
        &journal,
        State {
            anchor_ms: 0,
            last_ms: down,
            paused: false,
        },
    )
    .await;
    let schedule = "cron = \"* * ? * * *\"\ncatch_up = \"all\"";
    let s = start(&journal, schedule).await;
    s.app
        .until("the five missed ticks ran", 10, |a| {
            a.statuses().iter().filter(|st| *st == "succeeded").count() >= 5
        })
        .await;
    let first = instances(&s.app);
    let ticks: std::collections::BTreeSet<String> = first
        .iter()
        .map(|r| r.input["time"].as_str().unwrap().to_owned())
        .collect();
    assert!(ticks.len() >= 5, "{ticks:?}");
    let after = state(&journal).await;
    assert!(after.last_ms >= minute, "{after:?}");
    s.app.stop().await;

    // A crash between the send and the journal's write: the state says the ticks are owed
    // again, so they are sent again — and each route's instance runs once.
    put_state(
        &journal,
        State {
            last_ms: down,
            ..after
        },
    )
    .await;
    let s = start(&journal, schedule).await;
    support::app::until("the resent ticks are settled", 10, || {
        s.queue.deleted() >= 5
    })
    .await;
    s.app
        .until("nothing runs", 10, |a| {
            a.statuses().iter().all(|st| st == "succeeded")
        })
        .await;
    let again = instances(&s.app);
    let ids = |rs: &[tugboat::journal::Record]| {
        rs.iter()
            .filter(|r| r.input["time"].as_str().unwrap() <= minute_text(minute).as_str())
            .map(|r| r.id.clone())
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(
        ids(&first),
        ids(&again),
        "a resent tick started a second instance"
    );
    s.app.stop().await;
}

fn minute_text(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .unwrap()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
