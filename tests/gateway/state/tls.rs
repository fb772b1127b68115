//! `rediss://`: the store speaks TLS (rustls with the ring provider) to a
//! Redis behind a private CA named by `tls_ca_file`, and refuses a server
//! its trust roots do not vouch for.

use std::time::Duration;

use base64::Engine as _;
use didit_share_gateway::state::{
    Backend, EncryptionKey, Health, ImportId, RedisStore, StateConfig, StateError, StateStore,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

use super::server::RedisServer;
use super::settings;

/// A CA and a `localhost` server certificate signed by it, written to `dir`:
/// (cert, key, ca) paths.
fn certificates(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let paths = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("ca.pem"),
    );
    std::fs::write(&paths.0, cert.pem()).unwrap();
    std::fs::write(&paths.1, key.serialize_pem()).unwrap();
    std::fs::write(&paths.2, ca.pem()).unwrap();
    paths
}

#[tokio::test]
async fn rediss_works_with_a_private_ca_and_fails_closed_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca) = certificates(dir.path());
    let Some(server) = RedisServer::start_tls(cert, key, ca.clone()) else {
        return;
    };
    let key_file = dir.path().join("state-key");
    std::fs::write(
        &key_file,
        base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>()),
    )
    .unwrap();
    let config = StateConfig {
        backend: Backend::Redis,
        redis_url: Some(server.url()),
        encryption_key_file: Some(key_file),
        tls_ca_file: Some(ca),
        ..StateConfig::default()
    };
    let store = StateStore::open(&config, 0).await.unwrap();
    let id = ImportId::new("t", [1; 32]);
    store
        .put_record(
            &id,
            bytes::Bytes::from_static(b"over tls"),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(
        store.get_record(&id).await.unwrap().as_deref(),
        Some(&b"over tls"[..])
    );
    let mut health = store.health();
    tokio::time::timeout(
        Duration::from_secs(10),
        health.wait_for(|h| *h == Health::Available),
    )
    .await
    .unwrap()
    .unwrap();

    // The system's roots do not know this CA: no connection, no data.
    let untrusting = RedisStore::connect(&settings(&server, &EncryptionKey::random()))
        .await
        .unwrap();
    assert!(matches!(
        untrusting.get_record(&id).await,
        Err(StateError::Unavailable(_))
    ));
}
