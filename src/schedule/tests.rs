use super::*;

const MIN: i64 = 60_000;

fn config(extra: &str) -> ScheduleConfig {
    toml::from_str(&format!(
        "name = \"s\"\n{extra}\n[event]\nsource = \"tugboat.schedule\"\ndetail-type = \"tick\"\ndetail = {{ a = 1 }}\n"
    ))
    .unwrap()
}

fn compile(extra: &str) -> Result<Schedule, (&'static str, String)> {
    Schedule::compile(&config(extra), &["q"])
}

fn ms(text: &str) -> i64 {
    text.parse::<Timestamp>().unwrap().as_millisecond()
}

#[test]
fn a_schedule_is_compiled_and_a_bad_field_is_named() {
    let s = compile("cron = \"cron(0 8 ? * MON-FRI *)\"\ntimezone = \"Europe/Berlin\"").unwrap();
    assert_eq!(s.expression_text, "cron(0 8 ? * MON-FRI *)");
    assert_eq!(s.queue, "q");
    assert_eq!(s.catch_up, CatchUp::One);
    assert!(s.enabled);
    let s = compile("rate = \"5 minutes\"\ncatch_up = \"all\"\nflexible_window = \"2m\"").unwrap();
    assert_eq!(s.expression, Expression::Rate(Duration::from_secs(300)));
    assert_eq!(s.window, Duration::from_secs(120));

    for (extra, field, says) in [
        ("", "cron", "one of cron and rate"),
        (
            "cron = \"0 8 * * ?\"\nrate = \"5 minutes\"",
            "cron",
            "not both",
        ),
        ("cron = \"0 8 * *\"", "cron", "6 fields"),
        (
            "rate = \"5 weeks\"",
            "rate",
            "seconds, minutes, hours or days",
        ),
        (
            "rate = \"1 minute\"\ntimezone = \"Mars/Olympus\"",
            "timezone",
            "not a time zone",
        ),
        (
            "rate = \"1 minute\"\nstart = \"tomorrow\"",
            "start",
            "RFC 3339",
        ),
        (
            "rate = \"1 minute\"\nstart = \"2026-01-02T00:00:00Z\"\nend = \"2026-01-01T00:00:00Z\"",
            "end",
            "after start",
        ),
        (
            "rate = \"1 minute\"\nqueue = \"other\"",
            "queue",
            "unknown queue",
        ),
        (
            "rate = \"1 minute\"\nflexible_window = \"2d\"",
            "flexible_window",
            "24h",
        ),
    ] {
        let (f, e) = compile(extra).unwrap_err();
        assert_eq!(f, field, "{extra}: {e}");
        assert!(e.contains(says), "{extra}: {e}");
    }
    let bad: Result<ScheduleConfig, _> = toml::from_str(
        "name = \"s\"\nrate = \"1 minute\"\ncatch_up = \"some\"\n[event]\nsource = \"a\"\ndetail-type = \"b\"\n",
    );
    assert!(bad.unwrap_err().to_string().contains("unknown variant"));
    let bad: Result<ScheduleConfig, _> = toml::from_str(
        "name = \"s\"\nrate = \"1 minute\"\nevery = 5\n[event]\nsource = \"a\"\ndetail-type = \"b\"\n",
    );
    assert!(bad.unwrap_err().to_string().contains("unknown field"));
    // Several queues: the schedule must say which.
    let (f, e) = Schedule::compile(&config("rate = \"1 minute\""), &["a", "b"]).unwrap_err();
    assert_eq!(f, "queue", "{e}");
}

#[test]
fn a_new_rate_fires_at_once_and_a_new_cron_owes_nothing_of_the_past() {
    let now = ms("2026-12-07T10:00:30Z");
    let rate = compile("rate = \"5 minutes\"").unwrap();
    let state = rate.first_state(now);
    let due = rate.due(&state, now);
    assert_eq!(due.fire, [now]);
    assert_eq!(
        rate.next_after(due.last_ms, state.anchor_ms),
        Some(now + 5 * MIN)
    );

    let cron = compile("cron = \"* * ? * * *\"").unwrap();
    let state = cron.first_state(now);
    assert!(cron.due(&state, now).fire.is_empty());
    assert_eq!(cron.next_fire(&state), Some(ms("2026-12-07T10:01:00Z")));
    let due = cron.due(&state, ms("2026-12-07T10:01:00.200Z"));
    assert_eq!(due.fire, [ms("2026-12-07T10:01:00Z")]);
}

