//! The generated `didit.share.v1` protobuf types, clients and servers.
#![allow(clippy::all, missing_docs)]

tonic::include_proto!("didit.share.v1");

/// The encoded descriptor set of `proto/`, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("didit_share_v1_descriptor");
