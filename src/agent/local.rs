//! Local system sources: a file system fuller than its threshold, memory pressure, a network
//! interface or endpoint gone for a while. Each condition is one notice while it lasts (its
//! id names the condition, so the state file keeps it from running twice, across restarts
//! too); when it clears, the id is forgotten, and the next time is a new notice.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedSender;

use super::Found;
use super::config::{AgentClock, LocalSources, NetworkWatch};
use super::notice::Notice;

/// Used space in percent, as `df` counts it: of the space a non-root user could have.
pub fn disk_used_percent(path: &Path) -> Result<f64, String> {
    let s = rustix::fs::statvfs(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let used = s.f_blocks.saturating_sub(s.f_bfree);
    let usable = used + s.f_bavail;
    if usable == 0 {
        return Ok(0.0);
    }
    Ok(used as f64 * 100.0 / usable as f64)
}

/// `some avg10` of `/proc/pressure/memory`: the share of the last 10 s in which some task
/// stalled on memory, in percent.
pub fn psi_some_avg10(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    line.split_whitespace()
        .find_map(|f| f.strip_prefix("avg10="))
        .and_then(|v| v.parse().ok())
}

/// `MemAvailable` of `/proc/meminfo`, in KiB.
pub fn mem_available_kib(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok())
}

/// Whether memory is under pressure now, and what was measured.
fn memory_state(pressure_above: f64, available_below_mib: u64) -> Result<(bool, Value), String> {
    if let Ok(text) = std::fs::read_to_string("/proc/pressure/memory")
        && let Some(avg10) = psi_some_avg10(&text)
    {
        return Ok((
            avg10 > pressure_above,
            json!({"psi_some_avg10": avg10, "above": pressure_above}),
        ));
    }
    let text =
        std::fs::read_to_string("/proc/meminfo").map_err(|e| format!("/proc/meminfo: {e}"))?;
    let kib = mem_available_kib(&text).ok_or("/proc/meminfo has no MemAvailable")?;
    Ok((
        kib < available_below_mib * 1024,
        json!({"available_mib": kib / 1024, "below_mib": available_below_mib}),
    ))
}

async fn network_up(w: &NetworkWatch, timeout: Duration) -> bool {
    if let Some(name) = &w.interface {
        let state = std::fs::read_to_string(format!("/sys/class/net/{name}/operstate"));
        // Loopback and some virtual interfaces say "unknown" while they work.
        return matches!(state.as_deref().map(str::trim), Ok("up" | "unknown"));
    }
    match &w.endpoint {
        Some(e) => matches!(
            tokio::time::timeout(timeout, tokio::net::TcpStream::connect(e.as_str())).await,
            Ok(Ok(_))
        ),
        None => true,
    }
}

/// One condition's notice.
fn notice(instance: &str, kind: &str, what: &str, raw: Value) -> Notice {
    Notice {
        id: format!("local:{kind}:{what}"),
        provider: super::notice::Source::Local,
        kind: kind.into(),
        instance: instance.to_owned(),
        deadline_ms: None,
        action: None,
        raw,
    }
}

/// Checks every `interval` until the receiver goes away.
pub async fn watch(
    config: &LocalSources,
    instance: &str,
    clock: &AgentClock,
    found: UnboundedSender<Found>,
) {
    // Per network watch: since when it has been down (ms by the agent's clock).
    let mut down_since: Vec<Option<u64>> = vec![None; config.network.len()];
    let probe_timeout = config.interval.min(Duration::from_secs(3));
    loop {
        let mut out = Vec::new();
        for d in &config.disk {
            let what = d.mount.display().to_string();
            let id = format!("local:disk-usage:{what}");
            match disk_used_percent(&d.mount) {
                Ok(used) if used > d.above_percent => out.push(Found::Notice(notice(
                    instance,
                    "disk-usage",
                    &what,
                    json!({"mount": what, "used_percent": (used * 10.0).round() / 10.0, "above_percent": d.above_percent}),
                ))),
                Ok(_) => out.push(Found::Cleared(id)),
                Err(e) => out.push(Found::Problem(format!("disk usage: {e}"))),
            }
        }
        if let Some(m) = &config.memory {
            match memory_state(m.pressure_above, m.available_below_mib) {
                Ok((true, raw)) => out.push(Found::Notice(notice(
                    instance,
                    "memory-pressure",
                    "memory",
                    raw,
                ))),
                Ok((false, _)) => out.push(Found::Cleared("local:memory-pressure:memory".into())),
                Err(e) => out.push(Found::Problem(format!("memory: {e}"))),
            }
        }
        for (w, since) in config.network.iter().zip(down_since.iter_mut()) {
            let what = w
                .interface
                .clone()
                .or_else(|| w.endpoint.clone())
                .unwrap_or_default();
            if network_up(w, probe_timeout).await {
                *since = None;
                out.push(Found::Cleared(format!("local:network-unreachable:{what}")));
                continue;
            }
            let now = clock.now_ms();
            let down_for = Duration::from_millis(now.saturating_sub(*since.get_or_insert(now)));
            if down_for >= w.unreachable_for {
                out.push(Found::Notice(notice(
                    instance,
                    "network-unreachable",
                    &what,
                    json!({"what": what, "down_for_ms": down_for.as_millis() as u64}),
                )));
            }
        }
        for f in out {
            if found.send(f).is_err() {
                return;
            }
        }
        clock.sleep(config.interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_meminfo_and_statvfs_are_read() {
        let psi = "some avg10=1.50 avg60=0.20 avg300=0.05 total=123\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(psi_some_avg10(psi), Some(1.5));
        assert_eq!(psi_some_avg10("full avg10=3.00\n"), None);
        assert_eq!(psi_some_avg10("some avg10=x\n"), None);
        let meminfo =
            "MemTotal:       24000000 kB\nMemFree:         1000 kB\nMemAvailable:    2048000 kB\n";
        assert_eq!(mem_available_kib(meminfo), Some(2_048_000));
        assert_eq!(mem_available_kib("MemTotal: 1 kB\n"), None);
        let used = disk_used_percent(Path::new("/")).unwrap();
        assert!((0.0..=100.0).contains(&used), "{used}");
        assert!(disk_used_percent(Path::new("/no/such/mount")).is_err());
    }
}