#[test]
fn missed_ticks_fire_as_catch_up_says() {
    let down = ms("2026-12-07T10:00:00Z");
    let up = ms("2026-12-07T10:05:10Z"); // five ticks missed, none on time
    let state = State {
        anchor_ms: 0,
        last_ms: down,
        paused: false,
    };
    let missed: Vec<i64> = (1..=5).map(|m| down + m * MIN).collect();
    let due = |catch_up: &str| {
        compile(&format!(
            "cron = \"* * ? * * *\"\ncatch_up = \"{catch_up}\""
        ))
        .unwrap()
        .due(&state, up)
    };
    let all = due("all");
    assert_eq!(all.fire, missed);
    assert_eq!((all.skipped, all.last_ms), (0, missed[4]));
    let one = due("one");
    // 10:05 is 10 s late: on time, so it fires and the older ones are passed over.
    assert_eq!(one.fire, [missed[4]]);
    assert_eq!((one.skipped, one.last_ms), (4, missed[4]));
    let none = due("none");
    assert_eq!(none.fire, [missed[4]]);

    // Later than a minute past the last tick: none fires nothing, one fires the latest.
    let late = ms("2026-12-07T10:06:50Z");
    let s = |c: &str| {
        compile(&format!("cron = \"*/5 * ? * * *\"\ncatch_up = \"{c}\""))
            .unwrap()
            .due(&state, late)
    };
    assert_eq!(s("none").fire, Vec::<i64>::new());
    assert_eq!(s("none").last_ms, down + 5 * MIN);
    assert_eq!(s("one").fire, [down + 5 * MIN]);
    assert_eq!(s("all").fire, [down + 5 * MIN]);

    // A month of minutes down: all fires at most MAX_CATCH_UP of them, the latest.
    let month = down + 30 * 24 * 60 * MIN;
    let all = compile("cron = \"* * ? * * *\"\ncatch_up = \"all\"")
        .unwrap()
        .due(&state, month);
    assert_eq!(all.fire.len(), MAX_CATCH_UP);
    assert_eq!(all.fire.last(), Some(&month));
    assert_eq!(all.last_ms, month);
}

#[test]
fn start_end_and_the_flexible_window_bound_the_ticks() {
    let s = compile(
        "rate = \"1 hour\"\nstart = \"2026-12-07T12:00:00Z\"\nend = \"2026-12-07T14:30:00Z\"",
    )
    .unwrap();
    let state = s.first_state(ms("2026-12-07T10:00:00Z"));
    assert_eq!(state.anchor_ms, ms("2026-12-07T12:00:00Z"));
    let mut ticks = vec![];
    let mut after = state.last_ms;
    while let Some(t) = s.next_after(after, state.anchor_ms) {
        ticks.push(t);
        after = t;
    }
    assert_eq!(
        ticks,
        [
            ms("2026-12-07T12:00:00Z"),
            ms("2026-12-07T13:00:00Z"),
            ms("2026-12-07T14:00:00Z")
        ]
    );
    // A window delays each fire by the same share in every process, within the window.
    let w = compile("rate = \"1 hour\"\nflexible_window = \"10m\"").unwrap();
    let offsets: Vec<i64> = (0..50).map(|h| w.offset_ms(h * 60 * MIN)).collect();
    assert!(
        offsets.iter().all(|o| (0..10 * MIN).contains(o)),
        "{offsets:?}"
    );
    assert!(
        offsets
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            > 40
    );
    assert_eq!(w.offset_ms(7 * MIN), w.offset_ms(7 * MIN));
    let tick = 60 * MIN;
    let state = State {
        anchor_ms: 0,
        last_ms: tick - 1,
        paused: false,
    };
    assert!(w.due(&state, tick + w.offset_ms(tick) - 1).fire.is_empty());
    assert_eq!(w.due(&state, tick + w.offset_ms(tick)).fire, [tick]);
}

#[test]
fn a_tick_s_event_is_the_same_wherever_it_is_made() {
    let s = compile("rate = \"1 minute\"").unwrap();
    let tick = ms("2026-12-07T10:00:00Z");
    let e = s.event(tick, "eu-west-1");
    assert_eq!(e, s.event(tick, "eu-west-1"));
    assert_ne!(e["id"], s.event(tick + MIN, "eu-west-1")["id"]);
    assert_eq!(e["time"], "2026-12-07T10:00:00Z");
    assert_eq!(e["source"], "tugboat.schedule");
    assert_eq!(e["detail-type"], "tick");
    assert_eq!(e["detail"]["a"], 1);
    assert_eq!(e["resources"][0], "tugboat:schedule/s");
    assert_eq!(e["id"].as_str().unwrap().len(), 36);
}
