use super::*;

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn tz(name: &str) -> TimeZone {
    TimeZone::get(name).unwrap()
}

fn cron(text: &str) -> Cron {
    match Expression::parse(&format!("cron({text})")).unwrap() {
        Expression::Cron(c) => c,
        other => panic!("{other:?}"),
    }
}

/// The next `n` fire times after `after`, as RFC 3339 UTC.
fn next(text: &str, zone: &str, after: &str, n: usize) -> Vec<String> {
    let c = cron(text);
    let zone = tz(zone);
    let mut t = at(after);
    let mut out = Vec::new();
    for _ in 0..n {
        match c.next_after(t, &zone) {
            Some(next) => {
                out.push(next.to_string());
                t = next;
            }
            None => break,
        }
    }
    out
}

#[test]
fn rates_are_minutes_hours_or_days() {
    assert_eq!(
        Expression::parse("rate(5 minutes)"),
        Ok(Expression::Rate(Duration::from_secs(300)))
    );
    assert_eq!(
        Expression::parse("rate(1 hour)"),
        Ok(Expression::Rate(Duration::from_secs(3600)))
    );
    assert_eq!(parse_rate("2 days"), Ok(Duration::from_secs(172_800)));
    assert_eq!(parse_rate("30 seconds"), Ok(Duration::from_secs(30)));
    for (bad, says) in [
        ("0 minutes", "above 0"),
        ("-1 minutes", "above 0"),
        ("five minutes", "above 0"),
        ("5 weeks", "seconds, minutes, hours or days"),
        ("5", "value unit"),
        ("5 minutes please", "value unit"),
        ("99999999 days", "ten years"),
    ] {
        let e = parse_rate(bad).unwrap_err();
        assert!(e.contains(says), "{bad}: {e}");
    }
}

