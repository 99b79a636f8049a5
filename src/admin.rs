//! The admin HTTP listener, bound to loopback by default: `/healthz`, `/readyz`, `/metrics`
//! (Prometheus text), `/workflows` and `/workflows/{id}` (JSON, read by `tugboat workflows`),
//! `/spot/history` (JSON, read by `tugboat spot history`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;

use crate::engine::Dispatcher;
use crate::intake::IntakeStats;
use crate::journal::{Journal, ListFilter};

#[derive(Clone)]
pub struct AdminState {
    pub journal: Arc<dyn Journal>,
    pub intakes: Vec<(String, Arc<IntakeStats>)>,
    pub dispatcher: Arc<Dispatcher>,
    pub shutdown: watch::Receiver<bool>,
    /// Every metric: the engine's, and the [`Scraped`] ones.
    pub metrics: Arc<prometheus_client::registry::Registry>,
}

pub fn router(state: AdminState) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/workflows", get(list))
        .route("/workflows/{id}", get(show))
        .route("/spot/history", get(spot_history))
        .with_state(state)
}

/// Ready when: not shutting down, the journal answers, every queue is polled and its last
/// receive worked, and trace exports (when on) have not failed for a minute.
async fn readyz(State(s): State<AdminState>) -> Response {
    let stopping = *s.shutdown.borrow();
    let queues: Vec<_> = s
        .intakes
        .iter()
        .map(|(q, st)| {
            json!({
                "queue": q,
                "polling": st.polling.load(Ordering::Relaxed),
                "reachable": !st.unreachable.load(Ordering::Relaxed),
            })
        })
        .collect();
    let queues_ok = s.intakes.iter().all(|(_, st)| {
        st.polling.load(Ordering::Relaxed) && !st.unreachable.load(Ordering::Relaxed)
    });
    let journal = match s.journal.get("readyz:probe").await {
        Ok(_) => json!({"ok": true}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    };
    let journal_ok = journal["ok"] == true;
    let exporter = crate::telemetry::exporter_wedged();
    let ready = !stopping && queues_ok && journal_ok && exporter.is_none();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(json!({
            "ready": ready,
            "shutting_down": stopping,
            "journal": journal,
            "queues": queues,
            "traces": match exporter {
                Some(why) => json!({"ok": false, "error": why}),
                None => json!({"ok": true}),
            },
        })),
    )
        .into_response()
}

async fn metrics(State(s): State<AdminState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::text(&s.metrics),
    )
        .into_response()
}

/// What `/metrics` reads at each scrape from state kept elsewhere: the intakes' message
/// counters and in-flight gauge, and the instances running.
pub struct Scraped {
    pub intakes: Vec<(String, Arc<IntakeStats>)>,
    pub dispatcher: Arc<Dispatcher>,
}

impl std::fmt::Debug for Scraped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scraped").finish_non_exhaustive()
    }
}

impl crate::metrics::Collector for Scraped {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::MetricType;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        type Read = fn(&IntakeStats) -> u64;
        let counters: [(&str, &str, Read); 9] = [
            ("messages_received", "Messages received from SQS", |s| {
                s.received.load(Ordering::Relaxed)
            }),
            (
                "messages_deleted",
                "Messages deleted after their work was done",
                |s| s.deleted.load(Ordering::Relaxed),
            ),
            (
                "messages_dead_lettered",
                "Messages handed to the DLQ",
                |s| s.dead_lettered.load(Ordering::Relaxed),
            ),
            (
                "messages_released",
                "Messages released for a later retry or at shutdown",
                |s| s.released.load(Ordering::Relaxed),
            ),
            (
                "messages_unmatched",
                "Messages whose events matched no route",
                |s| s.unmatched.load(Ordering::Relaxed),
            ),
            (
                "messages_ignored",
                "Messages acknowledged without work (S3 test events)",
                |s| s.ignored.load(Ordering::Relaxed),
            ),
            ("decode_errors", "Messages that could not be decoded", |s| {
                s.decode_errors.load(Ordering::Relaxed)
            }),
            (
                "messages_refreshed",
                "Messages released as a fresh copy to stay clear of the queue's maxReceiveCount",
                |s| s.refreshed.load(Ordering::Relaxed),
            ),
            (
                "visibility_extensions",
                "Visibility timeout extensions of in-flight messages",
                |s| s.visibility_extensions.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, read) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (queue, st) in &self.intakes {
                let labels = [("queue", queue.as_str())];
                ConstCounter::new(read(st)).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "messages_in_flight",
            "Messages received and not yet deleted, released or handed to the DLQ",
            None,
            MetricType::Gauge,
        )?;
        for (queue, st) in &self.intakes {
            let labels = [("queue", queue.as_str())];
            ConstGauge::new(st.in_flight.load(Ordering::Relaxed) as i64)
                .encode(family.encode_family(&labels)?)?;
        }
        let running = encoder.encode_descriptor(
            "workflows_running",
            "Workflow instances running in this process",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.dispatcher.running_count() as i64).encode(running)?;
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
struct SinceQuery {
    /// Interruptions noticed at or after this (ms since the epoch); default: all.
    since_ms: Option<u64>,
}

/// `spot_drain`'s interruption history from the journal (what `tugboat spot history` prints).
async fn spot_history(State(s): State<AdminState>, Query(q): Query<SinceQuery>) -> Response {
    match s.journal.list(&ListFilter::default()).await {
        Ok(records) => Json(crate::workflows::spot_drain::history::from_states(
            records
                .iter()
                .filter(|r| r.workflow == crate::workflows::spot_drain::KIND)
                .map(|r| &r.state),
            q.since_ms.unwrap_or(0),
        ))
        .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    status: Option<String>,
    route: Option<String>,
    limit: Option<usize>,
}

async fn list(State(s): State<AdminState>, Query(q): Query<ListQuery>) -> Response {
    let filter = ListFilter {
        status: q.status,
        route: q.route,
        limit: q.limit,
    };
    match s.journal.list(&filter).await {
        Ok(records) => Json(records).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

async fn show(State(s): State<AdminState>, Path(id): Path<String>) -> Response {
    match s.journal.get(&id).await {
        Ok(Some(r)) => Json(r).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no workflow {id}")})),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}
