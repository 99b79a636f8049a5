//! The service's metrics, kept and written by the Prometheus project's Rust client
//! (`prometheus-client`): counters and histograms that the engine and the intakes update as
//! they work, and, per scrape, the intakes' message counters and the running-instance gauge
//! (a [`Collector`] over state that lives elsewhere). `/metrics` serves them in the
//! OpenMetrics text format, which Prometheus reads.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub use prometheus_client::collector::Collector;

use crate::journal::{Record, Status};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub workflow: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndLabels {
    pub route: String,
    pub workflow: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    pub workflow: String,
    pub step: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepEndLabels {
    pub workflow: String,
    pub step: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScheduleLabels {
    pub schedule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IngressLabels {
    /// `put_events` or `events`.
    pub api: String,
    /// `ok`, `refused` (credentials or a malformed request), `throttled`, `failed` (the
    /// queue).
    pub outcome: String,
}

/// Histograms of one kind of duration, with buckets fit for it.
#[derive(Clone, Copy, Debug)]
pub struct Buckets {
    start: f64,
    factor: f64,
    count: u16,
}

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(self.start, self.factor, self.count))
    }
}

/// 5 ms to about 3 min: one call.
const STEP: Buckets = Buckets {
    start: 0.005,
    factor: 2.0,
    count: 16,
};
/// 10 ms to about 25 min: a whole instance, sleeps included.
const WORKFLOW: Buckets = Buckets {
    start: 0.01,
    factor: 2.5,
    count: 14,
};
/// 0.1 ms to about 3 s: a durable write.
const COMMIT: Buckets = Buckets {
    start: 0.0001,
    factor: 2.0,
    count: 16,
};
/// 0.1 s to about 55 min: how long a message waited in its queue.
const AGE: Buckets = Buckets {
    start: 0.1,
    factor: 2.0,
    count: 16,
};

#[derive(Debug)]
pub struct Metrics {
    pub started: Family<RouteLabels, Counter>,
    pub finished: Family<EndLabels, Counter>,
    pub workflow_seconds: Family<EndLabels, Histogram, Buckets>,
    pub step_attempts: Family<StepLabels, Counter>,
    pub step_retries: Family<StepLabels, Counter>,
    pub step_seconds: Family<StepEndLabels, Histogram, Buckets>,
    pub journal_commit_seconds: Histogram,
    pub message_age_seconds: Family<QueueLabels, Histogram, Buckets>,
    pub queue_lag_seconds: Family<QueueLabels, Gauge<f64, AtomicU64>>,
    pub schedule_fires: Family<ScheduleLabels, Counter>,
    pub schedule_skipped: Family<ScheduleLabels, Counter>,
    pub schedule_lateness_seconds: Family<ScheduleLabels, Histogram, Buckets>,
    pub ingress_requests: Family<IngressLabels, Counter>,
    pub ingress_entries_failed: Counter,
    pub ingress_entries_accepted: Counter,
    /// The series a direct delivery touches, per route: found once, not built from labels
    /// (and their strings) for every delivery.
    deliveries: std::sync::RwLock<std::collections::HashMap<String, Arc<Delivery>>>,
}

/// The series of one route's deliveries that go well: started, the step's attempts and its
/// `ok` duration, finished `succeeded` and its duration. (Handles share the family's
/// series: a scrape sees them.)
#[derive(Debug)]
struct Delivery {
    workflow: String,
    step: String,
    started: Counter,
    attempts: Counter,
    step_ok: Histogram,
    succeeded: Counter,
    seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            started: Family::default(),
            finished: Family::default(),
            workflow_seconds: Family::new_with_constructor(WORKFLOW),
            step_attempts: Family::default(),
            step_retries: Family::default(),
            step_seconds: Family::new_with_constructor(STEP),
            journal_commit_seconds: COMMIT.new_metric(),
            message_age_seconds: Family::new_with_constructor(AGE),
            queue_lag_seconds: Family::default(),
            schedule_fires: Family::default(),
            schedule_skipped: Family::default(),
            schedule_lateness_seconds: Family::new_with_constructor(STEP),
            ingress_requests: Family::default(),
            ingress_entries_failed: Counter::default(),
            ingress_entries_accepted: Counter::default(),
            deliveries: Default::default(),
        }
    }
}

