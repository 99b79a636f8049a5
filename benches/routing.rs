//! Benchmark: events per second on one core (median of three runs), routing a realistic mix
//! of the shared sample events from their message bodies. Two sets of 100 routes, as
//! aws/event-ruler reports them: exact/prefix/suffix rules, and numeric rules; then 1 000
//! routes of mixed kinds over 20 sources, against the samples and against a stream where
//! most events match no route (nine in ten come from a source no route names). Each case is
//! run three ways: routes from the body alone (what event-ruler's `rulesForJSONEvent`
//! does), as the intake does (plus the full parse of a body that matched, for the workflow
//! it starts), and the old way (every body parsed whole first).
//!
//!     cargo bench --bench routing [-- --event-bytes 900] [--case TEXT] [--how body|intake|whole] [--dump DIR]

#[path = "common.rs"]
mod common;

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tugboat::events::{Decoded, decode};
use tugboat::routing::{Pattern, Route, Router};

/// The sample events, compact, each padded (with a `detail.padding` string) to at least
/// `min_bytes`, to compare with figures measured on events of that size.
fn samples(min_bytes: usize) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events/eventbridge");
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        if f.extension().and_then(|e| e.to_str()) == Some("json") {
            let text = std::fs::read_to_string(&f).unwrap();
            // Compact, as it arrives from SQS.
            let mut v: Value = serde_json::from_str(&text).unwrap();
            if v.is_object() {
                let len = v.to_string().len();
                if len < min_bytes && v["detail"].is_object() {
                    v["detail"]["padding"] = json!("p".repeat(min_bytes - len - 14));
                }
                out.push(v.to_string());
            }
        }
    }
    out
}

fn route(i: usize, pattern: Value) -> Route {
    Route::new(&format!("r{i}"), Pattern::compile(&pattern).unwrap(), "log")
}

/// 100 routes on source, detail-type and detail fields: exact values, prefixes, suffixes.
fn string_routes() -> Vec<Route> {
    routes(string_patterns())
}

fn routes(patterns: Vec<Value>) -> Vec<Route> {
    patterns
        .into_iter()
        .enumerate()
        .map(|(i, p)| route(i, p))
        .collect()
}

fn string_patterns() -> Vec<Value> {
    let sources = [
        "aws.ec2",
        "aws.ecs",
        "aws.s3",
        "aws.health",
        "aws.autoscaling",
        "aws.ec2spotfleet",
        "custom.app",
        "aws.rds",
        "aws.lambda",
        "aws.sns",
    ];
    (0..100)
        .map(|i| {
            let source = sources[i % sources.len()];
            match i % 4 {
                0 => json!({"source": [source], "detail-type": [format!("Type {i}"), "EC2 Spot Instance Interruption Warning"]}),
                1 => json!({"source": [source], "detail": {"state": [{"prefix": format!("run{i}")}, "terminated"]}}),
                2 => json!({"source": [{"prefix": source}], "resources": [{"suffix": format!("/i-{i:04}")}]}),
                _ => json!({"source": [source], "detail-type": [{"prefix": "EC2 "}], "detail": {"instance-id": [format!("i-{i:017}")]}}),
            }
        })
        .collect()
}

/// 100 numeric routes (ranges and equality on detail fields).
fn numeric_routes() -> Vec<Route> {
    routes(numeric_patterns())
}

fn numeric_patterns() -> Vec<Value> {
    (0..100)
        .map(|i| {
            match i % 3 {
                0 => json!({"detail": {"version": [{"numeric": [">=", i, "<", i + 10]}]}}),
                1 => json!({"source": ["aws.ecs", "aws.ec2"], "detail": {"cpu": [{"numeric": [">", i * 10]}]}}),
                _ => json!({"detail": {"ec2InstanceId": [{"exists": true}], "memory": [{"numeric": ["=", i]}]}}),
            }
        })
        .collect()
}

/// 1 000 routes of every kind over 20 sources (the samples' among them): exact values,
/// prefixes, suffixes, equals-ignore-case, wildcards, anything-but, numeric ranges, exists,
/// cidr and `$or`, on top-level and detail fields.
fn mixed_routes() -> Vec<Route> {
    routes(mixed_patterns())
}

