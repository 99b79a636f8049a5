//! Traces through OpenTelemetry: the producer's trace continued through the message, the
//! workflow instance, its step attempts and the AWS calls they make, exported over OTLP/HTTP
//! (protobuf) from the SDK's own batch thread.
//!
//! Configuration is OpenTelemetry's own environment (`OTEL_EXPORTER_OTLP_ENDPOINT`,
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_EXPORTER_OTLP_PROTOCOL`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`, `OTEL_SDK_DISABLED`), or a `[telemetry]` section
//! for what the environment leaves unset. Neither: no exporter, spans cost next to nothing.
//!
//! Spans are `tracing` spans; [`init`] installs the process's subscriber once, at start: log
//! lines on stderr ([`logs`]) and, when traces are wanted, the layer that turns this crate's
//! spans into OpenTelemetry spans. Context crosses the places
//! where `tracing` cannot follow (the message's attributes, the journal, actor mailboxes) as
//! W3C `traceparent` text ([`propagation`]).

pub mod logs;
pub mod propagation;

use std::collections::BTreeMap;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::Deserialize;

/// `[telemetry]`: where traces go when the `OTEL_*` environment does not say.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// The collector's OTLP/HTTP base URL, e.g. `http://127.0.0.1:4318` (`/v1/traces` is
    /// added). `OTEL_EXPORTER_OTLP_ENDPOINT` wins over it.
    pub endpoint: String,
    /// Only `http/protobuf` is built in.
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// Default `tugboat`; `OTEL_SERVICE_NAME` wins over it.
    #[serde(default)]
    pub service_name: Option<String>,
    /// The share of new traces kept, 0.0 to 1.0 (a producer's sampling decision is followed).
    /// Default 1.0; `OTEL_TRACES_SAMPLER` wins over it.
    #[serde(default)]
    pub sample_ratio: Option<f64>,
    /// Extra request headers (an API key). Never logged.
    #[serde(default)]
    pub headers: BTreeMap<String, secrecy::SecretString>,
    /// The longest one export may take; also the longest the flush at shutdown waits. Keep it
    /// inside the shutdown deadline. Default 5 s.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_protocol() -> String {
    "http/protobuf".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

impl TelemetrySettings {
    /// Refuses what cannot work, naming the key.
    pub fn check(&self) -> Result<(), String> {
        if !self.endpoint.starts_with("http://") && !self.endpoint.starts_with("https://") {
            return Err(format!(
                "telemetry.endpoint: must be an http(s) URL, got {:?}",
                self.endpoint
            ));
        }
        check_protocol(&self.protocol).map_err(|e| format!("telemetry.protocol: {e}"))?;
        if let Some(r) = self.sample_ratio
            && !(0.0..=1.0).contains(&r)
        {
            return Err("telemetry.sample_ratio: must be between 0.0 and 1.0".into());
        }
        Ok(())
    }
}

fn check_protocol(p: &str) -> Result<(), String> {
    match p {
        "http/protobuf" => Ok(()),
        "grpc" | "http/json" => Err(format!(
            "{p:?} is not built in; use \"http/protobuf\" (the collector's port 4318)"
        )),
        other => Err(format!("{other:?} is not an OTLP protocol")),
    }
}

/// The exporter, while it runs.
pub struct Telemetry {
    provider: SdkTracerProvider,
    flush_within: Duration,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Whether the environment or `settings` ask for traces.
pub fn wanted(settings: Option<&TelemetrySettings>) -> bool {
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || env("OTEL_TRACES_EXPORTER").is_some_and(|v| v == "none")
    {
        return false;
    }
    settings.is_some()
        || env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
        || env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
}

/// Installs the process's `tracing` subscriber: log lines on stderr (JSON lines or text, see
/// [`logs`]) filtered by `RUST_LOG` (default `info`), and, if the environment or `settings`
/// ask for traces, the OpenTelemetry layer and its exporter (the guard returned). Call it
/// outside an async runtime (the exporter's blocking HTTP client has one of its own). A
/// second call (tests) leaves the first subscriber in place.
pub fn init(
    json: bool,
    settings: Option<&TelemetrySettings>,
    traced: bool,
) -> Result<Option<Telemetry>, String> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let wanted = traced && wanted(settings);
    let (telemetry, tracer) = match if wanted { exporter(settings)? } else { None } {
        Some((t, tracer)) => (Some(t), Some(tracer)),
        None => (None, None),
    };
    // Spans of this crate only: the SDK's own would be noise, and the exporter's HTTP client
    // must not trace itself.
    let spans =
        tracing_subscriber::filter::Targets::new().with_target("tugboat", tracing::Level::INFO);
    let otel = tracer.map(|t| {
        tracing_opentelemetry::layer()
            .with_tracer(t)
            .with_filter(spans)
    });
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    let registry = tracing_subscriber::registry().with(otel);
    let _ = if json {
        registry
            .with(logs::JsonLines::default().with_filter(filter()))
            .try_init()
    } else {
        use std::io::IsTerminal;
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_filter(filter()),
            )
            .try_init()
    };
    if telemetry.is_some() {
        tracing::info!("exporting traces over OTLP/HTTP");
    }
    Ok(telemetry)
}

