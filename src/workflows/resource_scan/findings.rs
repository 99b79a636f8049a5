//! The rules: what in a region's inventory costs money while nobody uses it, and an estimate
//! of how much a month. Pure: the inventory and the time come in, findings go out.

use std::collections::BTreeMap;

use super::prices::{GP3_BASELINE_IOPS, Prices};
use crate::ports::resources::{Address, Finding, FindingKind, Instance, Snapshot, Volume};

const DAY_MS: u64 = 86_400_000;

/// A region's inventory, as the scan read it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gathered {
    pub volumes: Vec<Volume>,
    pub addresses: Vec<Address>,
    pub instances: Vec<Instance>,
    pub snapshots: Vec<Snapshot>,
}

/// How one scan judges.
#[derive(Debug, Clone)]
pub struct Rules {
    pub account: String,
    pub region: String,
    pub unattached_days: u64,
    pub snapshot_days: u64,
    pub currency: String,
    pub prices: Prices,
}

/// What a volume costs a month: its storage, and the IOPS it provisions beyond what the
/// storage price includes; and where the prices came from.
fn volume_cost(rules: &Rules, v: &Volume) -> (f64, String) {
    let Some(storage) = rules.prices.get(&format!("ebs:{}", v.volume_type)) else {
        return (
            0.0,
            format!(
                "no price for ebs:{}; set [resources.prices] \"ebs:{}\"",
                v.volume_type, v.volume_type
            ),
        );
    };
    let mut cost = storage.amount * f64::from(v.size_gib);
    let mut source = storage.source;
    let billed_iops = match (v.volume_type.as_str(), v.iops) {
        ("gp3", Some(iops)) => iops.saturating_sub(GP3_BASELINE_IOPS),
        ("io1" | "io2", Some(iops)) => iops,
        _ => 0,
    };
    if billed_iops > 0
        && let Some(iops) = rules.prices.get(&format!("ebs-iops:{}", v.volume_type))
    {
        cost += iops.amount * f64::from(billed_iops);
        source = format!("{source} + {billed_iops} IOPS at {}", iops.source);
    }
    (cost, source)
}

fn age_days(now_ms: u64, since_ms: Option<u64>) -> Option<u64> {
    since_ms.map(|t| now_ms.saturating_sub(t) / DAY_MS)
}

fn name(tags: &BTreeMap<String, String>) -> Option<String> {
    tags.get("Name").cloned()
}

/// Rounded to the cent, as a report shows money (findings, region sums, the page's totals).
pub fn cents(amount: f64) -> f64 {
    (amount * 100.0).round() / 100.0
}

