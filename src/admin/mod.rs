//! The admin HTTP listener, bound to loopback by default: `/healthz`, `/readyz`, `/metrics`
//! (Prometheus text), and the operators' console — workflows, one instance, dead letters,
//! interruptions, costs — whose every page is also JSON (the same handler answers
//! `Accept: text/html` with the page, anything else with JSON: the CLI and scripts use that),
//! live updates over server-sent events (`/events`), and the actions (cancel, retry, pause,
//! resume, redrive): POSTs that carry the console's token, refused unless
//! `[admin] allow_actions = true`.
//!
//! Every route but `/healthz`, `/readyz` and `/metrics` answers only under a `Host` of this
//! console and from its own `Origin` ([`guard`]): a page of another site, DNS-rebound to the
//! listener, reads nothing. The token is handed only to clients on loopback, or to everyone
//! when `[admin] proxy_authenticates` says a proxy in front authenticated them.

mod health;
mod live;
mod pages;
pub mod views;

pub use health::Scraped;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;

use crate::engine::Dispatcher;
use crate::intake::IntakeStats;
use crate::journal::{Journal, JournalError};
use crate::ports::Queue;
use crate::workflows::BuiltPage;

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

/// What the console knows beyond the engine.
#[derive(Debug)]
pub struct Console {
    /// Carried by every action (a page gets it in a `<meta>`, the CLI from
    /// `/api/session`): a page of another site cannot read it, so cannot act.
    pub token: String,
    pub allow_actions: bool,
    /// `[admin] proxy_authenticates`: every client was authenticated by a proxy in front.
    pub proxy_authenticates: bool,
    /// `[security] signing_key`, which signs retries and redrives.
    pub signing_key: Option<crate::signing::SigningKey>,
    /// `Host` values a request may come under (every route but health and metrics): the
    /// listen address, loopback names, and `[admin] hosts`.
    pub hosts: Vec<String>,
    pub trace_url: Option<String>,
    pub queues: Vec<QueueHandles>,
    /// (name, workflow) of every route, in configuration order.
    pub routes: Vec<(String, String)>,
    /// The pages workflows add (interruptions, costs), in the navigation after the console's.
    pub pages: Vec<BuiltPage>,
    /// The configured schedules (the routes page lists them, with pause and resume).
    pub schedules: Vec<crate::schedule::Schedule>,
    pub index: views::Index,
}

impl Console {
    pub fn new(
        config: &crate::config::Config,
        listen: SocketAddr,
        queues: Vec<QueueHandles>,
        pages: Vec<BuiltPage>,
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
            proxy_authenticates: config.admin.proxy_authenticates,
            signing_key: config.security.signing_key.clone(),
            hosts,
            trace_url: config.admin.trace_url.clone(),
            queues,
            routes: config
                .routes
                .iter()
                .map(|r| (r.name.clone(), r.workflow.clone()))
                .collect(),
            pages,
            schedules: Vec::new(),
            index: views::Index::default(),
        }
    }

    fn queue(&self, name: &str) -> Option<&QueueHandles> {
        self.queues.iter().find(|q| q.name == name)
    }

    /// The token a page embeds: empty unless the client being answered may hold it.
    fn token_for_page(&self) -> &str {
        if token_shown() { &self.token } else { "" }
    }

    /// Whether `token` is this console's, compared in constant time (a timing difference
    /// must not tell an attacker how many leading characters were right).
    fn is_token(&self, token: &str) -> bool {
        use subtle::ConstantTimeEq;
        // Slices of different lengths compare unequal.
        bool::from(self.token.as_bytes().ct_eq(token.as_bytes()))
    }
}

tokio::task_local! {
    /// Whether the client of the request being answered may be handed the action token; set
    /// by [`guard`] around every handler, read where a page embeds the token.
    static SHOWS_TOKEN: bool;
}

fn token_shown() -> bool {
    SHOWS_TOKEN.try_with(|shown| *shown).unwrap_or(false)
}

