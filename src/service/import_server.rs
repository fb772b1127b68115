//! `didit.share.v1.ImportService` served by hand instead of by the
//! generated `ImportServiceServer`, for one reason: its answer is bytes
//! encoded once, when the import was stored ([`EncodedAnswer`]), and the
//! generated server can only send a prost message, which a replay would
//! have to rebuild from the record and encode again.
//!
//! tonic's `Grpc::unary` still does everything but the answer's body:
//! decoding the request ([`AnswerCodec`], prost, with the size limit),
//! metadata, and every error. The method hands the answer over in the
//! response's extensions and tonic encodes nothing ([`Deferred`]); the
//! server then sends the body itself ([`AnswerBody`]): the gRPC message
//! prefix, the stored bytes themselves (shared with the replay record, not
//! copied), the flags, and the OK trailers. Callers see the same service,
//! path and bytes (the generated clients decode them), and the layers,
//! limits, health and reflection around it are unchanged.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use tonic::body::Body as TonicBody;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic::codegen::{BoxFuture, Service, StdError, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};
use tonic_prost::ProstDecoder;

use super::{EncodedAnswer, ImportApi};
use crate::proto::ImportSharedSessionRequest;

/// The service's gRPC name.
const SERVICE_NAME: &str = "didit.share.v1.ImportService";
/// The one method's path.
const IMPORT_PATH: &str = "/didit.share.v1.ImportService/ImportSharedSession";

/// The ImportService server over an [`ImportApi`], with the generated
/// server's message size settings.
#[derive(Clone)]
pub struct ImportServer {
    /// The handler.
    api: Arc<ImportApi>,
    /// Largest request accepted (tonic's default, 4 MiB, when unset).
    max_decoding_message_size: Option<usize>,
    /// Largest answer sent (unbounded when unset).
    max_encoding_message_size: Option<usize>,
}

impl ImportServer {
    /// Serves `api`.
    pub fn new(api: ImportApi) -> Self {
        Self {
            api: Arc::new(api),
            max_decoding_message_size: None,
            max_encoding_message_size: None,
        }
    }

    /// Limits the size of a decoded request.
    #[must_use]
    pub fn max_decoding_message_size(mut self, limit: usize) -> Self {
        self.max_decoding_message_size = Some(limit);
        self
    }

    /// Limits the size of an encoded answer.
    #[must_use]
    pub fn max_encoding_message_size(mut self, limit: usize) -> Self {
        self.max_encoding_message_size = Some(limit);
        self
    }
}

impl NamedService for ImportServer {
    const NAME: &'static str = SERVICE_NAME;
}

impl<B> Service<http::Request<B>> for ImportServer
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<TonicBody>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != IMPORT_PATH {
            return Box::pin(async { Ok(unimplemented()) });
        }
        let method = ImportMethod(Arc::clone(&self.api));
        let mut grpc = Grpc::new(AnswerCodec).apply_max_message_size_config(
            self.max_decoding_message_size,
            self.max_encoding_message_size,
        );
        let limit = self.max_encoding_message_size;
        Box::pin(async move {
            let mut response = grpc.unary(method, req).await;
            // An error (or anything but an answer) is tonic's response as is.
            let Some(answer) = response.extensions_mut().remove::<EncodedAnswer>() else {
                return Ok(response);
            };
            let (parts, _nothing) = response.into_parts();
            Ok(http::Response::from_parts(
                parts,
                TonicBody::new(AnswerBody::new(&answer, limit)),
            ))
        })
    }
}

/// An unknown method of this service: UNIMPLEMENTED, as tonic answers.
fn unimplemented() -> http::Response<TonicBody> {
    let mut response = http::Response::new(TonicBody::default());
    let headers = response.headers_mut();
    headers.insert(
        Status::GRPC_STATUS,
        http::HeaderValue::from(tonic::Code::Unimplemented as i32),
    );
    headers.insert(
        http::header::CONTENT_TYPE,
        tonic::metadata::GRPC_CONTENT_TYPE,
    );
    response
}

/// `ImportSharedSession` as a tonic unary service.
struct ImportMethod(Arc<ImportApi>);

impl UnaryService<ImportSharedSessionRequest> for ImportMethod {
    type Response = Deferred;
    type Future = BoxFuture<Response<Deferred>, Status>;

    fn call(&mut self, request: Request<ImportSharedSessionRequest>) -> Self::Future {
        let api = Arc::clone(&self.0);
        Box::pin(async move {
            let (metadata, answer, mut extensions) =
                api.import_shared_session(request).await?.into_parts();
            extensions.insert(answer);
            Ok(Response::from_parts(metadata, Deferred, extensions))
        })
    }
}

/// What the method gives tonic to encode: nothing. The answer is in the
/// response's extensions, and [`ImportServer`] sends it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Deferred;

/// Requests decoded by prost; the answer is not encoded here.
#[derive(Clone, Copy, Debug, Default)]
pub struct AnswerCodec;

impl Codec for AnswerCodec {
    type Encode = Deferred;
    type Decode = ImportSharedSessionRequest;
    type Encoder = AnswerEncoder;
    type Decoder = ProstDecoder<ImportSharedSessionRequest>;

    fn encoder(&mut self) -> Self::Encoder {
        AnswerEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(BufferSettings::default())
    }
}

