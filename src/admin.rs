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

async fn readyz(State(s): State<AdminState>) -> Response {
    let stopping = *s.shutdown.borrow();
    let polling: Vec<_> = s
        .intakes
        .iter()
        .map(|(q, st)| json!({"queue": q, "polling": st.polling.load(Ordering::Relaxed)}))
        .collect();
    let ready = !stopping
        && s.intakes
            .iter()
            .all(|(_, st)| st.polling.load(Ordering::Relaxed));
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(json!({"ready": ready, "shutting_down": stopping, "queues": polling})),
    )
        .into_response()
}

async fn metrics(State(s): State<AdminState>) -> String {
    let mut out = String::new();
    type Counter = (&'static str, &'static str, fn(&IntakeStats) -> u64);
    let counters: [Counter; 9] = [
        (
            "tugboat_messages_received_total",
            "Messages received from SQS.",
            |s| s.received.load(Ordering::Relaxed),
        ),
        (
            "tugboat_messages_deleted_total",
            "Messages deleted after their work was done.",
            |s| s.deleted.load(Ordering::Relaxed),
        ),
        (
            "tugboat_messages_dead_lettered_total",
            "Messages handed to the DLQ.",
            |s| s.dead_lettered.load(Ordering::Relaxed),
        ),
        (
            "tugboat_messages_released_total",
            "Messages released for a later retry or at shutdown.",
            |s| s.released.load(Ordering::Relaxed),
        ),
        (
            "tugboat_messages_unmatched_total",
            "Messages whose events matched no route.",
            |s| s.unmatched.load(Ordering::Relaxed),
        ),
        (
            "tugboat_messages_ignored_total",
            "Messages acknowledged without work (S3 test events).",
            |s| s.ignored.load(Ordering::Relaxed),
        ),
        (
            "tugboat_decode_errors_total",
            "Messages that could not be decoded.",
            |s| s.decode_errors.load(Ordering::Relaxed),
        ),
        (
            "tugboat_messages_refreshed_total",
            "Messages released as a fresh copy to stay clear of the queue's maxReceiveCount.",
            |s| s.refreshed.load(Ordering::Relaxed),
        ),
        (
            "tugboat_visibility_extensions_total",
            "Visibility timeout extensions of in-flight messages.",
            |s| s.visibility_extensions.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, read) in counters {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
        for (queue, st) in &s.intakes {
            out.push_str(&format!("{name}{{queue=\"{queue}\"}} {}\n", read(st)));
        }
    }
    out.push_str("# HELP tugboat_workflows_finished_total Workflow instances that ended in this process, by kind and outcome (succeeded, ignored: the event was not for it, failed).\n# TYPE tugboat_workflows_finished_total counter\n");
    for (workflow, outcome, n) in s.dispatcher.engine().outcomes.snapshot() {
        out.push_str(&format!(
            "tugboat_workflows_finished_total{{workflow=\"{workflow}\",outcome=\"{outcome}\"}} {n}\n"
        ));
    }
    out.push_str("# HELP tugboat_workflows_running Workflow instances running in this process.\n# TYPE tugboat_workflows_running gauge\n");
    out.push_str(&format!(
        "tugboat_workflows_running {}\n",
        s.dispatcher.running_count()
    ));
    out
}

#[derive(Debug, Deserialize)]
struct SinceQuery {
    /// Interruptions noticed at or after this (ms since the epoch); default: all.
    since_ms: Option<u64>,
}

/// `spot_drain`'s interruption history from the journal (what `tugboat spot history` prints).
async fn spot_history(State(s): State<AdminState>, Query(q): Query<SinceQuery>) -> Response {
    match s.journal.list(&ListFilter::default()) {
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
    match s.journal.list(&filter) {
        Ok(records) => Json(records).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

async fn show(State(s): State<AdminState>, Path(id): Path<String>) -> Response {
    match s.journal.get(&id) {
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
