//! Who is calling, and may they act for the tenant they name.
//!
//! Three explicit modes: `mtls` (the gateway terminates TLS and requires a
//! client certificate from a configured CA; identity = the certificate's URI
//! SAN, e.g. a SPIFFE id; only without one, its DNS SAN as `dns:<name>`),
//! `mesh` (a sidecar terminated mTLS; identity = the `URI=` of the last
//! `x-forwarded-client-cert` element, the one the sidecar added, parsed
//! strictly by [`xfcc`] and trusted only in this mode) and `none` (no identity; every
//! caller may use every tenant; chosen explicitly, warned about at start).

use tonic::metadata::MetadataMap;

pub mod xfcc;

/// The header a mesh sidecar (Envoy, Istio) sets with the client's certificate details.
pub const XFCC_HEADER: &str = "x-forwarded-client-cert";

/// How callers are identified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthPolicy {
    /// No identity; every caller may act for every tenant.
    None,
    /// Identity from the sidecar's XFCC header.
    Mesh {
        /// When set, the XFCC element's `By=` (the sidecar's own identity)
        /// must equal this, so a header that did not come from our sidecar
        /// is refused.
        trusted_proxy_identity: Option<String>,
    },
    /// Identity from the verified client certificate.
    Mtls,
}

/// Why a caller has no usable identity (never contains a secret).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// No XFCC header in mesh mode, or no client certificate in mtls mode.
    #[error("no caller identity: {0}")]
    Missing(&'static str),
    /// The XFCC header is malformed or not from the trusted sidecar.
    #[error("untrusted caller identity: {0}")]
    Untrusted(String),
}

impl AuthPolicy {
    /// The caller's identity, `None` in `none` mode.
    pub fn identify(
        &self,
        metadata: &MetadataMap,
        peer_certs: Option<&[tonic::transport::CertificateDer<'static>]>,
    ) -> Result<Option<String>, IdentityError> {
        match self {
            Self::None => Ok(None),
            Self::Mesh {
                trusted_proxy_identity,
            } => {
                let all: Vec<&str> = metadata
                    .get_all(XFCC_HEADER)
                    .iter()
                    .map(|v| {
                        v.to_str()
                            .map_err(|_| IdentityError::Untrusted("XFCC is not ASCII".into()))
                    })
                    .collect::<Result<_, _>>()?;
                if all.is_empty() {
                    return Err(IdentityError::Missing("no x-forwarded-client-cert header"));
                }
                let joined = all.join(",");
                let elements =
                    xfcc::parse(&joined).map_err(|e| IdentityError::Untrusted(e.to_string()))?;
                // The sidecar in front of us appends the last element.
                let element = elements
                    .last()
                    .ok_or(IdentityError::Missing("empty x-forwarded-client-cert"))?;
                if let Some(expected) = trusted_proxy_identity
                    && element.by.as_deref() != Some(expected.as_str())
                {
                    return Err(IdentityError::Untrusted(
                        "XFCC By= is not the trusted sidecar".into(),
                    ));
                }
                match element.uri.as_deref() {
                    Some(uri) if !uri.is_empty() => Ok(Some(uri.to_owned())),
                    _ => Err(IdentityError::Missing(
                        "x-forwarded-client-cert has no URI=",
                    )),
                }
            }
            Self::Mtls => {
                let cert = peer_certs
                    .and_then(|c| c.first())
                    .ok_or(IdentityError::Missing("no client certificate"))?;
                certificate_identity(cert.as_ref())
                    .map(Some)
                    .ok_or(IdentityError::Missing(
                        "client certificate has no URI or DNS SAN",
                    ))
            }
        }
    }
}

/// The prefix that marks an identity taken from a certificate's DNS SAN, so
/// a DNS name can never pass for a URI (a SPIFFE id) in `allowed_callers`.
pub const DNS_IDENTITY_PREFIX: &str = "dns:";

/// The first URI SAN of a DER certificate; only when it has none, its first
/// DNS SAN as `dns:<name>`.
pub fn certificate_identity(der: &[u8]) -> Option<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let names = &san.value.general_names;
    let uri = names.iter().find_map(|n| match n {
        GeneralName::URI(uri) => Some((*uri).to_owned()),
        _ => None,
    });
    uri.or_else(|| {
        names.iter().find_map(|n| match n {
            GeneralName::DNSName(dns) => Some(format!("{DNS_IDENTITY_PREFIX}{dns}")),
            _ => None,
        })
    })
}

