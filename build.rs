//! Compiles `proto/` with a pure-Rust protobuf compiler (protox), so a build
//! needs no system `protoc`. Emits the tonic/prost code, proto3-JSON serde
//! impls (pbjson, used by the CLI's `--json`) and the encoded descriptor set
//! that server reflection serves.

use std::path::PathBuf;

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/deployd/v1/deployd.proto"];
    println!("cargo:rerun-if-changed=proto");

    let file_descriptors = protox::compile(protos, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_bytes = file_descriptors.encode_to_vec();
    std::fs::write(out_dir.join("deployd_descriptor.bin"), &descriptor_bytes)?;

    tonic_prost_build::configure()
        // Well-known types come from pbjson-types (they carry serde impls), not
        // from prost-types, so the flag that would pin prost-types is on.
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        // See src/pb/codec.rs: undecodable requests are INVALID_ARGUMENT,
        // and what an open stream keeps costs less.
        .codec_path("crate::pb::codec::ProtoCodec")
        .compile_fds(file_descriptors)?;

    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .out_dir(&out_dir)
        .build(&[".deployd.v1"])?;
    Ok(())
}
