//! `didit.share.v1.ImportService` served by hand instead of by the
//! generated `ImportServiceServer`, for one reason: its answer is bytes
//! encoded once, when the import was stored ([`EncodedAnswer`]), and the
//! generated server can only send a prost message, which a replay would
//! have to rebuild from the record and encode again. [`AnswerCodec`]
//! decodes the request with prost and writes the answer's bytes as they
//! are. Callers see the same service, path and bytes (the generated
//! clients decode them), and the layers, limits, health and reflection
//! around it are unchanged.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

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
        Box::pin(async move { Ok(grpc.unary(method, req).await) })
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
    type Response = EncodedAnswer;
    type Future = BoxFuture<Response<EncodedAnswer>, Status>;

    fn call(&mut self, request: Request<ImportSharedSessionRequest>) -> Self::Future {
        let api = Arc::clone(&self.0);
        Box::pin(async move { api.import_shared_session(request).await })
    }
}

/// Requests decoded by prost, answers written as the bytes they are.
#[derive(Clone, Copy, Debug, Default)]
pub struct AnswerCodec;

impl Codec for AnswerCodec {
    type Encode = EncodedAnswer;
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

/// Writes an [`EncodedAnswer`]: a copy of its bytes and the flags.
#[derive(Clone, Copy, Debug, Default)]
pub struct AnswerEncoder;

impl Encoder for AnswerEncoder {
    type Item = EncodedAnswer;
    type Error = Status;

    fn encode(&mut self, item: EncodedAnswer, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        // The buffer starts empty (below), so this is its one allocation,
        // of the answer's size, held until the answer is sent.
        buf.reserve(item.encoded_len());
        item.write(buf);
        Ok(())
    }

    /// No first buffer: tonic's 8 KiB one was outgrown by every import
    /// answer (8.2 KB for a KYC session) and replaced by a 16 KiB one, held
    /// while the answer waits to be sent: 4 MiB at 256 replays in flight.
    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::new(0, crate::grpc_codec::YIELD_THRESHOLD)
    }
}