/// Whether `identity` matches one of `patterns`: exact, or a prefix when
/// the pattern ends in `*` (`"*"` alone matches everyone).
pub fn caller_allowed(patterns: &[String], identity: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => identity.starts_with(prefix),
        None => p == identity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::strategy::Strategy as _;

    fn metadata_with(values: &[&str]) -> MetadataMap {
        let mut md = MetadataMap::new();
        for v in values {
            md.append(XFCC_HEADER, v.parse().unwrap());
        }
        md
    }

    #[test]
    fn mesh_mode_trusts_the_last_element_from_the_trusted_sidecar() {
        let policy = AuthPolicy::Mesh {
            trusted_proxy_identity: Some("spiffe://td/ns/didit/sa/gateway".into()),
        };
        let good = metadata_with(&[
            "By=spiffe://td/ns/didit/sa/gateway;URI=spiffe://td/ns/payments/sa/onboarding",
        ]);
        assert_eq!(
            policy.identify(&good, None).unwrap().as_deref(),
            Some("spiffe://td/ns/payments/sa/onboarding")
        );
        // A client-forged element followed by none from our sidecar.
        let forged = metadata_with(&[
            "By=spiffe://td/ns/evil/sa/x;URI=spiffe://td/ns/payments/sa/onboarding",
        ]);
        assert!(matches!(
            policy.identify(&forged, None),
            Err(IdentityError::Untrusted(_))
        ));
        assert!(matches!(
            policy.identify(&MetadataMap::new(), None),
            Err(IdentityError::Missing(_))
        ));
        // Two header lines are one list; the last element counts.
        let two = metadata_with(&[
            "By=spiffe://td/ns/didit/sa/gateway;URI=spiffe://td/ns/old/sa/x",
            "By=spiffe://td/ns/didit/sa/gateway;URI=spiffe://td/ns/new/sa/y",
        ]);
        assert_eq!(
            policy.identify(&two, None).unwrap().as_deref(),
            Some("spiffe://td/ns/new/sa/y")
        );
    }

    const SIDECAR: &str = "spiffe://td/ns/didit/sa/gateway";
    const CALLER: &str = "spiffe://td/ns/payments/sa/onboarding";

    fn mesh() -> AuthPolicy {
        AuthPolicy::Mesh {
            trusted_proxy_identity: Some(SIDECAR.into()),
        }
    }

    /// What our sidecar appends for a caller whose certificate says `CALLER`.
    fn sidecar_element() -> String {
        format!(r#"By={SIDECAR};Hash=ab12;Subject="";URI={CALLER}"#)
    }

    #[test]
    fn a_caller_cannot_smuggle_a_victims_identity_past_the_sidecar() {
        // The audit's header: the caller's own XFCC ends in an open quote.
        let forged = format!(
            r#"By={SIDECAR};URI=spiffe://td/ns/victim/sa/v;Subject=",{}"#,
            sidecar_element()
        );
        assert!(matches!(
            mesh().identify(&metadata_with(&[&forged]), None),
            Err(IdentityError::Untrusted(_))
        ));
        // The same split over two header lines.
        let lines = [
            &format!(r#"By={SIDECAR};URI=spiffe://td/ns/victim/sa/v;Subject=""#)[..],
            &sidecar_element(),
        ];
        assert!(mesh().identify(&metadata_with(&lines), None).is_err());
    }

    proptest::proptest! {
        /// Whatever a caller prefixes to the sidecar's element, the gateway
        /// sees the caller's real identity or refuses the call.
        #[test]
        fn no_prefix_changes_the_identity(
            prefix in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(vec![
                        "By=", "URI=", "Subject=", "Hash=", "DNS=", "\"", "\\", ",", ";", "=",
                        SIDECAR, "spiffe://td/ns/victim/sa/v", " ", "x",
                    ]).prop_map(str::to_owned),
                    "[ -~]{0,6}",
                ],
                0..12,
            ).prop_map(|parts| parts.concat())
        ) {
            let header = format!("{prefix},{}", sidecar_element());
            let seen = mesh().identify(&metadata_with(&[&header]), None);
            proptest::prop_assert!(
                seen.is_err() || seen == Ok(Some(CALLER.to_owned())),
                "{header:?} gave {seen:?}"
            );
        }
    }

    #[test]
    fn none_and_mtls_modes_ignore_xfcc() {
        let md = metadata_with(&["URI=spiffe://td/ns/payments/sa/onboarding"]);
        assert_eq!(AuthPolicy::None.identify(&md, None), Ok(None));
        assert!(matches!(
            AuthPolicy::Mtls.identify(&md, None),
            Err(IdentityError::Missing(_))
        ));
    }

    #[test]
    fn allowed_callers_match_exactly_or_by_prefix() {
        let patterns = vec![
            "spiffe://td/ns/payments/sa/onboarding".to_owned(),
            "spiffe://td/ns/risk/*".to_owned(),
        ];
        assert!(caller_allowed(
            &patterns,
            "spiffe://td/ns/payments/sa/onboarding"
        ));
        assert!(!caller_allowed(
            &patterns,
            "spiffe://td/ns/payments/sa/onboarding-2"
        ));
        assert!(caller_allowed(&patterns, "spiffe://td/ns/risk/sa/scorer"));
        assert!(!caller_allowed(&patterns, "spiffe://td/ns/riskless/sa/x"));
        assert!(caller_allowed(&["*".to_owned()], "anything"));
        assert!(!caller_allowed(&[], "anything"));
    }

    #[test]
    fn certificate_identity_prefers_the_uri_san() {
        let mut params =
            rcgen::CertificateParams::new(vec!["onboarding.payments.svc".to_owned()]).unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from("spiffe://td/ns/payments/sa/onboarding").unwrap(),
        ));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            certificate_identity(cert.der()).as_deref(),
            Some("spiffe://td/ns/payments/sa/onboarding")
        );
        let dns_only = rcgen::CertificateParams::new(vec!["a.example".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert_eq!(
            certificate_identity(dns_only.der()).as_deref(),
            Some("dns:a.example")
        );
        // A DNS SAN that looks like a SPIFFE id stays a DNS identity.
        let lookalike =
            rcgen::CertificateParams::new(vec!["spiffe://td/ns/payments/sa/onboarding".to_owned()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
        let identity = certificate_identity(lookalike.der()).unwrap();
        assert_eq!(identity, "dns:spiffe://td/ns/payments/sa/onboarding");
        assert!(!caller_allowed(
            &["spiffe://td/ns/payments/*".to_owned()],
            &identity
        ));
    }
}