/// How an instance ended, for `finished`: `succeeded`, `ignored` (the event was not for
/// it), `failed`; `None` while it has not.
pub fn outcome(record: &Record) -> Option<&'static str> {
    match &record.status {
        Status::Succeeded
            if record
                .output
                .as_ref()
                .is_some_and(|o| o.get(crate::contract::IGNORED).is_some()) =>
        {
            Some("ignored")
        }
        Status::Succeeded => Some("succeeded"),
        Status::Failed { .. } => Some("failed"),
        Status::Cancelled { .. } => Some("cancelled"),
        _ => None,
    }
}

impl Metrics {
    /// Counts `record` and its duration if its status is an end (called on the terminal
    /// journal write).
    pub fn ended(&self, record: &Record) {
        let Some(outcome) = outcome(record) else {
            return;
        };
        let took = record.updated_ms.saturating_sub(record.created_ms);
        self.ended_as(&record.route, &record.workflow, outcome, took);
    }

    /// Counts an instance of `workflow` on `route` that ended with `outcome` after `took_ms`.
    pub fn ended_as(&self, route: &str, workflow: &str, outcome: &str, took_ms: u64) {
        let labels = EndLabels {
            route: route.into(),
            workflow: workflow.into(),
            outcome: outcome.into(),
        };
        self.finished.get_or_create(&labels).inc();
        self.workflow_seconds
            .get_or_create(&labels)
            .observe(took_ms as f64 / 1000.0);
    }

    /// A delivery that went well in one step (a direct run): what [`Metrics::started`],
    /// [`Metrics::step`] (`ok`) and [`Metrics::ended_as`] (`succeeded`) count together.
    pub fn delivered(&self, route: &str, workflow: &str, step: &str, took: Duration, took_ms: u64) {
        let found = {
            let known = self.deliveries.read().unwrap_or_else(|e| e.into_inner());
            known.get(route).cloned()
        };
        let d = match found {
            Some(d) if d.workflow == workflow && d.step == step => d,
            _ => {
                let d = Arc::new(self.delivery(route, workflow, step));
                let mut known = self.deliveries.write().unwrap_or_else(|e| e.into_inner());
                known.insert(route.to_owned(), d.clone());
                d
            }
        };
        d.started.inc();
        d.attempts.inc();
        d.step_ok.observe(took.as_secs_f64());
        d.succeeded.inc();
        d.seconds.observe(took_ms as f64 / 1000.0);
    }

    fn delivery(&self, route: &str, workflow: &str, step: &str) -> Delivery {
        let route_labels = RouteLabels {
            route: route.into(),
            workflow: workflow.into(),
        };
        let step_labels = StepLabels {
            workflow: workflow.into(),
            step: step.into(),
        };
        let step_ok = StepEndLabels {
            workflow: workflow.into(),
            step: step.into(),
            outcome: "ok".into(),
        };
        let end = EndLabels {
            route: route.into(),
            workflow: workflow.into(),
            outcome: "succeeded".into(),
        };
        Delivery {
            workflow: workflow.into(),
            step: step.into(),
            started: self.started.get_or_create(&route_labels).clone(),
            attempts: self.step_attempts.get_or_create(&step_labels).clone(),
            step_ok: self.step_seconds.get_or_create(&step_ok).clone(),
            succeeded: self.finished.get_or_create(&end).clone(),
            seconds: self.workflow_seconds.get_or_create(&end).clone(),
        }
    }

    pub fn started(&self, route: &str, workflow: &str) {
        self.started
            .get_or_create(&RouteLabels {
                route: route.into(),
                workflow: workflow.into(),
            })
            .inc();
    }

    /// One attempt at a step, how long its call took and how it came out (`ok`,
    /// `retryable`, `failed`).
    pub fn step(&self, workflow: &str, step: &str, took: Duration, outcome: &str) {
        let labels = StepLabels {
            workflow: workflow.into(),
            step: step.into(),
        };
        self.step_attempts.get_or_create(&labels).inc();
        self.step_seconds
            .get_or_create(&StepEndLabels {
                workflow: labels.workflow,
                step: labels.step,
                outcome: outcome.into(),
            })
            .observe(took.as_secs_f64());
    }

    /// A failed attempt that will be tried again.
    pub fn retry(&self, workflow: &str, step: &str) {
        self.step_retries
            .get_or_create(&StepLabels {
                workflow: workflow.into(),
                step: step.into(),
            })
            .inc();
    }