/// Refuses a request under a `Host` that is not this console's (a DNS-rebound name) or from
/// another site's `Origin`, and decides whether its client may see the token: a peer on
/// loopback, or any when a proxy authenticates. Health and metrics carry no instance data
/// or token and answer under any host (load balancers and scrapers reach them by address).
async fn guard(State(s): State<AdminState>, request: Request, next: Next) -> Response {
    if matches!(request.uri().path(), "/healthz" | "/readyz" | "/metrics") {
        return next.run(request).await;
    }
    if let Err(e) = same_site(&s.console, request.headers()) {
        return e.respond(wants_html(request.headers()));
    }
    // Without the peer's address (a router served without connect info) nobody sees it.
    let on_loopback = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| peer.ip().to_canonical().is_loopback());
    SHOWS_TOKEN
        .scope(
            on_loopback || s.console.proxy_authenticates,
            next.run(request),
        )
        .await
}

/// The request comes under a host of this console (not a rebound DNS name), from this
/// console's origin if it names one.
fn same_site(console: &Console, headers: &HeaderMap) -> Result<(), ApiError> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !console.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        return Err(ApiError::forbidden(format!(
            "requests under host {host:?} are refused; add it to [admin] hosts if the console is reached through a proxy under that name"
        )));
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        let origin_host = origin.split("://").nth(1).unwrap_or(origin);
        if !origin_host.eq_ignore_ascii_case(host) {
            return Err(ApiError::forbidden(format!(
                "a request from {origin:?} may not use this console"
            )));
        }
    }
    Ok(())
}