/// The exporter and a tracer over it, if the environment or `settings` ask for traces.
fn exporter(
    settings: Option<&TelemetrySettings>,
) -> Result<Option<(Telemetry, opentelemetry_sdk::trace::Tracer)>, String> {
    if let Some(s) = settings {
        s.check()?;
    }
    let protocol = env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .or_else(|| settings.map(|s| s.protocol.clone()))
        .unwrap_or_else(default_protocol);
    check_protocol(&protocol).map_err(|e| format!("OTLP protocol: {e}"))?;
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary);
    let from_env = env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
        || env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some();
    if let Some(s) = settings {
        if !from_env {
            exporter =
                exporter.with_endpoint(format!("{}/v1/traces", s.endpoint.trim_end_matches('/')));
        }
        if env("OTEL_EXPORTER_OTLP_TIMEOUT").is_none() {
            exporter = exporter.with_timeout(s.timeout);
        }
        if !s.headers.is_empty() {
            use secrecy::ExposeSecret;
            exporter = exporter.with_headers(
                s.headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.expose_secret().to_owned()))
                    .collect(),
            );
        }
    }
    let exporter = Watched(
        exporter
            .build()
            .map_err(|e| format!("the OTLP exporter: {e}"))?,
    );
    let mut resource = opentelemetry_sdk::Resource::builder();
    if env("OTEL_SERVICE_NAME").is_none() {
        let name = settings
            .and_then(|s| s.service_name.clone())
            .unwrap_or_else(|| "tugboat".into());
        resource = resource.with_service_name(name);
    }
    resource = resource.with_attribute(opentelemetry::KeyValue::new(
        "service.version",
        env!("CARGO_PKG_VERSION"),
    ));
    let mut provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build());
    if env("OTEL_TRACES_SAMPLER").is_none()
        && let Some(ratio) = settings.and_then(|s| s.sample_ratio)
    {
        use opentelemetry_sdk::trace::Sampler;
        provider = provider.with_sampler(Sampler::ParentBased(Box::new(
            Sampler::TraceIdRatioBased(ratio),
        )));
    }
    let provider = provider.build();
    let tracer = provider.tracer("tugboat");
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let flush_within = settings.map_or_else(default_timeout, |s| s.timeout);
    Ok(Some((
        Telemetry {
            provider,
            flush_within,
        },
        tracer,
    )))
}

impl Telemetry {
    /// Sends what is buffered and stops, within `[telemetry] timeout` (5 s by default).
    /// Blocking: call it outside the async runtime, once the work has stopped.
    pub fn shutdown(self) {
        match self.provider.shutdown_with_timeout(self.flush_within) {
            Ok(()) => tracing::info!("traces flushed"),
            Err(e) => tracing::warn!(error = %e, "flushing traces at shutdown"),
        }
    }
}

/// How the exporter has been doing: `/readyz` reports it wedged when exports have failed for
/// longer than [`WEDGED_AFTER`] without one getting through.
static FAILING_SINCE_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static LAST_ERROR: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// Failing exports for this long make the service not ready.
pub const WEDGED_AFTER: Duration = Duration::from_secs(60);

/// Why the exporter counts as wedged, if it does.
pub fn exporter_wedged() -> Option<String> {
    use std::sync::atomic::Ordering;
    let since = FAILING_SINCE_MS.load(Ordering::Relaxed);
    let failing_for = crate::journal::now_ms().saturating_sub(since);
    (since != 0 && failing_for >= WEDGED_AFTER.as_millis() as u64).then(|| {
        let last = LAST_ERROR.lock().map(|e| e.clone()).unwrap_or_default();
        format!(
            "trace exports have failed for {} s: {last}",
            failing_for / 1000
        )
    })
}

/// The OTLP exporter, its results noted for [`exporter_wedged`].
#[derive(Debug)]
struct Watched<E>(E);

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter
    for Watched<E>
{
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        use std::sync::atomic::Ordering;
        let result = self.0.export(batch).await;
        match &result {
            Ok(()) => FAILING_SINCE_MS.store(0, Ordering::Relaxed),
            Err(e) => {
                let _ = FAILING_SINCE_MS.compare_exchange(
                    0,
                    crate::journal::now_ms(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                if let Ok(mut last) = LAST_ERROR.lock() {
                    *last = e.to_string();
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.0.set_resource(resource);
    }
}
