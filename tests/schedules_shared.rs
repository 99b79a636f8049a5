//! Schedules over the shared journal (DynamoDB on the emulator): three `tugboat serve`
//! processes run one schedule, and each tick is fired by one of them; the leader is killed
//! with SIGKILL and another takes the schedule's lease when it ends, firing what is owed
//! (`catch_up = "all"`): no tick is lost, and each runs its route's workflow once.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;
use support::service::{Service, create_journal_table, create_queue, scan_items, until};
use support::unique;

const EVERY_MS: i64 = 2_000;

/// (tick, pid) of every "schedule: fired" line the processes logged.
fn fired(processes: &[(u32, Vec<String>)]) -> Vec<(i64, u32)> {
    let mut out = Vec::new();
    for (pid, lines) in processes {
        for l in lines {
            let Ok(v) = serde_json::from_str::<Value>(l) else {
                continue;
            };
            if v["message"] == "schedule: fired"
                && let Some(t) = v["tick_ms"].as_i64()
            {
                out.push((t, *pid));
            }
        }
    }
    out.sort();
    out
}

/// The records of the journal: (event id, status) of each.
async fn records(table: &str) -> Vec<(String, String)> {
    scan_items(table)
        .await
        .iter()
        .filter_map(|item| item.get("record").and_then(|r| r.as_s().ok()))
        .map(|record| {
            let r: Value = serde_json::from_str(record).unwrap();
            (
                r["input"]["id"].as_str().unwrap_or_default().to_owned(),
                r["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_fire_each_tick_once_and_take_over_from_a_killed_leader() {
    let p = unique("sched");
    let queue = format!("{p}-q");
    create_queue(&queue).await;
    let table = format!("{p}-journal");
    create_journal_table(&table).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[[queues]]\nname = \"{queue}\"\nreceive_wait = \"1s\"\nvisibility_timeout = \"4s\"\n\n\
         [[routes]]\nname = \"ticks\"\npattern = {{ source = [\"tugboat.schedule\"] }}\nworkflow = \"log\"\n\n\
         [journal]\nkind = \"dynamodb\"\ntable = \"{table}\"\nlease = \"3s\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[shutdown]\ndeadline = \"3s\"\n\n\
         [[schedules]]\nname = \"{p}\"\nrate = \"2 seconds\"\ncatch_up = \"all\"\n\n\
         [schedules.event]\nsource = \"tugboat.schedule\"\ndetail-type = \"tick\"\n"
    );
    let config = support::write_config(dir.path(), &[], &extra);
    let mut processes: Vec<Service> = (0..3).map(|_| Service::start(&config, None)).collect();
    let lines = |ps: &[Service], dead: &[(u32, Vec<String>)]| {
        let mut all: Vec<(u32, Vec<String>)> = dead.to_vec();
        all.extend(ps.iter().map(|s| (s.pid(), s.lines())));
        all
    };

    // Three ticks fired; the process that fired the last is the leader.
    until("three ticks fired", Duration::from_secs(60), async || {
        fired(&lines(&processes, &[])).len() >= 3
    })
    .await;
    let leader = fired(&lines(&processes, &[])).last().unwrap().1;
    let at = processes.iter().position(|s| s.pid() == leader).unwrap();
    let victim = processes.remove(at);
    let dead = vec![(victim.pid(), victim.lines())];
    let killed_ms = tugboat::ports::clock::system_ms() as i64;
    victim.kill9();

    // Another process takes over once the lease ends, and fires what is owed: wait for ticks
    // well past the kill.
    until(
        "another process took over from the killed leader",
        Duration::from_secs(60),
        async || {
            fired(&lines(&processes, &dead))
                .iter()
                .any(|(t, _)| *t > killed_ms + 4 * EVERY_MS)
        },
    )
    .await;
    let all = lines(&processes, &dead);
    let f = fired(&all);
    let ticks: BTreeSet<i64> = f.iter().map(|(t, _)| *t).collect();
    let (first, last) = (*ticks.first().unwrap(), *ticks.last().unwrap());
    // No tick lost: every one from the first to the last was fired.
    let expected: BTreeSet<i64> = (0..=(last - first) / EVERY_MS)
        .map(|n| first + n * EVERY_MS)
        .collect();
    assert_eq!(ticks, expected, "a tick was lost or made up: {f:?}");
    // Each fired by one process, but for the one the leader may have sent just before it
    // died (the journal had not recorded it): that one is sent again, and runs once.
    let mut by_tick: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
    for (t, pid) in &f {
        by_tick.entry(*t).or_default().push(*pid);
    }
    let twice: Vec<_> = by_tick.iter().filter(|(_, p)| p.len() > 1).collect();
    assert!(twice.len() <= 1, "ticks fired more than once: {twice:?}");
    let firers: BTreeSet<u32> = f.iter().map(|(_, p)| *p).collect();
    assert!(firers.len() >= 2, "one process fired everything: {f:?}");
    assert!(firers.contains(&leader));

    // Every tick's event ran its route's workflow exactly once (the killed one's ticks too,
    // by the survivors: their messages come back) — one instance per tick.
    let runs = async || {
        let mut runs: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (event, status) in records(&table).await {
            runs.entry(event).or_default().push(status);
        }
        runs
    };
    until("every tick ran", Duration::from_secs(90), async || {
        let runs = runs().await;
        ticks.iter().all(|t| {
            runs.get(&tugboat::schedule::tick_id(&p, *t))
                .is_some_and(|s| s.iter().all(|s| s == "succeeded"))
        })
    })
    .await;
    let runs = runs().await;
    for t in &ticks {
        let r = &runs[&tugboat::schedule::tick_id(&p, *t)];
        assert_eq!(r.len(), 1, "tick {t} ran {} times", r.len());
    }
    for s in processes {
        s.kill9();
    }
}