fn mixed_patterns() -> Vec<Value> {
    let sources: Vec<String> = [
        "aws.ec2",
        "aws.ecs",
        "aws.s3",
        "aws.health",
        "aws.autoscaling",
        "aws.ec2spotfleet",
        "aws.rds",
        "aws.lambda",
        "aws.sns",
        "aws.events",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain((0..10).map(|i| format!("custom.service{i}")))
    .collect();
    (0..1000)
        .map(|i| {
            let source = &sources[i % sources.len()];
            match i % 10 {
                0 => json!({"source": [source], "detail-type": [format!("Type {i}"), "EC2 Instance State-change Notification"]}),
                1 => json!({"source": [source], "detail": {"state": [{"prefix": format!("run{}", i % 7)}]}}),
                2 => json!({"source": [source], "resources": [{"suffix": format!("{:02}", i % 100)}]}),
                3 => json!({"source": [source], "detail-type": [{"equals-ignore-case": "ecs task state change"}]}),
                4 => json!({"source": [source], "detail": {"clusterArn": [{"wildcard": format!("arn:aws:ecs:*:cluster/*{}", i % 10)}]}}),
                5 => json!({"source": [source], "detail": {"lastStatus": [{"anything-but": ["RUNNING", "PENDING"]}]}}),
                6 => json!({"source": [source], "detail": {"version": [{"numeric": [">=", i % 50, "<", i % 50 + 5]}]}}),
                7 => json!({"source": [source], "detail": {"instance-id": [{"exists": true}], "state": [format!("s{i}")]}}),
                8 => json!({"source": [source], "detail": {"sourceIPAddress": [{"cidr": format!("10.{}.0.0/16", i % 256)}]}}),
                _ => json!({"source": [source], "$or": [{"detail-type": [format!("T{i}")]}, {"detail": {"eventTypeCategory": ["issue"]}}]}),
            }
        })
        .collect()
}

/// The samples, nine in ten moved to a source no route names.
fn mostly_unmatched(samples: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for round in 0..10 {
        for body in samples {
            if round == 0 {
                out.push(body.clone());
                continue;
            }
            let mut v: Value = serde_json::from_str(body).unwrap();
            v["source"] = json!(format!("other.producer{round}"));
            out.push(v.to_string());
        }
    }
    out
}

/// How a body is routed.
#[derive(Clone, Copy, Debug)]
enum How {
    /// Routes from the body (`Router::matching_body`, which reads only the fields routes
    /// name; a body it cannot judge is decoded whole): what another matcher does.
    Body,
    /// As the intake does: routes from the body, then the full parse of a body that
    /// matched, which the workflow it starts needs.
    Intake,
    /// Every body parsed and decoded whole, then routed.
    Whole,
}

/// Events/s through `router`, and the matches in one pass over `samples`.
fn run(router: &Router, samples: &[String], secs: f64, how: How) -> (f64, usize) {
    let start = Instant::now();
    let (mut n, mut matched) = (0usize, 0usize);
    while start.elapsed() < Duration::from_secs_f64(secs) {
        for body in samples {
            n += 1;
            if !matches!(how, How::Whole)
                && let Some(routes) = router.matching_body("q", body)
            {
                matched += routes.len();
                if matches!(how, How::Intake) && !routes.is_empty() {
                    black_box(decode(body, "m").is_ok());
                }
                continue;
            }
            if let Ok(Decoded::Events(events)) = decode(body, "m") {
                for e in &events {
                    matched += router.matching("q", &e.body).count();
                }
            }
        }
    }
    black_box(matched);
    // Matches in one pass over the events (the same count another matcher must find).
    let passes = (n / samples.len()).max(1);
    (n as f64 / start.elapsed().as_secs_f64(), matched / passes)
}

/// Writes the events and each case's patterns as JSON lines into `dir`, for running another
/// matcher on exactly the same input (`--dump DIR`).
fn dump(dir: &Path, samples: &[String], cases: &[(&str, Vec<Value>)]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("events.jsonl"), samples.join("\n") + "\n").unwrap();
    let unmatched = mostly_unmatched(samples);
    std::fs::write(
        dir.join("events-mostly-unmatched.jsonl"),
        unmatched.join("\n") + "\n",
    )
    .unwrap();
    for (name, patterns) in cases {
        let text: Vec<String> = patterns.iter().map(Value::to_string).collect();
        std::fs::write(
            dir.join(format!("routes-{name}.jsonl")),
            text.join("\n") + "\n",
        )
        .unwrap();
    }
    println!("wrote {}", dir.display());
}

fn main() {
    let samples = samples(common::arg("--event-bytes", 900));
    if let Some(dir) = common::arg_text("--dump") {
        let cases = [
            ("string", string_patterns()),
            ("numeric", numeric_patterns()),
            ("mixed", mixed_patterns()),
        ];
        return dump(Path::new(&dir), &samples, &cases);
    }
    let avg = samples.iter().map(String::len).sum::<usize>() / samples.len();
    println!("machine: {} (one thread used)", common::machine());
    println!("{} sample events, average {avg} bytes", samples.len());
    let unmatched = mostly_unmatched(&samples);
    let cases: [(&str, Router, &[String]); 5] = [
        ("no routes", Router::default(), &samples),
        (
            "100 exact/prefix/suffix routes",
            Router::new(string_routes()),
            &samples,
        ),
        (
            "100 numeric routes",
            Router::new(numeric_routes()),
            &samples,
        ),
        (
            "1000 mixed routes, the samples",
            Router::new(mixed_routes()),
            &samples,
        ),
        (
            "1000 mixed routes, mostly unmatched",
            Router::new(mixed_routes()),
            &unmatched,
        ),
    ];
    // `--case TEXT` runs only the cases whose name contains it, `--how body|intake|whole`
    // only that way (for profiling one).
    let only = common::arg_text("--case");
    let way = common::arg_text("--how");
    for (name, router, events) in &cases {
        if only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
            continue;
        }
        println!("{name}:");
        for (how, label) in [
            (How::Body, "routes from the body"),
            (How::Intake, "+ full parse of matched"),
            (How::Whole, "every event parsed first"),
        ] {
            if way
                .as_ref()
                .is_some_and(|w| !format!("{how:?}").eq_ignore_ascii_case(w))
            {
                continue;
            }
            let _ = run(router, events, 0.5, how);
            let mut runs: Vec<(f64, usize)> =
                (0..3).map(|_| run(router, events, 2.0, how)).collect();
            runs.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (rate, matched) = runs[1];
            println!("  {label:<26}: {rate:>9.0} events/s ({matched} matches a pass)");
        }
    }
}
