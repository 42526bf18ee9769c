//! The gRPC codec of every generated service: prost's, except that a
//! message that cannot be decoded is `INVALID_ARGUMENT`. tonic-prost answers
//! `INTERNAL`, which tells a caller who sent garbage that the daemon is
//! broken; the bytes are the caller's, so the fault is too. Selected in
//! `build.rs` with `codec_path`.

use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Generated code builds it with `default()` for each call.
#[derive(Debug, Clone, Default)]
pub struct ProtoCodec<T, U> {
    inner: ProstCodec<T, U>,
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
        self.inner.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProtoDecoder(self.inner.decoder())
    }
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
