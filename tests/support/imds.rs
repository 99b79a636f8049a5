//! A metadata server of the tests' own on 127.0.0.1, as IMDSv2 behaves: a token is required
//! (PUT `/latest/api/token` with a TTL header), `spot/instance-action` is 404 until a notice
//! is set, and a status can be scripted instead.

use std::sync::{Arc, Mutex};

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
}

pub type Shared = Arc<Mutex<Imds>>;

async fn token(State(s): State<Shared>, headers: HeaderMap) -> impl IntoResponse {
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

async fn not_found() -> StatusCode {
    StatusCode::NOT_FOUND
}

pub fn server() -> (Shared, u16) {
    let shared = Shared::default();
    let app = axum::Router::new()
        .route("/latest/api/token", axum::routing::put(token))
        .route(
            "/latest/meta-data/spot/instance-action",
            axum::routing::get(spot),
        )
        .fallback(not_found)
        .with_state(shared.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (shared, port)
}
