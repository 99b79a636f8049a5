//! Live updates: `/events` streams the instances the engine changes as server-sent events,
//! in batches (at most four a second: one event per batch, whatever the rate of changes),
//! each with the counts per status, so that a page updates without reloading.
//!
//! `?id=` follows one instance; `?status=&route=&kind=` only sends the instances those
//! filters pass (the counts are of every instance the route and kind filters pass).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::AdminState;
use super::views;
use crate::journal::Summary;

/// How long changes are gathered into one event.
const BATCH: Duration = Duration::from_millis(250);

#[derive(Debug, Default, Deserialize)]
pub struct Follow {
    /// The page was rendered at this time (ms since the epoch): what changed since comes
    /// first, so that nothing between the render and the connection is missed.
    after: Option<u64>,
    id: Option<String>,
    status: Option<String>,
    route: Option<String>,
    kind: Option<String>,
}

impl Follow {
    fn wants(&self, s: &Summary) -> bool {
        let is = |f: &Option<String>, v: &str| f.as_deref().is_none_or(|x| x.is_empty() || x == v);
        is(&self.id, &s.id) && is(&self.status, &s.status) && self.counts(s)
    }

    /// Whether `s` counts towards this page's counts.
    fn counts(&self, s: &Summary) -> bool {
        let is = |f: &Option<String>, v: &str| f.as_deref().is_none_or(|x| x.is_empty() || x == v);
        is(&self.route, &s.route) && is(&self.kind, &s.workflow)
    }
}

pub async fn events(
    State(state): State<AdminState>,
    Query(follow): Query<Follow>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let updates = state.dispatcher.engine().updates.subscribe();
    // Subscribed first, then caught up: a change is sent twice at worst, never lost.
    let catch_up = match follow.after {
        Some(after) => state
            .console
            .index
            .with(&state, |all| {
                all.values()
                    .filter(|s| s.updated_ms >= after && follow.wants(s))
                    .map(|s| Arc::new(s.clone()))
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let stream = futures::stream::unfold(
        (state, follow, updates, catch_up),
        |(state, follow, mut updates, catch_up)| async move {
            let mut batch: HashMap<String, Arc<Summary>> = HashMap::new();
            let mut lagged = false;
            if catch_up.is_empty() {
                // Wait for a change, then gather what else comes within the batch window.
                // A shutdown ends the stream: the listener's graceful shutdown waits for
                // every response to end, and this one would not by itself.
                let mut shutdown = state.shutdown.clone();
                let first = tokio::select! {
                    first = updates.recv() => first,
                    _ = crate::engine::shutdown_begun(&mut shutdown) => return None,
                };
                let deadline = tokio::time::Instant::now() + BATCH;
                let mut next = Some(first);
                loop {
                    match next.take() {
                        Some(Ok(s)) => {
                            batch.insert(s.id.clone(), s);
                        }
                        Some(Err(RecvError::Lagged(_))) => lagged = true,
                        Some(Err(RecvError::Closed)) => return None,
                        None => {}
                    }
                    match tokio::time::timeout_at(deadline, updates.recv()).await {
                        Ok(r) => next = Some(r),
                        Err(_) => break,
                    }
                }
            } else {
                batch.extend(catch_up.into_iter().map(|s| (s.id.clone(), s)));
            }
            let event = if lagged {
                // Too many changes to follow one by one: the page reloads what it shows.
                Event::default().event("resync").data("{}")
            } else {
                let instances: Vec<&Summary> = batch
                    .values()
                    .map(|s| s.as_ref())
                    .filter(|s| follow.wants(s))
                    .collect();
                let counts = state
                    .console
                    .index
                    .peek(|all| views::counts(all.values().filter(|s| follow.counts(s))));
                let data = json!({"instances": instances, "counts": counts});
                Event::default().event("instances").data(data.to_string())
            };
            Some((Ok(event), (state, follow, updates, Vec::new())))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}
