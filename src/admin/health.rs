//! `/readyz` and `/metrics`: whether the service can work, and what it has done.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AdminState;
use crate::engine::Dispatcher;
use crate::intake::IntakeStats;

/// Ready when: not shutting down, the journal answers, every queue is polled and its last
/// receive worked, and trace exports (when on) have not failed for a minute.
pub(super) async fn readyz(State(s): State<AdminState>) -> Response {
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

pub(super) async fn metrics(State(s): State<AdminState>) -> Response {
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
        let counters: [(&str, &str, Read); 10] = [
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
                "messages_refused",
                "Messages dead-lettered by a trust rule (an unsigned control attribute or agent notice, a source the queue does not carry)",
                |s| s.refused.load(Ordering::Relaxed),
            ),
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
