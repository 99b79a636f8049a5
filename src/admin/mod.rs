//! The admin HTTP listener, bound to loopback by default: `/healthz`, `/readyz`, `/metrics`
//! (Prometheus text), and the operators' console — workflows, one instance, dead letters,
//! interruptions, costs — whose every page is also JSON (the same handler answers
//! `Accept: text/html` with the page, anything else with JSON: the CLI and scripts use that),
//! live updates over server-sent events (`/events`), and the actions (cancel, retry, pause,
//! resume, redrive): POSTs that carry the console's token, refused unless
//! `[admin] allow_actions = true`.

mod health;
mod live;
mod pages;
pub mod views;

pub use health::Scraped;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;

use crate::engine::Dispatcher;
use crate::intake::IntakeStats;
use crate::journal::{Journal, JournalError};
use crate::ports::Queue;
use crate::ports::costs::CostStore;

#[derive(Clone)]
pub struct AdminState {
    pub journal: Arc<dyn Journal>,
    pub intakes: Vec<(String, Arc<IntakeStats>)>,
    pub dispatcher: Arc<Dispatcher>,
    pub shutdown: watch::Receiver<bool>,
    /// Every metric: the engine's, and the [`Scraped`] ones.
    pub metrics: Arc<prometheus_client::registry::Registry>,
    pub console: Arc<Console>,
}

/// A configured queue, for the dead-letter page and for retries.
#[derive(Debug, Clone)]
pub struct QueueHandles {
    pub name: String,
    pub queue: Arc<dyn Queue>,
    pub dlq: Option<Arc<dyn Queue>>,
}

/// Where `cur_ingest` keeps its costs (the costs page reads them).
#[derive(Debug, Clone)]
pub struct Costs {
    pub store: Arc<dyn CostStore>,
    pub table: String,
}

/// What the console knows beyond the engine.
#[derive(Debug)]
pub struct Console {
    /// Carried by every action (a page gets it in a `<meta>`, the CLI from
    /// `/api/session`): a page of another site cannot read it, so cannot act.
    pub token: String,
    pub allow_actions: bool,
    /// `Host` values an action may come under: the listen address, loopback names, and
    /// `[admin] hosts`.
    pub hosts: Vec<String>,
    pub trace_url: Option<String>,
    pub queues: Vec<QueueHandles>,
    /// (name, workflow) of every route, in configuration order.
    pub routes: Vec<(String, String)>,
    pub costs: Option<Costs>,
    pub index: views::Index,
}

impl Console {
    pub fn new(
        config: &crate::config::Config,
        listen: SocketAddr,
        queues: Vec<QueueHandles>,
        costs: Option<Costs>,
    ) -> Console {
        let mut hosts = vec![
            listen.to_string(),
            format!("localhost:{}", listen.port()),
            format!("127.0.0.1:{}", listen.port()),
            format!("[::1]:{}", listen.port()),
        ];
        hosts.extend(config.admin.hosts.iter().cloned());
        Console {
            token: hex::encode(rand::random::<[u8; 16]>()),
            allow_actions: config.admin.allow_actions,
            hosts,
            trace_url: config.admin.trace_url.clone(),
            queues,
            routes: config
                .routes
                .iter()
                .map(|r| (r.name.clone(), r.workflow.clone()))
                .collect(),
            costs,
            index: views::Index::default(),
        }
    }

    fn queue(&self, name: &str) -> Option<&QueueHandles> {
        self.queues.iter().find(|q| q.name == name)
    }
}

pub fn router(state: AdminState) -> axum::Router {
    axum::Router::new()
        .route("/", get(|| async { Redirect::to("/workflows") }))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/assets/console.css", get(pages::css))
        .route("/assets/console.js", get(pages::js))
        .route("/api/session", get(session))
        .route("/events", get(live::events))
        .route("/workflows", get(workflows))
        .route("/workflows/{id}", get(instance))
        .route("/workflows/{id}/cancel", post(cancel))
        .route("/workflows/{id}/retry", post(retry))
        .route("/routes", get(routes))
        .route("/routes/{name}/pause", post(pause))
        .route("/routes/{name}/resume", post(resume))
        .route("/dead-letters", get(dead_letters))
        .route("/dead-letters/{queue}/redrive", post(redrive))
        .route("/interruptions", get(interruptions))
        .route("/spot/history", get(interruptions))
        .route("/costs", get(costs))
        .with_state(state)
}

/// A refusal, as JSON or as a page.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(message: String) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message,
        }
    }
    pub fn not_found(message: String) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message,
        }
    }
    pub fn journal(e: JournalError) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: e.to_string(),
        }
    }
    fn forbidden(message: String) -> ApiError {
        ApiError {
            status: StatusCode::FORBIDDEN,
            message,
        }
    }
    fn conflict(message: String) -> ApiError {
        ApiError {
            status: StatusCode::CONFLICT,
            message,
        }
    }

    fn respond(self, html: bool) -> Response {
        if html {
            (self.status, pages::error(self.status, &self.message)).into_response()
        } else {
            (self.status, Json(json!({"error": self.message}))).into_response()
        }
    }
}