/// Encodes [`Deferred`]: nothing, with no buffer (the body tonic builds
/// with it is dropped unsent).
#[derive(Clone, Copy, Debug, Default)]
pub struct AnswerEncoder;

impl Encoder for AnswerEncoder {
    type Item = Deferred;
    type Error = Status;

    fn encode(&mut self, _: Deferred, _: &mut EncodeBuf<'_>) -> Result<(), Status> {
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::new(0, crate::grpc_codec::YIELD_THRESHOLD)
    }
}

/// An answer's response body: the gRPC message prefix (uncompressed,
/// length), the stored bytes, the flags, then `grpc-status: 0`; or, for an
/// answer over the size limit, tonic's error for it in the trailers.
struct AnswerBody {
    /// What is left to send, in order; empty chunks are skipped.
    data: std::array::IntoIter<Bytes, 3>,
    trailers: Option<http::HeaderMap>,
}

impl AnswerBody {
    fn new(answer: &EncodedAnswer, limit: Option<usize>) -> Self {
        let len = answer.encoded_len();
        // The prefix holds a u32, so that is a limit too.
        let limit = limit.map_or(u32::MAX as usize, |limit| limit.min(u32::MAX as usize));
        let prefix_len = match u32::try_from(len) {
            Ok(prefix_len) if len <= limit => prefix_len,
            _ => return Self::too_large(len, limit),
        };
        let mut prefix = [0u8; 5];
        prefix[1..].copy_from_slice(&prefix_len.to_be_bytes());
        let mut trailers = http::HeaderMap::with_capacity(1);
        trailers.insert(
            Status::GRPC_STATUS,
            http::HeaderValue::from(tonic::Code::Ok as i32),
        );
        Self {
            data: [
                Bytes::copy_from_slice(&prefix),
                answer.stored(),
                Bytes::from_static(answer.flags()),
            ]
            .into_iter(),
            trailers: Some(trailers),
        }
    }

    /// No data, and in the trailers the error tonic's encoder gives an
    /// answer over the limit, in its words (what the generated server
    /// would answer).
    fn too_large(len: usize, limit: usize) -> Self {
        let status = Status::out_of_range(format!(
            "Error, encoded message length too large: found {len} bytes, the limit is: {limit} bytes"
        ));
        let mut trailers = http::HeaderMap::new();
        // Only a status whose message cannot be a header fails here, and
        // this one's can.
        let _ = status.add_header(&mut trailers);
        Self {
            data: [Bytes::new(), Bytes::new(), Bytes::new()].into_iter(),
            trailers: Some(trailers),
        }
    }
}

impl http_body::Body for AnswerBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if let Some(chunk) = this.data.find(|chunk| !chunk.is_empty()) {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.trailers.is_none() && self.data.as_slice().iter().all(Bytes::is_empty)
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_slice().iter().map(|c| c.len() as u64).sum())
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use http_body::Body as _;
    use prost::Message as _;

    use super::*;
    use crate::proto::ImportSharedSessionResponse;

    /// The body's data, joined, and its trailers.
    async fn collect(mut body: AnswerBody) -> (Vec<u8>, http::HeaderMap) {
        let (mut data, mut trailers) = (Vec::new(), http::HeaderMap::new());
        while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            let frame = frame.unwrap();
            if let Some(chunk) = frame.data_ref() {
                data.extend_from_slice(chunk);
            } else if let Ok(t) = frame.into_trailers() {
                trailers = t;
            }
        }
        assert!(body.is_end_stream());
        (data, trailers)
    }

    fn stored() -> Bytes {
        let response = ImportSharedSessionResponse {
            session_id: "s-1".into(),
            raw_json: b"{}".to_vec(),
            ..Default::default()
        };
        Bytes::from(response.encode_to_vec())
    }

    #[tokio::test]
    async fn the_body_is_one_grpc_message_then_the_ok_trailers() {
        for (replayed, recovered) in [(false, false), (true, false), (true, true)] {
            let answer = EncodedAnswer::new(stored(), replayed, recovered);
            let body = AnswerBody::new(&answer, Some(1024));
            assert_eq!(
                body.size_hint().exact(),
                Some(5 + answer.encoded_len() as u64)
            );
            let (data, trailers) = collect(body).await;
            assert_eq!(data[0], 0, "uncompressed");
            let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
            assert_eq!(len, data.len() - 5);
            assert_eq!(data[5..], answer.to_vec()[..]);
            let decoded = ImportSharedSessionResponse::decode(&data[5..]).unwrap();
            assert_eq!((decoded.replayed, decoded.recovered), (replayed, recovered));
            assert_eq!(trailers.get("grpc-status").unwrap(), "0");
        }
    }

    #[tokio::test]
    async fn an_answer_over_the_limit_is_tonics_out_of_range_with_no_data() {
        let answer = EncodedAnswer::new(stored(), true, false);
        let (data, trailers) = collect(AnswerBody::new(&answer, Some(4))).await;
        assert!(data.is_empty());
        let status = Status::from_header_map(&trailers).unwrap();
        assert_eq!(status.code(), tonic::Code::OutOfRange);
        assert!(
            status
                .message()
                .starts_with("Error, encoded message length too large"),
            "{}",
            status.message()
        );
    }
}
