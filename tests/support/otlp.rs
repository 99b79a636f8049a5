//! An OTLP/HTTP trace receiver of the tests' own on 127.0.0.1: `POST /v1/traces` with a
//! protobuf `ExportTraceServiceRequest`, decoded with the OpenTelemetry proto definitions
//! (`opentelemetry-proto`), its spans kept for the test to read.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use prost::Message;

/// One received span, its ids in hex.
#[derive(Debug, Clone)]
pub struct Span {
    pub service: String,
    pub trace: String,
    pub id: String,
    /// Empty for a root span.
    pub parent: String,
    pub name: String,
    /// 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
    pub kind: i32,
    pub attributes: BTreeMap<String, String>,
    /// (trace, span) of each link.
    pub links: Vec<(String, String)>,
    /// 2 is an error.
    pub status: i32,
}

impl Span {
    pub fn attr(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }
}

pub type Received = Arc<Mutex<Vec<Span>>>;

async fn traces(State(spans): State<Received>, body: Bytes) -> StatusCode {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut out = spans.lock().unwrap();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref())
            .map(|v| text(&v.value))
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for s in scope.spans {
                out.push(Span {
                    service: service.clone(),
                    trace: hex::encode(&s.trace_id),
                    id: hex::encode(&s.span_id),
                    parent: hex::encode(&s.parent_span_id),
                    name: s.name,
                    kind: s.kind,
                    attributes: s
                        .attributes
                        .iter()
                        .map(|kv| {
                            (
                                kv.key.clone(),
                                kv.value
                                    .as_ref()
                                    .map(|v| text(&v.value))
                                    .unwrap_or_default(),
                            )
                        })
                        .collect(),
                    links: s
                        .links
                        .iter()
                        .map(|l| (hex::encode(&l.trace_id), hex::encode(&l.span_id)))
                        .collect(),
                    status: s.status.map_or(0, |st| st.code),
                });
            }
        }
    }
    StatusCode::OK
}

fn text(v: &Option<Any>) -> String {
    match v {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// The receiver, serving until the test binary ends; its base URL (for
/// `OTEL_EXPORTER_OTLP_ENDPOINT`).
pub fn receiver() -> (Received, String) {
    let received = Received::default();
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(traces))
        .with_state(received.clone());
    let port = super::serve_on_thread(app);
    (received, format!("http://127.0.0.1:{port}"))
}