impl From<crate::engine::dispatcher::CancelError> for ApiError {
    fn from(e: crate::engine::dispatcher::CancelError) -> ApiError {
        use crate::engine::dispatcher::CancelError;
        let status = match e {
            CancelError::NotFound => StatusCode::NOT_FOUND,
            CancelError::NotNow(_) => StatusCode::CONFLICT,
            CancelError::Journal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError {
            status,
            message: e.to_string(),
        }
    }
}

impl From<crate::operate::RetryError> for ApiError {
    fn from(e: crate::operate::RetryError) -> ApiError {
        use crate::operate::RetryError;
        let status = match e {
            RetryError::NotNow(_) => StatusCode::CONFLICT,
            // The queue refused the retry message.
            RetryError::Failed(_) => StatusCode::BAD_GATEWAY,
        };
        ApiError {
            status,
            message: e.to_string(),
        }
    }
}

/// Whether the client asked for a page (a browser's `Accept`) rather than JSON.
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

/// The view as a page or as JSON.
fn answer<T: Serialize>(
    headers: &HeaderMap,
    view: Result<T, ApiError>,
    page: impl FnOnce(&T) -> String,
) -> Response {
    let html = wants_html(headers);
    match view {
        Ok(v) if html => pages::html(page(&v)),
        Ok(v) => Json(v).into_response(),
        Err(e) => e.respond(html),
    }
}

async fn session(State(s): State<AdminState>) -> Response {
    Json(json!({"token": s.console.token, "actions": s.console.allow_actions})).into_response()
}

async fn workflows(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<views::WorkflowsQuery>,
) -> Response {
    let view = views::workflows(&s, q).await;
    answer(&headers, view, |v| pages::workflows(v, &s.console))
}

async fn instance(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(notice): Query<Notice>,
) -> Response {
    let view = views::instance(&s, &id).await;
    answer(&headers, view, |v| {
        pages::instance(v, &s.console, notice.notice.as_deref())
    })
}

async fn routes(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Query(notice): Query<Notice>,
) -> Response {
    let view: Result<_, ApiError> = Ok(views::routes(&s));
    answer(&headers, view, |v| {
        pages::routes(v, &s.console, notice.notice.as_deref())
    })
}

async fn dead_letters(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Query(notice): Query<Notice>,
) -> Response {
    let view: Result<_, ApiError> = Ok(views::dead_letters(&s, notice.notice).await);
    answer(&headers, view, |v| pages::dead_letters(v, &s.console))
}

#[derive(Debug, Deserialize)]
struct SinceQuery {
    /// Interruptions noticed at or after this (ms since the epoch); default: all.
    since_ms: Option<u64>,
}

/// `spot_drain`'s interruption history from the journal (what `tugboat spot history` prints,
/// from `/spot/history`, the same handler).
async fn interruptions(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<SinceQuery>,
) -> Response {
    let view = views::interruptions(&s, q.since_ms.unwrap_or(0)).await;
    answer(&headers, view, |v| pages::interruptions(v, &s.console))
}

async fn costs(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<views::CostsQuery>,
) -> Response {
    let view = views::costs(&s, q).await;
    answer(&headers, view, |v| pages::costs(v, &s.console))
}

#[derive(Debug, Default, Deserialize)]
struct Notice {
    notice: Option<String>,
}

/// An action's form (a page's POST) or nothing (an API client's, with the token in the
/// `x-tugboat-token` header).
#[derive(Debug, Default, Deserialize)]
struct ActionForm {
    token: Option<String>,
    /// The dead letter to redrive (all when absent).
    message_id: Option<String>,
    /// Where a page goes after the action: a path of this console.
    back: Option<String>,
}

/// Refuses an action unless actions are on, it comes under a host of this console (not a
/// rebound DNS name), from this console's origin if it names one, with the token.
fn allowed(console: &Console, headers: &HeaderMap, form: &ActionForm) -> Result<(), ApiError> {
    if !console.allow_actions {
        return Err(ApiError::forbidden(
            "actions are off: set [admin] allow_actions = true to cancel, retry, pause or redrive from the console and the CLI".into(),
        ));
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !console.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        return Err(ApiError::forbidden(format!(
            "actions are refused under host {host:?}; add it to [admin] hosts if the console is reached through a proxy under that name"
        )));
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        let origin_host = origin.split("://").nth(1).unwrap_or(origin);
        if !origin_host.eq_ignore_ascii_case(host) {
            return Err(ApiError::forbidden(format!(
                "a request from {origin:?} may not act on this console"
            )));
        }
    }
    let token = headers
        .get("x-tugboat-token")
        .and_then(|t| t.to_str().ok())
        .or(form.token.as_deref());
    if token != Some(console.token.as_str()) {
        return Err(ApiError::forbidden(
            "missing or wrong token (reload the page; the CLI reads it from /api/session)".into(),
        ));
    }
    Ok(())
}

/// Reads the form, checks the action is allowed, runs it, and answers: a page goes back
/// where it came from with the outcome as a notice; an API client gets JSON.
async fn act<F>(
    state: &AdminState,
    headers: &HeaderMap,
    body: &Bytes,
    default_back: String,
    action: F,
) -> Response
where
    F: AsyncFnOnce(&ActionForm) -> Result<String, ApiError>,
{
    let html = wants_html(headers);
    let form: ActionForm = match serde_urlencoded::from_bytes(body) {
        Ok(f) => f,
        Err(e) => return ApiError::bad_request(format!("form: {e}")).respond(html),
    };
    if let Err(e) = allowed(&state.console, headers, &form) {
        return e.respond(html);
    }
    let outcome = action(&form).await;
    if !html {
        return match outcome {
            Ok(message) => Json(json!({"ok": true, "message": message})).into_response(),
            Err(e) => e.respond(false),
        };
    }
    let notice = match outcome {
        Ok(m) => m,
        Err(e) => format!("refused: {}", e.message),
    };
    let back = form
        .back
        .filter(|b| b.starts_with('/') && !b.starts_with("//"))
        .unwrap_or(default_back);
    let sep = if back.contains('?') { '&' } else { '?' };
    let encoded = serde_urlencoded::to_string([("notice", notice)]).unwrap_or_default();
    Redirect::to(&format!("{back}{sep}{encoded}")).into_response()
}

/// Who asked for an action, for the record: the console's page, the CLI, or another
/// client of the API.
fn who(headers: &HeaderMap) -> String {
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|a| a.to_str().ok())
        .unwrap_or_default();
    if agent.starts_with("tugboat-cli") {
        "the CLI".into()
    } else if wants_html(headers) {
        "the console".into()
    } else {
        "the admin API".into()
    }
}