    /// The ages of a batch of messages just received (`now - SentTimestamp`); the oldest is
    /// the queue's lag.
    pub fn received(&self, queue: &str, ages: impl Iterator<Item = Duration>) {
        let labels = QueueLabels {
            queue: queue.into(),
        };
        let histogram = self.message_age_seconds.get_or_create(&labels);
        let mut oldest: Option<Duration> = None;
        for age in ages {
            histogram.observe(age.as_secs_f64());
            oldest = Some(oldest.map_or(age, |o| o.max(age)));
        }
        if let Some(o) = oldest {
            self.queue_lag_seconds
                .get_or_create(&labels)
                .set(o.as_secs_f64());
        }
    }

    /// A schedule's tick sent, `late` after its fire time.
    pub fn fired(&self, schedule: &str, late: Duration) {
        let labels = ScheduleLabels {
            schedule: schedule.into(),
        };
        self.schedule_fires.get_or_create(&labels).inc();
        self.schedule_lateness_seconds
            .get_or_create(&labels)
            .observe(late.as_secs_f64());
    }

    /// Ticks of a schedule passed over (missed, by its `catch_up`).
    pub fn skipped(&self, schedule: &str, n: u64) {
        self.schedule_skipped
            .get_or_create(&ScheduleLabels {
                schedule: schedule.into(),
            })
            .inc_by(n);
    }

    /// An ingress request's outcome.
    pub fn ingress(&self, api: &str, outcome: &str) {
        self.ingress_requests
            .get_or_create(&IngressLabels {
                api: api.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Registers every metric (under the `tugboat` prefix), and `collector`'s.
    pub fn registry(self: &Arc<Self>, collector: Box<dyn Collector>) -> Registry {
        let mut r = Registry::with_prefix("tugboat");
        r.register(
            "workflows_started",
            "Workflow instances started (new ones and redriven generations), by route and kind",
            self.started.clone(),
        );
        r.register(
            "workflows_finished",
            "Workflow instances that ended in this process, by route, kind and outcome (succeeded, ignored: the event was not for it, failed)",
            self.finished.clone(),
        );
        r.register(
            "workflow_duration_seconds",
            "From an instance's creation to its end, by route, kind and outcome",
            self.workflow_seconds.clone(),
        );
        r.register(
            "step_attempts",
            "Step attempts, by workflow kind and step",
            self.step_attempts.clone(),
        );
        r.register(
            "step_retries",
            "Failed step attempts that will be tried again, by workflow kind and step",
            self.step_retries.clone(),
        );
        r.register(
            "step_duration_seconds",
            "One step attempt's call, by workflow kind, step and outcome (ok, retryable, failed)",
            self.step_seconds.clone(),
        );
        r.register(
            "journal_commit_seconds",
            "Durable journal writes of the engine: from the put to its acknowledgement",
            self.journal_commit_seconds.clone(),
        );
        r.register(
            "message_age_seconds",
            "How long each message waited in its queue before it was received (from SentTimestamp)",
            self.message_age_seconds.clone(),
        );
        r.register(
            "queue_lag_seconds",
            "The age of the oldest message of the last batch received from the queue",
            self.queue_lag_seconds.clone(),
        );
        r.register(
            "schedule_fires",
            "Schedule ticks whose event was sent to the schedule's queue, by schedule",
            self.schedule_fires.clone(),
        );
        r.register(
            "schedule_skipped",
            "Schedule ticks passed over (missed while no process ran; catch_up one or none), by schedule",
            self.schedule_skipped.clone(),
        );
        r.register(
            "schedule_lateness_seconds",
            "How late after its fire time a tick's event was sent, by schedule",
            self.schedule_lateness_seconds.clone(),
        );
        r.register(
            "ingress_requests",
            "Requests to the HTTP ingress, by api (put_events, events) and outcome (ok, refused, throttled, failed)",
            self.ingress_requests.clone(),
        );
        r.register(
            "ingress_entries_accepted",
            "Events the ingress put on its queue",
            self.ingress_entries_accepted.clone(),
        );
        r.register(
            "ingress_entries_failed",
            "PutEvents entries refused one by one (malformed, too large, an aws.* source, or the queue refusing that entry)",
            self.ingress_entries_failed.clone(),
        );
        r.register_collector(collector);
        r
    }
}

/// The registry in the OpenMetrics text format.
pub fn text(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String does not fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}
