//! gRPC server reflection, v1 and v1alpha: `grpcurl` and friends list both
//! services and fetch their descriptors without a copy of the proto.

use crate::env::TestEnv;
use prost::Message as _;

/// The services every reflection version must list.
const EXPECTED: [&str; 3] = [
    "didit.share.v1.ShareService",
    "didit.share.v1.ImportService",
    "grpc.health.v1.Health",
];

/// Asks one reflection version for the service list and for the file that
/// declares `ShareService`; returns (service names, file names).
macro_rules! reflect {
    ($version:ident, $channel:expr) => {{
        use tonic_reflection::pb::$version::ServerReflectionRequest;
        use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;

        let requests = vec![
            ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            },
            ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::FileContainingSymbol(
                    "didit.share.v1.ShareService".into(),
                )),
            },
        ];
        let mut answers = ServerReflectionClient::new($channel)
            .server_reflection_info(tokio_stream::iter(requests))
            .await
            .unwrap()
            .into_inner();
        let mut services = Vec::new();
        let mut files = Vec::new();
        while let Some(answer) = answers.message().await.unwrap() {
            match answer.message_response.expect("a response") {
                MessageResponse::ListServicesResponse(list) => {
                    services.extend(list.service.into_iter().map(|s| s.name));
                }
                MessageResponse::FileDescriptorResponse(found) => {
                    for bytes in found.file_descriptor_proto {
                        let file = prost_types::FileDescriptorProto::decode(bytes.as_slice())
                            .expect("a FileDescriptorProto");
                        files.push((file.name().to_owned(), file.service.len()));
                    }
                }
                other => panic!("unexpected reflection answer {other:?}"),
            }
        }
        (services, files)
    }};
}

/// Our services, health and `reflection` are listed, and share.proto is
/// served with its three services (SessionService is declared there too).
fn assert_listed(services: &[String], files: &[(String, usize)], reflection: &str) {
    for name in EXPECTED.iter().copied().chain([reflection]) {
        assert!(services.iter().any(|s| s == name), "{name} in {services:?}");
    }
    assert!(
        files
            .iter()
            .any(|(name, n)| name.ends_with("share.proto") && *n == 3),
        "share.proto with its three services in {files:?}"
    );
}

#[tokio::test]
async fn reflection_v1_lists_both_services_and_serves_their_descriptor() {
    let env = TestEnv::start(Default::default()).await;
    let (services, files) = reflect!(v1, env.channel.clone());
    assert_listed(&services, &files, "grpc.reflection.v1.ServerReflection");
    env.stop().await;
}

#[tokio::test]
async fn reflection_v1alpha_lists_both_services_and_serves_their_descriptor() {
    let env = TestEnv::start(Default::default()).await;
    let (services, files) = reflect!(v1alpha, env.channel.clone());
    assert_listed(
        &services,
        &files,
        "grpc.reflection.v1alpha.ServerReflection",
    );
    env.stop().await;
}
