//! Generated protobuf and gRPC code for `deployd.v1`, plus the encoded
//! descriptor set that server reflection serves.

#[allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]
#[rustfmt::skip]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/deployd.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/deployd.v1.serde.rs"));
}

pub mod codec;

pub use generated::*;

/// The encoded `FileDescriptorSet` of every proto file, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/deployd_descriptor.bin"));
