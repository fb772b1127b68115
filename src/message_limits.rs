//! Limit errors a client can act on: tonic answers a request message over
//! the decoding limit with OUT_OF_RANGE (hard-coded in its codec); the gRPC
//! convention for "too large" is RESOURCE_EXHAUSTED, which this tower layer
//! makes it, with a message naming the limit.
//!
//! Metadata over the HTTP/2 header list limit (16 KiB, set on the server
//! builder in [`crate::grpc`]) never reaches a service: h2 answers HTTP 431
//! itself, which gRPC clients report as their own status for a non-gRPC
//! answer (tonic: UNKNOWN, "grpc-status header missing, mapped from HTTP status
//! code 431"; see `docs/security.md`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::HeaderValue;

use crate::audit_edge::EdgeCall;
use crate::service::AppState;

/// What tonic's codec says when a request message is over the limit, as
/// it is on the wire (grpc-message is percent-encoded, spaces included).
const TOO_LARGE_PREFIX: &[u8] = b"Error,%20decoded%20message%20length%20too%20large";

/// The tower layer of [`OversizedAsExhausted`].
#[derive(Clone)]
pub struct OversizedLayer {
    /// The decoding limit, named in the message.
    pub max_request_bytes: usize,
    /// For the audit event of a call refused as oversized.
    pub state: Arc<AppState>,
}

impl<S> tower::Layer<S> for OversizedLayer {
    type Service = OversizedAsExhausted<S>;
    fn layer(&self, inner: S) -> Self::Service {
        OversizedAsExhausted {
            inner,
            max_request_bytes: self.max_request_bytes,
            state: Arc::clone(&self.state),
        }
    }
}

/// Rewrites tonic's OUT_OF_RANGE for an oversized request message into
/// RESOURCE_EXHAUSTED; every other answer passes unchanged.
#[derive(Clone)]
pub struct OversizedAsExhausted<S> {
    inner: S,
    max_request_bytes: usize,
    state: Arc<AppState>,
}

type HttpResponse = http::Response<tonic::body::Body>;

impl<S, B> tower::Service<http::Request<B>> for OversizedAsExhausted<S>
where
    S: tower::Service<http::Request<B>, Response = HttpResponse> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<HttpResponse, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let edge = EdgeCall::of(&request, &self.state);
        let call = self.inner.call(request);
        let limit = self.max_request_bytes;
        Box::pin(async move {
            let mut response = call.await?;
            // A trailers-only answer carries the status in its headers;
            // a unary call's decode error comes in the trailers.
            rewrite(response.headers_mut(), limit);
            Ok(response.map(|inner| tonic::body::Body::new(Trailers { inner, limit, edge })))
        })
    }
}

/// A response body whose trailers go through [`rewrite`].
struct Trailers {
    inner: tonic::body::Body,
    limit: usize,
    /// The call, audited here when the decoder refused it (it never
    /// reached `run_call`).
    edge: Option<EdgeCall>,
}

impl http_body::Body for Trailers {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let limit = self.limit;
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = polled {
            let mut frame = frame;
            if let Some(trailers) = frame.trailers_mut()
                && rewrite(trailers, limit)
                && let Some(edge) = self.edge.take()
            {
                edge.emit(tonic::Code::ResourceExhausted, String::new());
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The rewrite on an answer's headers or trailers; true if it applied.
fn rewrite(headers: &mut http::HeaderMap, limit: usize) -> bool {
    let oversized = headers.get("grpc-status").map(HeaderValue::as_bytes) == Some(b"11")
        && headers
            .get("grpc-message")
            .is_some_and(|m| m.as_bytes().starts_with(TOO_LARGE_PREFIX));
    if !oversized {
        return false;
    }
    headers.insert("grpc-status", HeaderValue::from_static("8"));
    // grpc-message is percent-encoded.
    if let Ok(message) = HeaderValue::try_from(format!(
        "request%20message%20too%20large:%20the%20limit%20is%20{limit}%20bytes"
    )) {
        headers.insert("grpc-message", message);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_codecs_oversize_error_is_rewritten() {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-status", HeaderValue::from_static("11"));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static(
                "Error,%20decoded%20message%20length%20too%20large:%20found%209%20bytes",
            ),
        );
        assert!(rewrite(&mut headers, 8));
        assert_eq!(headers["grpc-status"], "8");
        assert_eq!(
            headers["grpc-message"],
            "request%20message%20too%20large:%20the%20limit%20is%208%20bytes"
        );
        // Another OUT_OF_RANGE (e.g. an expired event cursor) is kept.
        let mut other = http::HeaderMap::new();
        other.insert("grpc-status", HeaderValue::from_static("11"));
        other.insert("grpc-message", HeaderValue::from_static("cursor expired"));
        assert!(!rewrite(&mut other, 8));
        assert_eq!(other["grpc-status"], "11");
    }
}
