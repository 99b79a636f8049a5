//! The rules: what in a region's inventory costs money while nobody uses it, and an estimate
//! of how much a month. Pure: the inventory and the time come in, findings go out.

use std::collections::BTreeMap;

use super::prices::{GP3_BASELINE_IOPS, Prices};
use crate::ports::resources::{Address, Database, Finding, FindingKind, Instance, Snapshot, Volume};

const DAY_MS: u64 = 86_400_000;

/// A region's inventory, as the scan read it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gathered {
    pub volumes: Vec<Volume>,
    pub addresses: Vec<Address>,
    pub instances: Vec<Instance>,
    pub snapshots: Vec<Snapshot>,
    pub databases: Vec<Database>,
    /// Daily average CPU (percent) of the running instances old enough to judge, by id.
    pub cpu: BTreeMap<String, Vec<f64>>,
    /// Daily maximum connections of the DB instances old enough to judge, by id.
    pub connections: BTreeMap<String, Vec<f64>>,
}

/// How one scan judges.
#[derive(Debug, Clone)]
pub struct Rules {
    pub account: String,
    pub region: String,
    pub unattached_days: u64,
    pub snapshot_days: u64,
    pub low_cpu_days: u64,
    pub low_cpu_percent: f64,
    pub idle_database_days: u64,
    pub currency: String,
    pub prices: Prices,
}

impl Rules {
    /// The running instances whose CPU the scan asks CloudWatch for: those running at least
    /// `low_cpu_days` (a newer one has too short a history to judge).
    pub fn cpu_candidates<'a>(&self, now_ms: u64, instances: &'a [Instance]) -> Vec<&'a Instance> {
        instances
            .iter()
            .filter(|i| i.state == "running" && age_days(now_ms, i.launched_ms).is_some_and(|a| a >= self.low_cpu_days))
            .collect()
    }

    /// The DB instances whose connections the scan asks for: available, at least
    /// `idle_database_days` old.
    pub fn connection_candidates<'a>(&self, now_ms: u64, databases: &'a [Database]) -> Vec<&'a Database> {
        databases
            .iter()
            .filter(|d| d.status == "available" && age_days(now_ms, d.created_ms).is_some_and(|a| a >= self.idle_database_days))
            .collect()
    }
}

/// Enough daily points to judge `days`: a window of N days holds N points, or N - 1 when it
/// does not start at midnight and the first is partial.
fn covers(points: &[f64], days: u64) -> bool {
    points.len() as u64 >= days.saturating_sub(1).max(1)
}