pub fn router(state: AdminState) -> axum::Router {
    let mut router = axum::Router::new();
    for page in &state.console.pages {
        for path in std::iter::once(page.spec.path).chain(page.spec.also.iter().copied()) {
            let page = page.clone();
            router = router.route(
                path,
                get(
                    move |State(s): State<AdminState>,
                          headers: HeaderMap,
                          Query(query): Query<BTreeMap<String, String>>| async move {
                        workflow_page(s, headers, page, query).await
                    },
                ),
            );
        }
    }
    router
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
        .route("/schedules", get(schedules))
        .route("/schedules/{name}/pause", post(pause_schedule))
        .route("/schedules/{name}/resume", post(resume_schedule))
        .route("/dead-letters", get(dead_letters))
        .route("/dead-letters/{queue}/redrive", post(redrive))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
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

/// The token, for the CLI: only to a client that may hold it (see [`guard`]).
async fn session(State(s): State<AdminState>) -> Response {
    if !token_shown() {
        return ApiError::forbidden(
            "the action token is handed only to clients on loopback (or, with [admin] proxy_authenticates = true, to those a proxy authenticated)".into(),
        )
        .respond(false);
    }
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
    let schedules = views::schedules(&s).await;
    answer(&headers, view, |v| {
        pages::routes(v, &schedules, &s.console, notice.notice.as_deref())
    })
}

/// The schedules, with their next fire times (also on the routes page).
async fn schedules(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Query(notice): Query<Notice>,
) -> Response {
    let view: Result<_, ApiError> = views::schedules(&s).await;
    let routes = views::routes(&s);
    answer(&headers, view, |v| {
        pages::routes(
            &routes,
            &Ok(v.clone()),
            &s.console,
            notice.notice.as_deref(),
        )
    })
}

async fn pause_schedule(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    set_schedule_paused(s, headers, name, body, true).await
}

async fn resume_schedule(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    set_schedule_paused(s, headers, name, body, false).await
}

async fn set_schedule_paused(
    s: AdminState,
    headers: HeaderMap,
    name: String,
    body: Bytes,
    paused: bool,
) -> Response {
    act(&s, &headers, &body, "/routes".into(), async |_| {
        let Some(schedule) = s.console.schedules.iter().find(|x| x.name == name) else {
            return Err(ApiError::not_found(format!(
                "no schedule {name:?} is configured"
            )));
        };
        let engine = s.dispatcher.engine();
        crate::schedule::runner::set_paused(
            engine.journal.as_ref(),
            schedule,
            paused,
            engine.clock.now_ms() as i64,
        )
        .await
        .map_err(ApiError::journal)?;
        tracing::info!(schedule = %name, paused, "schedule {} from the admin listener", if paused { "paused" } else { "resumed" });
        Ok(if paused {
            format!("schedule {name} paused: it fires nothing until resumed")
        } else {
            format!("schedule {name} resumed: its next tick fires (the paused ones do not)")
        })
    })
    .await
}

async fn dead_letters(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Query(notice): Query<Notice>,
) -> Response {
    let view: Result<_, ApiError> = Ok(views::dead_letters(&s, notice.notice).await);
    answer(&headers, view, |v| pages::dead_letters(v, &s.console))
}

/// A page a workflow adds: its view from the instances of its kind and the query, in the
/// console's layout for a browser.
async fn workflow_page(
    s: AdminState,
    headers: HeaderMap,
    page: BuiltPage,
    query: BTreeMap<String, String>,
) -> Response {
    let view = views::workflow_page(&s, &page, &query).await;
    answer(&headers, view, |v| {
        pages::workflow_page(v, &page, &s.console)
    })
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
/// ([`guard`] checked the host and origin already; checked again so that an action is never
/// one layer away from being open.)
fn allowed(console: &Console, headers: &HeaderMap, form: &ActionForm) -> Result<(), ApiError> {
    if !console.allow_actions {
        return Err(ApiError::forbidden(
            "actions are off: set [admin] allow_actions = true to cancel, retry, pause or redrive from the console and the CLI".into(),
        ));
    }
    same_site(console, headers)?;
    let token = headers
        .get("x-tugboat-token")
        .and_then(|t| t.to_str().ok())
        .or(form.token.as_deref());
    if !token.is_some_and(|t| console.is_token(t)) {
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
        let message_id =
            crate::operate::retry(&record, q.queue.as_ref(), s.console.signing_key.as_ref())
                .await?;
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
        let done = crate::operate::dead_letters::redrive(
            q.queue.as_ref(),
            dlq.as_ref(),
            only,
            10_000,
            s.console.signing_key.as_ref(),
        )
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
        let mut message = done.summary(dlq.name(), q.queue.name());
        if !done.not_moved.is_empty() {
            message.push_str(&format!("; not moved: {}", done.not_moved.join("; ")));
        }
        Ok(message)
    })
    .await
}

#[cfg(test)]
mod tests {
    //! The console's boundary, through the real router with the peer address a test chooses
    //! (no socket: a non-loopback peer cannot be reached from a test's loopback).
    use super::*;
    use crate::engine::{Engine, EngineOptions, dispatcher::TaskSpawn};
    use axum::body::Body;
    use tower::ServiceExt;

    fn state(config: &str) -> AdminState {
        let catalog = crate::workflows::Catalog::builtin();
        let config = crate::config::Config::from_toml_str(
            config,
            std::path::Path::new("t.toml"),
            std::iter::empty(),
            &catalog,
        )
        .unwrap();
        let journal: Arc<dyn Journal> = Arc::new(crate::journal::memory::MemoryJournal::default());
        let (_tx, shutdown) = watch::channel(false);
        let engine = Arc::new(Engine::new(
            journal.clone(),
            crate::workflows::Registry::default(),
            Arc::new(crate::ports::memory::MemoryNotifier::default()),
            EngineOptions::default(),
            shutdown.clone(),
        ));
        let listen: SocketAddr = "127.0.0.1:9090".parse().unwrap();
        let ports = crate::ports::Ports::memory();
        let pages = catalog.pages(crate::workflows::Setup {
            config: &config,
            ports: &ports,
        });
        AdminState {
            journal,
            intakes: vec![],
            dispatcher: Dispatcher::new(engine, Arc::new(TaskSpawn)),
            shutdown,
            metrics: Arc::new(prometheus_client::registry::Registry::default()),
            console: Arc::new({
                let mut console = Console::new(&config, listen, vec![], pages);
                console.schedules = config.compiled_schedules().unwrap();
                console
            }),
        }
    }

    async fn post(s: &AdminState, path: &str, token: Option<&str>) -> (StatusCode, String) {
        let mut request = axum::http::Request::post(path)
            .header(header::HOST, "127.0.0.1:9090")
            .header(header::ACCEPT, "application/json");
        if let Some(t) = token {
            request = request.header("x-tugboat-token", t);
        }
        let mut request = request.body(Body::empty()).unwrap();
        request.extensions_mut().insert(ConnectInfo(
            "127.0.0.1:50000".parse::<SocketAddr>().unwrap(),
        ));
        let response = router(s.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn the_routes_page_lists_the_schedules_and_pausing_one_needs_the_token() {
        let s = state(&format!(
            "{CONFIG}[[schedules]]\nname = \"nightly\"\ncron = \"0 2 ? * * *\"\n\
             [schedules.event]\nsource = \"a\"\ndetail-type = \"b\"\n"
        ));
        let (status, page) = get(&s, "/routes", "127.0.0.1:9090", "127.0.0.1:50000").await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("data-schedule=\"nightly\""), "{page}");
        assert!(page.contains("/schedules/nightly/pause"), "{page}");
        // Without the token: refused, and nothing changes.
        let (status, _) = post(&s, "/schedules/nightly/pause", None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(
            s.journal
                .setting("schedule:nightly")
                .await
                .unwrap()
                .is_none()
        );
        let (status, body) = post(&s, "/schedules/nope/pause", Some(&s.console.token)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let (status, body) = post(&s, "/schedules/nightly/pause", Some(&s.console.token)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let state = s
            .journal
            .setting("schedule:nightly")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(state["paused"], true);
        let (_, page) = get(&s, "/routes", "127.0.0.1:9090", "127.0.0.1:50000").await;
        assert!(page.contains("/schedules/nightly/resume"), "{page}");
        let (status, _) = post(&s, "/schedules/nightly/resume", Some(&s.console.token)).await;
        assert_eq!(status, StatusCode::OK);
        let state = s
            .journal
            .setting("schedule:nightly")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(state["paused"], false);
    }

    const CONFIG: &str = "[aws]\nregion = \"us-east-1\"\n[[queues]]\nname = \"q\"\n\
        [[routes]]\nname = \"r\"\npattern = { source = [\"a\"] }\nworkflow = \"log\"\n\
        [admin]\nallow_actions = true\n";

    async fn get(s: &AdminState, path: &str, host: &str, peer: &str) -> (StatusCode, String) {
        let mut request = axum::http::Request::get(path)
            .header(header::HOST, host)
            .header(header::ACCEPT, "text/html")
            .body(Body::empty())
            .unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        let response = router(s.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_dns_rebound_host_reads_nothing() {
        // The attack: a page of evil.example rebinds its name to 127.0.0.1 and reads the
        // console from the victim's browser (a loopback peer, under the attacker's Host).
        let s = state(CONFIG);
        for path in [
            "/workflows",
            "/dead-letters",
            "/routes",
            "/api/session",
            "/costs",
            "/interruptions",
            "/spot/history",
        ] {
            let (status, body) = get(&s, path, "evil.example:9090", "127.0.0.1:50000").await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
            assert!(!body.contains(&s.console.token), "{path} leaked the token");
        }
        // Health and metrics answer under any host (load balancers use the address).
        let (status, _) = get(&s, "/healthz", "10.1.2.3:9090", "10.9.9.9:4000").await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = get(&s, "/workflows", "127.0.0.1:9090", "127.0.0.1:50000").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.contains(&s.console.token),
            "a loopback client's page carries it"
        );
    }

    #[tokio::test]
    async fn the_token_goes_only_to_loopback_clients_unless_a_proxy_authenticates() {
        // The attack: a client on the network (a console listening beyond loopback, read-only)
        // asks for the token, or reads it from a page.
        let s = state(&CONFIG.replace(
            "allow_actions = true",
            "listen = \"0.0.0.0:9090\"\nhosts = [\"console.internal:9090\"]",
        ));
        let (status, body) = get(
            &s,
            "/api/session",
            "console.internal:9090",
            "192.0.2.7:41000",
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(!body.contains(&s.console.token));
        let (status, body) =
            get(&s, "/workflows", "console.internal:9090", "192.0.2.7:41000").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            !body.contains(&s.console.token),
            "the page carries no token"
        );
        let (status, body) = get(
            &s,
            "/api/session",
            "127.0.0.1:9090",
            "[::ffff:127.0.0.1]:41000",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains(&s.console.token));
        // Behind a proxy that authenticates, its clients get it.
        let s = state(&CONFIG.replace(
            "allow_actions = true",
            "listen = \"0.0.0.0:9090\"\nallow_actions = true\nproxy_authenticates = true\nhosts = [\"console.internal:9090\"]",
        ));
        let (status, body) = get(
            &s,
            "/api/session",
            "console.internal:9090",
            "192.0.2.7:41000",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains(&s.console.token));
    }

    #[test]
    fn the_token_is_compared_whole() {
        let s = state(CONFIG);
        let token = s.console.token.clone();
        assert!(s.console.is_token(&token));
        assert!(!s.console.is_token(&token[..31]));
        assert!(!s.console.is_token(""));
        let mut wrong = token.clone().into_bytes();
        wrong[31] = if wrong[31] == b'0' { b'1' } else { b'0' };
        assert!(!s.console.is_token(std::str::from_utf8(&wrong).unwrap()));
    }
}
