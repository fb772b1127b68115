//! `[auth]`: how callers are identified (see [`crate::auth`]).
//!
//! There is deliberately no `Default`: a file without `[auth]` is refused,
//! so that "any caller may act for any tenant" is always a written choice.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::FieldError;
use crate::auth::AuthPolicy;

/// The `[auth]` section: the caller policy, and in mtls mode the server's
/// TLS files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthConfig {
    /// No caller identity; any caller may use any tenant. Chosen explicitly.
    None,
    /// A mesh sidecar terminates mTLS and sets `x-forwarded-client-cert`.
    Mesh {
        /// The sidecar's own identity, required in the XFCC `By=` when set.
        trusted_proxy_identity: Option<String>,
    },
    /// The gateway terminates TLS and requires client certificates.
    Mtls {
        /// PEM certificate chain the gateway presents.
        server_cert_file: PathBuf,
        /// PEM private key of that certificate.
        server_key_file: PathBuf,
        /// PEM CA bundle client certificates must chain to.
        client_ca_file: PathBuf,
    },
}

impl AuthConfig {
    /// The mode's name as written in the file.
    pub fn mode(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Mesh { .. } => "mesh",
            Self::Mtls { .. } => "mtls",
        }
    }

    /// Whether the gateway terminates TLS (a switch to or from it needs a
    /// restart).
    pub fn is_mtls(&self) -> bool {
        matches!(self, Self::Mtls { .. })
    }

    /// The caller policy every call is checked against.
    pub fn policy(&self) -> AuthPolicy {
        match self {
            Self::None => AuthPolicy::None,
            Self::Mesh {
                trusted_proxy_identity,
            } => AuthPolicy::Mesh {
                trusted_proxy_identity: trusted_proxy_identity.clone(),
            },
            Self::Mtls { .. } => AuthPolicy::Mtls,
        }
    }

    /// In mtls mode, the three files are readable PEM.
    pub fn validate(&self) -> Result<(), FieldError> {
        let Self::Mtls {
            server_cert_file,
            server_key_file,
            client_ca_file,
        } = self
        else {
            return Ok(());
        };
        for (key, path) in [
            ("auth.server_cert_file", server_cert_file),
            ("auth.server_key_file", server_key_file),
            ("auth.client_ca_file", client_ca_file),
        ] {
            check_pem(path).map_err(|p| FieldError::new(key, p))?;
        }
        Ok(())
    }
}

fn check_pem(path: &Path) -> Result<(), String> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !pem.contains("-----BEGIN ") {
        return Err(format!("{} is not PEM", path.display()));
    }
    Ok(())
}

/// `[auth]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuthSection {
    mode: String,
    trusted_proxy_identity: Option<String>,
    server_cert_file: Option<PathBuf>,
    server_key_file: Option<PathBuf>,
    client_ca_file: Option<PathBuf>,
}

impl AuthSection {
    /// The mode and exactly the keys it uses.
    pub(super) fn into_config(self) -> Result<AuthConfig, FieldError> {
        let only_mesh = || {
            FieldError::new(
                "auth.trusted_proxy_identity",
                "only used with mode = \"mesh\"",
            )
        };
        let tls_fields = [
            ("auth.server_cert_file", self.server_cert_file),
            ("auth.server_key_file", self.server_key_file),
            ("auth.client_ca_file", self.client_ca_file),
        ];
        match self.mode.as_str() {
            "none" | "mesh" => {
                if let Some((key, _)) = tls_fields.iter().find(|(_, v)| v.is_some()) {
                    return Err(FieldError::new(
                        *key,
                        format!("only used with mode = \"mtls\", not {:?}", self.mode),
                    ));
                }
                if self.mode == "mesh" {
                    return Ok(AuthConfig::Mesh {
                        trusted_proxy_identity: self.trusted_proxy_identity,
                    });
                }
                match self.trusted_proxy_identity {
                    Some(_) => Err(only_mesh()),
                    None => Ok(AuthConfig::None),
                }
            }
            "mtls" => {
                if self.trusted_proxy_identity.is_some() {
                    return Err(only_mesh());
                }
                let [cert, key, ca] = tls_fields.map(|(key, value)| {
                    value.ok_or_else(|| FieldError::new(key, "required with mode = \"mtls\""))
                });
                Ok(AuthConfig::Mtls {
                    server_cert_file: cert?,
                    server_key_file: key?,
                    client_ca_file: ca?,
                })
            }
            other => Err(FieldError::new(
                "auth.mode",
                format!("unknown mode {other:?}: choose \"mtls\", \"mesh\" or \"none\""),
            )),
        }
    }
}
