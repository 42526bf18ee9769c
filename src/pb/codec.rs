//! The gRPC codec of every generated service: prost's, with two changes.
//!
//! - A message that cannot be decoded is `INVALID_ARGUMENT`. tonic-prost
//!   answers `INTERNAL`, which tells a caller who sent garbage that the
//!   daemon is broken; the bytes are the caller's, so the fault is too.
//! - A small first buffer. tonic keeps a stream's encode buffer for the
//!   stream's whole life, and its default (8 KiB) made most of what each of
//!   thousands of open watch streams costs; replies that need more grow it.
//!
//! Selected in `build.rs` with `codec_path`.

use std::marker::PhantomData;

use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstDecoder, ProstEncoder};

const BUFFER: usize = 512;
const YIELD_THRESHOLD: usize = 32 * 1024;

/// Generated code builds it with `default()` for each call.
#[derive(Debug, Clone, Copy)]
pub struct ProtoCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ProtoCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for ProtoCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProtoDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(buffer_settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProtoDecoder(ProstDecoder::new(buffer_settings()))
    }
}

fn buffer_settings() -> BufferSettings {
    BufferSettings::new(BUFFER, YIELD_THRESHOLD)
}

#[derive(Debug, Clone)]
pub struct ProtoDecoder<U>(ProstDecoder<U>);

impl<U: prost::Message + Default> Decoder for ProtoDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // The same codec decodes the daemon's answers in the clients, where
        // this code is just as rare; the message says what failed either way.
        self.0.decode(buf).map_err(|status| {
            Status::invalid_argument(format!("cannot decode the message: {}", status.message()))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