/// Every finding in `inventory` at `now_ms`, costliest first.
pub fn find(rules: &Rules, now_ms: u64, inventory: &Gathered) -> Vec<Finding> {
    let finding = |kind, resource: &str, detail: String, cost: f64, price: String| Finding {
        account: rules.account.clone(),
        region: rules.region.clone(),
        kind,
        resource: resource.to_string(),
        detail,
        size_gib: None,
        age_days: None,
        monthly_cost: cents(cost),
        currency: rules.currency.clone(),
        price,
        name: None,
    };
    let mut found = Vec::new();
    for v in &inventory.volumes {
        if v.state != "available" {
            continue;
        }
        let age = age_days(now_ms, v.created_ms);
        // A volume whose creation time is unknown is reported: nothing says it is new.
        if age.is_some_and(|a| a < rules.unattached_days) {
            continue;
        }
        let (cost, price) = volume_cost(rules, v);
        let since = age.map_or_else(String::new, |a| format!(", created {a} days ago"));
        found.push(Finding {
            size_gib: Some(v.size_gib),
            age_days: age,
            name: name(&v.tags),
            ..finding(
                FindingKind::UnattachedVolume,
                &v.id,
                format!("{} {} GiB attached to nothing{since}", v.volume_type, v.size_gib),
                cost,
                price,
            )
        });
    }
    for a in inventory.addresses.iter().filter(|a| !a.associated) {
        let (cost, price) = match rules.prices.get("ipv4") {
            Some(p) => (p.amount, p.source),
            None => (0.0, "no price for ipv4".into()),
        };
        found.push(Finding {
            name: name(&a.tags),
            ..finding(
                FindingKind::UnassociatedAddress,
                &a.id,
                format!("Elastic IP {} associated with nothing", a.public_ip),
                cost,
                price,
            )
        });
    }
    let volumes: BTreeMap<&str, &Volume> =
        inventory.volumes.iter().map(|v| (v.id.as_str(), v)).collect();
    for i in inventory.instances.iter().filter(|i| i.state == "stopped") {
        let attached: Vec<&Volume> = i
            .volumes
            .iter()
            .filter_map(|id| volumes.get(id.as_str()).copied())
            .collect();
        if attached.is_empty() {
            // Nothing billed while it is stopped (an instance-store instance).
            continue;
        }
        let (mut cost, mut prices) = (0.0, Vec::new());
        for v in &attached {
            let (c, p) = volume_cost(rules, v);
            cost += c;
            if !prices.contains(&p) {
                prices.push(p);
            }
        }
        let size: u32 = attached.iter().map(|v| v.size_gib).sum();
        found.push(Finding {
            size_gib: Some(size),
            name: name(&i.tags),
            ..finding(
                FindingKind::StoppedInstance,
                &i.id,
                format!(
                    "{} stopped; {} volume(s), {size} GiB, still billed",
                    i.instance_type,
                    attached.len()
                ),
                cost,
                prices.join("; "),
            )
        });
    }
    for s in &inventory.snapshots {
        let age = age_days(now_ms, s.started_ms);
        if age.is_none_or(|a| a < rules.snapshot_days) {
            continue;
        }
        let (cost, price) = match rules.prices.get("snapshot") {
            // Snapshots are incremental: the full size is what the last one of a chain can
            // cost at most.
            Some(p) => (p.amount * f64::from(s.size_gib), format!("{} (at most: snapshots are incremental)", p.source)),
            None => (0.0, "no price for snapshot".into()),
        };
        let of = s.volume_id.as_deref().map_or_else(String::new, |v| format!(" of {v}"));
        found.push(Finding {
            size_gib: Some(s.size_gib),
            age_days: age,
            name: name(&s.tags),
            ..finding(
                FindingKind::OldSnapshot,
                &s.id,
                format!("snapshot{of}, {} GiB, {} days old", s.size_gib, age.unwrap_or_default()),
                cost,
                price,
            )
        });
    }
    found.sort_by(|a, b| {
        b.monthly_cost
            .total_cmp(&a.monthly_cost)
            .then_with(|| (a.kind, &a.resource).cmp(&(b.kind, &b.resource)))
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn rules() -> Rules {
        Rules {
            account: "111122223333".into(),
            region: "eu-west-1".into(),
            unattached_days: 7,
            snapshot_days: 90,
            currency: "USD".into(),
            prices: Prices::new(&BTreeMap::new()),
        }
    }

    fn volume(id: &str, kind: &str, gib: u32, state: &str, days: u64, iops: Option<u32>) -> Volume {
        Volume {
            id: id.into(),
            size_gib: gib,
            volume_type: kind.into(),
            state: state.into(),
            iops,
            created_ms: Some(NOW - days * DAY_MS),
            tags: BTreeMap::from([("Name".to_string(), format!("n-{id}"))]),
        }
    }

    fn inventory() -> Gathered {
        Gathered {
            volumes: vec![
                volume("vol-old", "gp3", 100, "available", 30, Some(3000)),
                volume("vol-new", "gp3", 100, "available", 2, Some(3000)),
                volume("vol-used", "gp2", 50, "in-use", 300, None),
                volume("vol-io2", "io2", 10, "available", 8, Some(1000)),
                volume("vol-fast", "gp3", 10, "available", 8, Some(4000)),
                volume("vol-stopped-a", "gp2", 20, "in-use", 100, None),
                volume("vol-stopped-b", "gp3", 30, "in-use", 100, Some(3000)),
                volume("vol-odd", "gp9", 5, "available", 100, None),
            ],
            addresses: vec![
                Address { id: "eipalloc-free".into(), public_ip: "203.0.113.1".into(), associated: false, tags: BTreeMap::new() },
                Address { id: "eipalloc-used".into(), public_ip: "203.0.113.2".into(), associated: true, tags: BTreeMap::new() },
            ],
            instances: vec![
                Instance { id: "i-stopped".into(), instance_type: "m5.large".into(), state: "stopped".into(), launched_ms: None,
                    volumes: vec!["vol-stopped-a".into(), "vol-stopped-b".into()], tags: BTreeMap::new() },
                Instance { id: "i-running".into(), instance_type: "m5.large".into(), state: "running".into(), launched_ms: None,
                    volumes: vec!["vol-used".into()], tags: BTreeMap::new() },
                Instance { id: "i-ephemeral".into(), instance_type: "c5d.large".into(), state: "stopped".into(), launched_ms: None,
                    volumes: vec![], tags: BTreeMap::new() },
            ],
            snapshots: vec![
                Snapshot { id: "snap-old".into(), volume_id: Some("vol-used".into()), size_gib: 50, started_ms: Some(NOW - 120 * DAY_MS), tags: BTreeMap::new() },
                Snapshot { id: "snap-new".into(), volume_id: None, size_gib: 50, started_ms: Some(NOW - 10 * DAY_MS), tags: BTreeMap::new() },
                Snapshot { id: "snap-unknown".into(), volume_id: None, size_gib: 50, started_ms: None, tags: BTreeMap::new() },
            ],
        }
    }

    fn cost_of(found: &[Finding], resource: &str) -> f64 {
        found.iter().find(|f| f.resource == resource).unwrap_or_else(|| panic!("{resource} not found: {found:?}")).monthly_cost
    }

    #[test]
    fn idle_resources_are_found_with_their_costs_and_nothing_in_use_is() {
        let found = find(&rules(), NOW, &inventory());
        let ids: Vec<&str> = found.iter().map(|f| f.resource.as_str()).collect();
        for absent in ["vol-new", "vol-used", "eipalloc-used", "i-running", "i-ephemeral", "snap-new", "snap-unknown", "vol-stopped-a"] {
            assert!(!ids.contains(&absent), "{absent} reported: {ids:?}");
        }
        assert_eq!(cost_of(&found, "vol-old"), 8.0, "100 GiB gp3 at 0.08");
        assert_eq!(cost_of(&found, "vol-io2"), 66.25, "10 GiB io2 at 0.125 + 1000 IOPS at 0.065");
        assert_eq!(cost_of(&found, "vol-fast"), 5.8, "10 GiB gp3 + 1000 IOPS over the baseline at 0.005");
        assert_eq!(cost_of(&found, "eipalloc-free"), 3.65);
        assert_eq!(cost_of(&found, "i-stopped"), 4.4, "20 GiB gp2 at 0.10 + 30 GiB gp3 at 0.08");
        assert_eq!(cost_of(&found, "snap-old"), 2.5, "50 GiB at 0.05");
        let odd = found.iter().find(|f| f.resource == "vol-odd").unwrap();
        assert_eq!(odd.monthly_cost, 0.0);
        assert!(odd.price.contains("no price for ebs:gp9"), "{}", odd.price);
        let old = found.iter().find(|f| f.resource == "vol-old").unwrap();
        assert_eq!((old.kind, old.age_days, old.size_gib, old.name.as_deref()), (FindingKind::UnattachedVolume, Some(30), Some(100), Some("n-vol-old")));
        assert_eq!((old.account.as_str(), old.region.as_str(), old.currency.as_str()), ("111122223333", "eu-west-1", "USD"));
        // Costliest first.
        assert!(found.windows(2).all(|w| w[0].monthly_cost >= w[1].monthly_cost), "{found:?}");
        assert_eq!(found[0].resource, "vol-io2");
    }

    #[test]
    fn the_thresholds_and_configured_prices_are_applied() {
        let mut r = rules();
        r.unattached_days = 0;
        r.snapshot_days = 5;
        r.prices = Prices::new(&BTreeMap::from([("ebs:gp3".to_string(), 0.1), ("ipv4".to_string(), 0.0)]));
        let found = find(&r, NOW, &inventory());
        assert_eq!(cost_of(&found, "vol-new"), 10.0);
        assert!(found.iter().find(|f| f.resource == "vol-new").unwrap().price.starts_with("configured ebs:gp3"));
        assert_eq!(cost_of(&found, "snap-new"), 2.5);
        assert_eq!(cost_of(&found, "eipalloc-free"), 0.0);
        assert!(find(&r, NOW, &Gathered::default()).is_empty());
    }
}
