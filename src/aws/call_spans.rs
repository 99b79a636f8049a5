//! A span for every AWS call made inside a traced piece of work: one interceptor on every SDK
//! client, opening a client span (`rpc.system` `aws-api`, service, method) as a child of the
//! current span when the call starts and recording the request id and any error when it
//! ends. Calls outside any span (the intake's long polls) stay untraced: they would each be
//! a trace of their own.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};

#[derive(Debug, Clone, Copy, Default)]
pub struct CallSpans;

/// The call's span, kept in the call's config bag; it ends when the call's bag is dropped.
#[derive(Debug, Clone)]
struct CallSpan(tracing::Span);

impl Storable for CallSpan {
    type Storer = StoreReplace<Self>;
}

impl Intercept for CallSpans {
    fn name(&self) -> &'static str {
        "tugboat-call-spans"
    }

    // Not `read_before_execution`: a client's interceptors see that before the operation's
    // configuration (its service and method names) is in the bag.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let parent = tracing::Span::current();
        if parent.is_none() {
            return Ok(());
        }
        let (service, method) = cfg
            .load::<Metadata>()
            .map(|m| (m.service().to_owned(), m.name().to_owned()))
            .unwrap_or_default();
        let span = tracing::info_span!(
            parent: &parent,
            "aws call",
            otel.name = format!("{service}/{method}"),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            rpc.system = "aws-api",
            rpc.service = service,
            rpc.method = method,
            aws.request_id = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
            error.message = tracing::field::Empty,
        );
        cfg.interceptor_state().store_put(CallSpan(span));
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(CallSpan(span)) = cfg.load::<CallSpan>().cloned() else {
            return Ok(());
        };
        if let Some(response) = context.response() {
            let headers = response.headers();
            if let Some(id) = headers
                .get("x-amzn-requestid")
                .or_else(|| headers.get("x-amz-request-id"))
            {
                span.record("aws.request_id", id);
            }
            span.record(
                "http.response.status_code",
                response.status().as_u16() as i64,
            );
        }
        if let Some(Err(e)) = context.output_or_error() {
            span.record("otel.status_code", "ERROR");
            span.record("error.message", tracing::field::display(e));
        }
        Ok(())
    }
}
