//! A metadata server of the tests' own on 127.0.0.1 that speaks as the three clouds do.
//!
//! - AWS, as IMDSv2 behaves: a token is required (PUT `/latest/api/token` with a TTL header),
//!   `spot/instance-action` is 404 until a notice is set, and a status can be scripted instead.
//! - Azure Scheduled Events: the header `Metadata: true` is required; the document is served
//!   as set (its `DocumentIncarnation` is the test's to change); POSTed acknowledgements are
//!   recorded; an answer can be held back to make the agent's request time out.
//! - GCP: the header `Metadata-Flavor: Google` is required and answered; `preempted` and
//!   `maintenance-event` carry an ETag that changes with the value, and a request with
//!   `wait_for_change=true&last_etag=` the current ETag waits until the value changes or its
//!   `timeout_sec` ends.
//!
//! `only` makes the server answer as one cloud and 404 as the others (for `provider = auto`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;

/// What the metadata server serves and saw.
#[derive(Default)]
pub struct Imds {
    /// The body of `spot/instance-action` (404 while `None`), or a status to answer with.
    pub spot: Option<Result<String, u16>>,
    pub tokens_issued: u32,
    /// Tokens valid now.
    pub valid: Vec<String>,
    pub gets_without_token: u32,
    /// `Some("gcp")`: every AWS and Azure path is 404.
    pub only: Option<&'static str>,
    /// The Scheduled Events document (an empty list while `None`), or a status.
    pub azure_doc: Option<Result<String, u16>>,
    /// Hold the next Azure answers back this long (the agent times out at 2 s).
    pub azure_stall: Duration,
    pub azure_acks: Vec<serde_json::Value>,
    pub azure_gets: u32,
    pub gcp_preempted: (String, u32),
    pub gcp_maintenance: (String, u32),
    /// Long polls that waited for a change.
    pub gcp_waits: u32,
}

impl Imds {
    pub fn set_preempted(&mut self, value: &str) {
        self.gcp_preempted = (value.to_owned(), self.gcp_preempted.1 + 1);
    }
    pub fn set_maintenance(&mut self, value: &str) {
        self.gcp_maintenance = (value.to_owned(), self.gcp_maintenance.1 + 1);
    }
}

pub type Shared = Arc<Mutex<Imds>>;

async fn token(State(s): State<Shared>, headers: HeaderMap) -> impl IntoResponse {
    if s.lock().unwrap().only.is_some_and(|o| o != "aws") {
        return (StatusCode::NOT_FOUND, String::new());
    }
    let ttl = headers
        .get("x-aws-ec2-metadata-token-ttl-seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if ttl.is_none() {
        return (StatusCode::BAD_REQUEST, String::new());
    }
    let mut s = s.lock().unwrap();
    s.tokens_issued += 1;
    let t = format!("token-{}", s.tokens_issued);
    s.valid.push(t.clone());
    (StatusCode::OK, t)
}

async fn spot(State(s): State<Shared>, headers: HeaderMap) -> impl IntoResponse {
    let mut s = s.lock().unwrap();
    let token = headers
        .get("x-aws-ec2-metadata-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match token {
        None => {
            s.gets_without_token += 1;
            return (StatusCode::UNAUTHORIZED, String::new());
        }
        Some(t) if !s.valid.contains(&t) => return (StatusCode::UNAUTHORIZED, String::new()),
        Some(_) => {}
    }
    match &s.spot {
        None => (StatusCode::NOT_FOUND, String::new()),
        Some(Ok(body)) => (StatusCode::OK, body.clone()),
        Some(Err(code)) => (StatusCode::from_u16(*code).unwrap(), String::new()),
    }
}

fn azure_ok(s: &Imds, headers: &HeaderMap) -> Result<(), (StatusCode, String)> {
    if s.only.is_some_and(|o| o != "azure") {
        return Err((StatusCode::NOT_FOUND, String::new()));
    }
    if headers.get("metadata").and_then(|v| v.to_str().ok()) != Some("true") {
        return Err((
            StatusCode::BAD_REQUEST,
            "Required metadata header not specified".into(),
        ));
    }
    Ok(())
}