/// A monthly price by key, or 0 with what to configure.
fn priced(rules: &Rules, key: &str) -> (f64, String) {
    match rules.prices.get(key) {
        Some(p) => (p.amount, p.source),
        None => (0.0, format!("no price for {key}; set [resources.prices] \"{key}\"")),
    }
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
    for i in rules.cpu_candidates(now_ms, &inventory.instances) {
        let Some(points) = inventory.cpu.get(&i.id).filter(|p| covers(p, rules.low_cpu_days)) else {
            // No metrics (a new account, a detailed-monitoring gap): not judged.
            continue;
        };
        let peak = points.iter().copied().fold(0.0, f64::max);
        if peak >= rules.low_cpu_percent {
            continue;
        }
        let (cost, price) = priced(rules, &format!("ec2:{}", i.instance_type));
        found.push(Finding {
            age_days: age_days(now_ms, i.launched_ms),
            name: name(&i.tags),
            ..finding(
                FindingKind::LowCpuInstance,
                &i.id,
                format!(
                    "{} running; daily average CPU at most {peak:.1}% over {} days (below {}%)",
                    i.instance_type, rules.low_cpu_days, rules.low_cpu_percent
                ),
                cost,
                price,
            )
        });
    }
    for d in rules.connection_candidates(now_ms, &inventory.databases) {
        let Some(points) = inventory.connections.get(&d.id).filter(|p| covers(p, rules.idle_database_days)) else {
            continue;
        };
        if points.iter().any(|c| *c > 0.0) {
            continue;
        }
        let (instance, instance_price) = priced(rules, &format!("rds:{}", d.class));
        let (storage, storage_price) = priced(rules, &format!("rds-storage:{}", d.storage_type));
        let copies = if d.multi_az { 2.0 } else { 1.0 };
        let az = if d.multi_az { " multi-AZ (×2)" } else { "" };
        found.push(Finding {
            size_gib: Some(d.storage_gib),
            age_days: age_days(now_ms, d.created_ms),
            name: name(&d.tags),
            ..finding(
                FindingKind::IdleDatabase,
                &d.id,
                format!(
                    "{} {}{az}, {} GiB {}; no connection in {} days",
                    d.class, d.engine, d.storage_gib, d.storage_type, rules.idle_database_days
                ),
                copies * (instance + storage * f64::from(d.storage_gib)),
                format!("{instance_price}; {storage_price}"),
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
            low_cpu_days: 14,
            low_cpu_percent: 5.0,
            idle_database_days: 7,
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
            ..Default::default()
        }
    }

    fn running(id: &str, kind: &str, days: u64) -> Instance {
        Instance { id: id.into(), instance_type: kind.into(), state: "running".into(), launched_ms: Some(NOW - days * DAY_MS),
            volumes: vec![], tags: BTreeMap::new() }
    }

    fn db(id: &str, class: &str, status: &str, days: u64, multi_az: bool) -> Database {
        Database { id: id.into(), arn: format!("arn:aws:rds:eu-west-1:111122223333:db:{id}"), class: class.into(), engine: "postgres".into(),
            status: status.into(), storage_gib: 100, storage_type: "gp3".into(), multi_az, created_ms: Some(NOW - days * DAY_MS),
            tags: BTreeMap::new() }
    }

    #[test]
    fn low_cpu_instances_and_idle_databases_are_found_from_their_metrics() {
        let g = Gathered {
            instances: vec![
                running("i-idle", "m5.large", 30),
                running("i-busy", "m5.large", 30),
                running("i-young", "m5.large", 3),
                running("i-quiet-once", "m5.large", 30),
                running("i-no-data", "m5.large", 30),
                running("i-odd", "x9.huge", 30),
            ],
            databases: vec![
                db("db-idle", "db.t3.medium", "available", 30, false),
                db("db-idle-ha", "db.t3.medium", "available", 30, true),
                db("db-used", "db.t3.medium", "available", 30, false),
                db("db-stopped", "db.t3.medium", "stopped", 30, false),
                db("db-young", "db.t3.medium", "available", 2, false),
            ],
            cpu: BTreeMap::from([
                ("i-idle".to_string(), vec![1.5; 14]),
                ("i-busy".to_string(), vec![40.0; 14]),
                ("i-young".to_string(), vec![0.5; 3]),
                // Low but for one day of work.
                ("i-quiet-once".to_string(), [vec![1.0; 13], vec![35.0]].concat()),
                ("i-odd".to_string(), vec![2.0; 14]),
            ]),
            connections: BTreeMap::from([
                ("db-idle".to_string(), vec![0.0; 7]),
                ("db-idle-ha".to_string(), vec![0.0; 7]),
                ("db-used".to_string(), [vec![0.0; 6], vec![3.0]].concat()),
                ("db-young".to_string(), vec![0.0; 2]),
            ]),
            ..Default::default()
        };
        let r = rules();
        let candidates: Vec<&str> = r.cpu_candidates(NOW, &g.instances).iter().map(|i| i.id.as_str()).collect();
        assert!(!candidates.contains(&"i-young"), "too new to ask about: {candidates:?}");
        let found = find(&r, NOW, &g);
        let ids: Vec<&str> = found.iter().map(|f| f.resource.as_str()).collect();
        for absent in ["i-busy", "i-young", "i-quiet-once", "i-no-data", "db-used", "db-stopped", "db-young"] {
            assert!(!ids.contains(&absent), "{absent} reported: {ids:?}");
        }
        assert_eq!(cost_of(&found, "i-idle"), 70.08, "m5.large at 0.096 an hour");
        let idle = found.iter().find(|f| f.resource == "i-idle").unwrap();
        assert_eq!(idle.kind, FindingKind::LowCpuInstance);
        assert!(idle.detail.contains("at most 1.5%"), "{}", idle.detail);
        let odd = found.iter().find(|f| f.resource == "i-odd").unwrap();
        assert_eq!(odd.monthly_cost, 0.0);
        assert!(odd.price.contains("\"ec2:x9.huge\""), "{}", odd.price);
        assert_eq!(cost_of(&found, "db-idle"), 61.14, "db.t3.medium 0.068 × 730 + 100 GiB gp3 at 0.115");
        assert_eq!(cost_of(&found, "db-idle-ha"), 122.28, "multi-AZ: twice");
        assert_eq!(found.iter().find(|f| f.resource == "db-idle").unwrap().kind, FindingKind::IdleDatabase);
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