#[test]
fn every_field_is_read_and_a_bad_one_is_named() {
    // Six fields (EventBridge): 10:15 UTC every weekday.
    assert_eq!(
        next("15 10 ? * MON-FRI *", "UTC", "2026-12-04T12:00:00Z", 3),
        [
            "2026-12-07T10:15:00Z",
            "2026-12-08T10:15:00Z",
            "2026-12-09T10:15:00Z"
        ]
    );
    // EventBridge counts day-of-week from 1 = Sunday; Unix from 0 = Sunday.
    assert_eq!(
        next("0 12 ? * 2 *", "UTC", "2026-12-01T00:00:00Z", 1),
        ["2026-12-07T12:00:00Z"] // a Monday
    );
    assert_eq!(
        next("0 12 * * 1", "UTC", "2026-12-01T00:00:00Z", 1),
        ["2026-12-07T12:00:00Z"]
    );
    assert_eq!(
        next("0 12 * * 0", "UTC", "2026-12-01T00:00:00Z", 1),
        next("0 12 * * 7", "UTC", "2026-12-01T00:00:00Z", 1)
    );
    // Steps, lists and ranges.
    assert_eq!(
        next("*/20 9-10 ? * * *", "UTC", "2026-12-07T08:59:00Z", 7),
        [
            "2026-12-07T09:00:00Z",
            "2026-12-07T09:20:00Z",
            "2026-12-07T09:40:00Z",
            "2026-12-07T10:00:00Z",
            "2026-12-07T10:20:00Z",
            "2026-12-07T10:40:00Z",
            "2026-12-08T09:00:00Z"
        ]
    );
    assert_eq!(
        next("5/30 0 1,15 JAN,JUL ? *", "UTC", "2026-12-07T00:00:00Z", 3),
        [
            "2027-01-01T00:05:00Z",
            "2027-01-01T00:35:00Z",
            "2027-01-15T00:05:00Z"
        ]
    );
    // L, W and #.
    assert_eq!(
        next("0 0 L * ? *", "UTC", "2027-02-01T00:00:00Z", 2),
        ["2027-02-28T00:00:00Z", "2027-03-31T00:00:00Z"]
    );
    assert_eq!(
        next("0 0 L 2 ? 2028", "UTC", "2027-03-01T00:00:00Z", 1),
        ["2028-02-29T00:00:00Z"]
    );
    // The 15th of August 2026 is a Saturday: the nearest weekday is Friday the 14th.
    assert_eq!(
        next("0 0 15W 8 ? 2026", "UTC", "2026-01-01T00:00:00Z", 1),
        ["2026-08-14T00:00:00Z"]
    );
    // The 1st of August 2026 is a Saturday: within the month, Monday the 3rd.
    assert_eq!(
        next("0 0 1W 8 ? 2026", "UTC", "2026-01-01T00:00:00Z", 1),
        ["2026-08-03T00:00:00Z"]
    );
    // The third Friday of each month; the last Friday.
    assert_eq!(
        next("0 10 ? * 6#3 *", "UTC", "2026-12-01T00:00:00Z", 2),
        ["2026-12-18T10:00:00Z", "2027-01-15T10:00:00Z"]
    );
    assert_eq!(
        next("0 10 ? * FRIL *", "UTC", "2026-12-01T00:00:00Z", 1),
        ["2026-12-25T10:00:00Z"]
    );
    // Unix: both day fields given, a day matches either.
    assert_eq!(
        next("0 0 13 * 5", "UTC", "2026-12-01T00:00:00Z", 3),
        [
            "2026-12-04T00:00:00Z",
            "2026-12-11T00:00:00Z",
            "2026-12-13T00:00:00Z"
        ]
    );
    // A year range that has ended fires no more; a 30th of February never.
    assert!(next("0 0 1 1 ? 2020-2025", "UTC", "2026-01-01T00:00:00Z", 1).is_empty());
    assert!(next("0 0 30 2 ? *", "UTC", "2026-01-01T00:00:00Z", 1).is_empty());

    for (bad, says) in [
        ("0 10 * *", "6 fields"),
        ("0 10 * * * * *", "6 fields"),
        ("60 10 ? * * *", "minutes must be 0 to 59, got 60"),
        ("0 24 ? * * *", "hours must be 0 to 23"),
        ("0 0 0 * ? *", "day-of-month must be 1 to 31"),
        ("0 0 ? 13 * *", "month must be 1 to 12"),
        (
            "0 0 ? FOO * *",
            "month: \"FOO\" is not a number or one of JAN",
        ),
        ("0 0 ? * 8 *", "day-of-week must be 1 to 7"),
        ("0 0 ? * 0 *", "day-of-week must be 1 to 7"),
        ("0 0 ? * 2#6 *", "1 to 5"),
        ("0 0 1 * MON *", "cannot both be given"),
        ("0 0 ? * ? *", "cannot both be ?"),
        ("*/0 0 ? * * *", "above 0"),
        ("10-5 0 ? * * *", "ends before it starts"),
        ("1,,2 0 ? * * *", "empty item"),
        ("0 0 ? * * 2026,2027", "a list of years"),
        ("0 0 ? * * 1969", "year must be 1970"),
        ("0 0 ? * * 2030-2027", "ends before it starts"),
    ] {
        let e = Expression::parse(&format!("cron({bad})")).unwrap_err();
        assert!(e.contains(says), "{bad}: {e}");
    }
    for bad in ["cron 0 0 * * ?", "every day", "rate(5 minutes", ""] {
        assert!(Expression::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_skipped_local_time_does_not_fire_and_a_repeated_one_fires_once_in_new_york() {
    // Clocks go forward at 02:00 on Sunday 8 March 2026: 02:30 does not happen that day.
    assert_eq!(
        next(
            "30 2 ? * * *",
            "America/New_York",
            "2026-03-07T00:00:00Z",
            3
        ),
        [
            "2026-03-07T07:30:00Z", // 02:30 EST
            "2026-03-09T06:30:00Z", // 02:30 EDT; the 8th skipped
            "2026-03-10T06:30:00Z"
        ]
    );
    // Every minute runs straight across the gap: 01:59 EST, then 03:00 EDT.
    assert_eq!(
        next("* * ? * * *", "America/New_York", "2026-03-08T06:58:00Z", 2),
        ["2026-03-08T06:59:00Z", "2026-03-08T07:00:00Z"]
    );
    // Clocks go back at 02:00 on Sunday 1 November 2026: 01:30 happens twice, fires once.
    assert_eq!(
        next(
            "30 1 ? * * *",
            "America/New_York",
            "2026-10-31T12:00:00Z",
            3
        ),
        [
            "2026-11-01T05:30:00Z", // 01:30 EDT, the first one
            "2026-11-02T06:30:00Z", // 01:30 EST the next day
            "2026-11-03T06:30:00Z"
        ]
    );
}

#[test]
fn a_skipped_local_time_does_not_fire_and_a_repeated_one_fires_once_in_berlin() {
    // Clocks go forward at 02:00 on Sunday 29 March 2026.
    assert_eq!(
        next("30 2 ? * * *", "Europe/Berlin", "2026-03-28T00:00:00Z", 2),
        ["2026-03-28T01:30:00Z", "2026-03-30T00:30:00Z"]
    );
    // Clocks go back at 03:00 on Sunday 25 October 2026: 02:30 happens twice, fires once.
    assert_eq!(
        next("30 2 ? * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", 2),
        ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
    );
    // A morning schedule keeps its local time across the change (08:00 CEST, then CET).
    assert_eq!(
        next("0 8 ? * * *", "Europe/Berlin", "2026-10-23T12:00:00Z", 2),
        ["2026-10-24T06:00:00Z", "2026-10-25T07:00:00Z"]
    );
}