async fn azure_events(State(s): State<Shared>, headers: HeaderMap) -> impl IntoResponse {
    let stall = {
        let mut s = s.lock().unwrap();
        if let Err(e) = azure_ok(&s, &headers) {
            return e;
        }
        s.azure_gets += 1;
        s.azure_stall
    };
    tokio::time::sleep(stall).await;
    let s = s.lock().unwrap();
    match &s.azure_doc {
        None => (
            StatusCode::OK,
            r#"{"DocumentIncarnation": 0, "Events": []}"#.to_owned(),
        ),
        Some(Ok(body)) => (StatusCode::OK, body.clone()),
        Some(Err(code)) => (StatusCode::from_u16(*code).unwrap(), String::new()),
    }
}

async fn azure_ack(State(s): State<Shared>, headers: HeaderMap, body: String) -> impl IntoResponse {
    let mut s = s.lock().unwrap();
    if let Err(e) = azure_ok(&s, &headers) {
        return e;
    }
    match serde_json::from_str(&body) {
        Ok(v) => {
            s.azure_acks.push(v);
            (StatusCode::OK, String::new())
        }
        Err(_) => (StatusCode::BAD_REQUEST, String::new()),
    }
}

async fn azure_name(State(s): State<Shared>, headers: HeaderMap) -> impl IntoResponse {
    let s = s.lock().unwrap();
    if let Err(e) = azure_ok(&s, &headers) {
        return e;
    }
    (StatusCode::OK, "vm-azure-1".to_owned())
}

async fn gcp(
    State(s): State<Shared>,
    axum::extract::Path(path): axum::extract::Path<String>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> axum::response::Response {
    let refuse = |code: StatusCode| (code, String::new()).into_response();
    if s.lock().unwrap().only.is_some_and(|o| o != "gcp") {
        return refuse(StatusCode::NOT_FOUND);
    }
    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return refuse(StatusCode::FORBIDDEN);
    }
    let read = |s: &Imds| match path.as_str() {
        "preempted" => Some(s.gcp_preempted.clone()),
        "maintenance-event" => Some(s.gcp_maintenance.clone()),
        "name" => Some(("gce-1".to_owned(), 0)),
        _ => None,
    };
    let Some(mut now) = read(&s.lock().unwrap()) else {
        return refuse(StatusCode::NOT_FOUND);
    };
    if query.get("wait_for_change").map(String::as_str) == Some("true")
        && query.get("last_etag") == Some(&format!("etag-{}", now.1))
    {
        s.lock().unwrap().gcp_waits += 1;
        let timeout: u64 = query
            .get("timeout_sec")
            .and_then(|t| t.parse().ok())
            .unwrap_or(60);
        let until = std::time::Instant::now() + Duration::from_secs(timeout);
        while std::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let next = read(&s.lock().unwrap()).unwrap();
            if next.1 != now.1 {
                now = next;
                break;
            }
        }
    }
    let mut response = (StatusCode::OK, now.0).into_response();
    let h = response.headers_mut();
    h.insert("metadata-flavor", "Google".parse().unwrap());
    h.insert("etag", format!("etag-{}", now.1).parse().unwrap());
    response
}

async fn not_found() -> StatusCode {
    StatusCode::NOT_FOUND
}

pub fn server() -> (Shared, u16) {
    let shared = Shared::default();
    {
        let mut s = shared.lock().unwrap();
        s.gcp_preempted = ("FALSE".into(), 1);
        s.gcp_maintenance = ("NONE".into(), 1);
    }
    let app = axum::Router::new()
        .route("/latest/api/token", axum::routing::put(token))
        .route(
            "/latest/meta-data/spot/instance-action",
            axum::routing::get(spot),
        )
        .route(
            "/metadata/scheduledevents",
            axum::routing::get(azure_events).post(azure_ack),
        )
        .route(
            "/metadata/instance/compute/name",
            axum::routing::get(azure_name),
        )
        .route(
            "/computeMetadata/v1/instance/{*path}",
            axum::routing::get(gcp),
        )
        .fallback(not_found)
        .with_state(shared.clone());
    let port = super::serve_on_thread(app);
    (shared, port)
}