fn instance_path(id: &str) -> String {
    format!("/workflows/{}", encode(id))
}

/// `text` percent-encoded for a path segment or a query value (the console's links and the
/// CLI's requests to it).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

async fn cancel(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let back = instance_path(&id);
    act(&s, &headers, &body, back, async |_| {
        let done = s.dispatcher.cancel(&id, &who(&headers)).await?;
        Ok(done.describe())
    })
    .await
}

async fn retry(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let back = instance_path(&id);
    act(&s, &headers, &body, back, async |_| {
        let record = match s.journal.get(&id).await {
            Ok(Some(r)) => r,
            Ok(None) => return Err(ApiError::not_found(format!("no workflow {id}"))),
            Err(e) => return Err(ApiError::journal(e)),
        };
        let Some(q) = s.console.queue(&record.queue) else {
            return Err(ApiError::conflict(format!(
                "its queue {:?} is not configured here",
                record.queue
            )));
        };
        let message_id = crate::operate::retry(&record, q.queue.as_ref()).await?;
        Ok(format!(
            "retry sent to {} (message {message_id}): run {} starts when it is received",
            record.queue,
            record.generation + 1
        ))
    })
    .await
}

async fn pause(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    set_paused(s, headers, name, body, true).await
}

async fn resume(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    set_paused(s, headers, name, body, false).await
}

async fn set_paused(
    s: AdminState,
    headers: HeaderMap,
    name: String,
    body: Bytes,
    paused: bool,
) -> Response {
    act(&s, &headers, &body, "/routes".into(), async |_| {
        if !s.console.routes.iter().any(|(r, _)| *r == name) {
            return Err(ApiError::not_found(format!("no route {name:?} is configured")));
        }
        let engine = s.dispatcher.engine();
        engine
            .paused
            .set(engine.journal.as_ref(), &name, paused)
            .await
            .map_err(ApiError::journal)?;
        tracing::info!(route = %name, paused, "route {} from the admin listener", if paused { "paused" } else { "resumed" });
        Ok(if paused {
            format!("route {name} paused: its events wait in the queue")
        } else {
            format!("route {name} resumed: its waiting events run now")
        })
    })
    .await
}

async fn redrive(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(queue): Path<String>,
    body: Bytes,
) -> Response {
    act(&s, &headers, &body, "/dead-letters".into(), async |form| {
        let Some(q) = s.console.queue(&queue) else {
            return Err(ApiError::not_found(format!(
                "no queue {queue:?} is configured"
            )));
        };
        let Some(dlq) = &q.dlq else {
            return Err(ApiError::conflict(format!(
                "queue {queue:?} has no dlq configured"
            )));
        };
        let only = form.message_id.as_deref().filter(|m| !m.is_empty());
        let done =
            crate::operate::dead_letters::redrive(q.queue.as_ref(), dlq.as_ref(), only, 10_000)
                .await
                .map_err(|e| ApiError {
                    status: StatusCode::BAD_GATEWAY,
                    message: e,
                })?;
        if only.is_some() && done.moved == 0 && done.not_moved.is_empty() {
            return Err(ApiError::not_found(format!(
                "message {} is not in {} (redriven already?)",
                only.unwrap_or_default(),
                dlq.name()
            )));
        }
        let mut message = format!(
            "redrove {} message(s) from {} to {}",
            done.moved,
            dlq.name(),
            q.queue.name()
        );
        if !done.not_moved.is_empty() {
            message.push_str(&format!("; not moved: {}", done.not_moved.join("; ")));
        }
        Ok(message)
    })
    .await
}
