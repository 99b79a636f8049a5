//! `tugboat agent`'s reaction time and idle cost: a metadata server of our own on 127.0.0.1
//! (tests/support/imds.rs) shows `--notices` spot notices one after another; for each, the time
//! from the notice appearing to the first handler (a command writing a timestamp) starting,
//! with a 1 s poll. Then the agent idles for `--idle` seconds: its RSS and CPU share.
//!
//!     cargo bench --bench agent -- --notices 50 --idle 60

#[path = "common.rs"]
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// utime + stime of `pid`, in clock ticks, and its RSS in KiB: all, private (anonymous), and
/// mapped from files (the binary's and libraries' clean pages, shared with the page cache).
fn usage(pid: u32) -> (u64, [u64; 3]) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit(')').next().unwrap();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (ticks, [kib("VmRSS:"), kib("RssAnon:"), kib("RssFile:")])
}

fn main() {
    let notices = common::arg("--notices", 50);
    let idle = common::arg("--idle", 60);
    println!("machine: {}", common::machine());
    let (imds, port) = support::imds::server();
    let dir = tempfile::tempdir().unwrap();
    let stamps = dir.path().join("stamps");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "instance_id = \"i-bench\"\nstate_file = \"{}\"\nmargin = \"0s\"\n\n\
             [aws]\nbase_url = \"http://127.0.0.1:{port}\"\npoll_interval = \"1s\"\n\n\
             [[handlers]]\nname = \"stamp\"\ntype = \"command\"\n\
             command = [\"sh\", \"-c\", \"date +%s%N >> {}\"]\n",
            dir.path().join("state.json").display(),
            stamps.display()
        ),
    )
    .unwrap();
    let mut agent = Command::new(env!("CARGO_BIN_EXE_tugboat"))
        .args(["agent", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let mut latencies = Vec::new();
    for n in 0..notices {
        // Appear at a random point of the poll cycle.
        std::thread::sleep(Duration::from_millis(137 * (n as u64 % 7) + 50));
        let deadline = time::OffsetDateTime::now_utc() + time::Duration::seconds(120 + n as i64);
        let body = format!(
            "{{\"action\": \"terminate\", \"time\": \"{}\"}}",
            deadline
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        );
        let shown = now_ns();
        imds.lock().unwrap().spot = Some(Ok(body));
        let stamp = loop {
            let text = std::fs::read_to_string(&stamps).unwrap_or_default();
            if text.lines().count() > n {
                break text.lines().nth(n).unwrap().trim().parse::<u128>().unwrap();
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        latencies.push(Duration::from_nanos((stamp.saturating_sub(shown)) as u64));
        imds.lock().unwrap().spot = None;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{notices} notices, 1 s poll: notice shown -> first handler started p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        ms(common::percentile(&mut latencies, 50.0)),
        ms(common::percentile(&mut latencies, 99.0)),
        ms(common::percentile(&mut latencies, 100.0)),
    );
    let ticks_per_s = 100.0; // USER_HZ on Linux
    let (t0, _) = usage(agent.id());
    std::thread::sleep(Duration::from_secs(idle as u64));
    let (t1, rss) = usage(agent.id());
    println!(
        "idle for {idle} s (polling every 1 s): RSS {:.1} MB (private {:.1} MB, file-backed {:.1} MB), CPU {:.2} % of a core",
        rss[0] as f64 / 1024.0,
        rss[1] as f64 / 1024.0,
        rss[2] as f64 / 1024.0,
        (t1 - t0) as f64 / ticks_per_s / idle as f64 * 100.0
    );
    let _ = agent.kill();
    let _ = agent.wait();
}
