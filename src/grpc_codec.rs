//! The protobuf codec of the generated services and clients: prost's, with
//! a small first encode buffer. tonic allocates that buffer when a response
//! starts (8 KiB by default) and keeps it for the response's life, which
//! for a `WatchSessionEvents` stream is as long as the watcher stays
//! connected; most answers are far smaller, and the buffer grows when one
//! is not. The decode side keeps tonic's defaults.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// The first size of a response's encode buffer.
const ENCODE_BUFFER: usize = 512;
/// tonic's default: encoded bytes after which a stream yields to the runtime.
pub const YIELD_THRESHOLD: usize = 32 * 1024;

/// prost's codec with a [`ENCODE_BUFFER`]-byte first encode buffer.
#[derive(Debug, Clone)]
pub struct LeanCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for LeanCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for LeanCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::new(ENCODE_BUFFER, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(BufferSettings::default())
    }
}
