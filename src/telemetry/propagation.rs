//! Trace context as text: W3C `traceparent`/`tracestate` (message attributes, HTTP headers,
//! the journal) and X-Ray's `AWSTraceHeader` (the SQS system attribute AWS services set),
//! converted to and from the current span's context.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The producer's context from a message: `traceparent` (with `tracestate`) first, else
/// `AWSTraceHeader`. `None` when neither holds a valid one.
pub fn extract(
    traceparent: Option<&str>,
    tracestate: Option<&str>,
    aws_trace_header: Option<&str>,
) -> Option<opentelemetry::Context> {
    if let Some(tp) = traceparent.filter(|tp| well_formed(tp)) {
        let mut carrier = HashMap::new();
        carrier.insert("traceparent".to_owned(), tp.to_owned());
        if let Some(ts) = tracestate {
            carrier.insert("tracestate".to_owned(), ts.to_owned());
        }
        let cx = TraceContextPropagator::new().extract(&carrier);
        if cx.span().span_context().is_valid() {
            return Some(cx);
        }
    }
    let sc = from_xray(aws_trace_header?)?;
    Some(opentelemetry::Context::new().with_remote_span_context(sc))
}

/// `version-trace-span-flags` with W3C's lengths (2, 32, 16, 2 lower-case hex digits): the
/// SDK's parser takes `00-1-2-01` as valid.
fn well_formed(traceparent: &str) -> bool {
    let parts: Vec<&str> = traceparent.trim().split('-').collect();
    parts.len() >= 4
        && [2, 32, 16, 2].iter().zip(&parts).all(|(n, p)| {
            p.len() == *n && p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
}

/// `Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1`: the root's
/// time and id make the 128-bit trace id, `Parent` the span id. Without a parent there is
/// nothing to continue.
pub fn from_xray(header: &str) -> Option<SpanContext> {
    let mut root = None;
    let mut parent = None;
    let mut sampled = true;
    for part in header.split(';') {
        let (k, v) = part.trim().split_once('=')?;
        match k.trim() {
            "Root" => root = Some(v.trim()),
            "Parent" => parent = Some(v.trim()),
            "Sampled" => sampled = v.trim() != "0",
            _ => {}
        }
    }
    let mut pieces = root?.split('-');
    if pieces.next()? != "1" {
        return None;
    }
    let (time, id) = (pieces.next()?, pieces.next()?);
    if time.len() != 8 || id.len() != 24 || pieces.next().is_some() {
        return None;
    }
    let trace = TraceId::from_hex(&format!("{time}{id}")).ok()?;
    let parent = parent.filter(|p| p.len() == 16)?;
    let span = SpanId::from_hex(parent).ok()?;
    let flags = if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let sc = SpanContext::new(trace, span, flags, true, TraceState::default());
    sc.is_valid().then_some(sc)
}

/// `00-<trace>-<span>-<flags>` of `span`, if it is recorded by OpenTelemetry.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

/// The current span's `traceparent`, for what tugboat sends (SNS and SQS attributes, HTTP
/// headers).
pub fn current() -> Option<String> {
    traceparent(&tracing::Span::current())
}

/// A `traceparent`'s span context, for a link to an earlier span.
pub fn span_context(traceparent: &str) -> Option<SpanContext> {
    extract(Some(traceparent), None, None).map(|cx| cx.span().span_context().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w3c_and_xray_contexts_are_read_and_bad_ones_refused() {
        let cx = extract(
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            Some("congo=t61rcWkgMzE"),
            None,
        )
        .unwrap();
        let sc = cx.span().span_context().clone();
        assert_eq!(
            sc.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(sc.span_id().to_string(), "b7ad6b7169203331");
        assert!(sc.is_sampled() && sc.is_remote());
        assert_eq!(sc.trace_state().get("congo"), Some("t61rcWkgMzE"));

        // AWS's documented example header.
        let x = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
        let cx = extract(None, None, Some(x)).unwrap();
        let sc = cx.span().span_context().clone();
        assert_eq!(
            sc.trace_id().to_string(),
            "5759e988bd862e3fe1be46a994272793"
        );
        assert_eq!(sc.span_id().to_string(), "53995c3f42cd8ad8");
        assert!(sc.is_sampled());
        let unsampled = from_xray(&x.replace("Sampled=1", "Sampled=0")).unwrap();
        assert!(!unsampled.is_sampled());
        // A bad traceparent falls back to the X-Ray header.
        assert!(extract(Some("00-zz-yy-01"), None, Some(x)).is_some());
        for bad in [
            "",
            "Root=1-5759e988-bd862e3fe1be46a994272793",
            "Root=2-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8",
            "Root=1-5759e98-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=xyz",
            "Root=1-00000000-000000000000000000000000;Parent=53995c3f42cd8ad8",
            "garbage",
        ] {
            assert!(from_xray(bad).is_none(), "{bad}");
        }
        assert!(extract(Some("00-1-2-01"), None, None).is_none());
        assert!(span_context("nonsense").is_none());
    }
}
