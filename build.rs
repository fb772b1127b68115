//! Compiles `proto/` with a vendored protoc, so a machine with only Rust
//! builds the crate, and writes the descriptor set that gRPC reflection serves.

use std::{env, error::Error, path::PathBuf};

fn main() -> Result<(), Box<dyn Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the env concurrently.
    unsafe { env::set_var("PROTOC", protoc) };
    let include = protoc_bin_vendored::include_path()?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    tonic_prost_build::configure()
        // prost's codec with a small first encode buffer (src/grpc_codec.rs).
        .codec_path("crate::grpc_codec::LeanCodec")
        .file_descriptor_set_path(out_dir.join("didit_share_v1_descriptor.bin"))
        .compile_protos(
            &[PathBuf::from("proto/didit/share/v1/share.proto")],
            &[PathBuf::from("proto"), include],
        )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
