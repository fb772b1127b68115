//! Who is calling, and may they act for the tenant they name.
//!
//! Three explicit modes: `mtls` (the gateway terminates TLS and requires a
//! client certificate from a configured CA; identity = the certificate's URI
//! SAN, e.g. a SPIFFE id, else its DNS SAN), `mesh` (a sidecar terminated
//! mTLS; identity = the `URI=` of the `x-forwarded-client-cert` element the
//! sidecar added, trusted only in this mode) and `none` (no identity; every
//! caller may use every tenant; chosen explicitly, warned about at start).

use tonic::metadata::MetadataMap;

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
                let elements = xfcc::parse(&joined).map_err(IdentityError::Untrusted)?;
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
                element
                    .uris
                    .first()
                    .cloned()
                    .map(Some)
                    .ok_or(IdentityError::Missing(
                        "x-forwarded-client-cert has no URI=",
                    ))
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

/// The first URI SAN of a DER certificate, else its first DNS SAN.
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
            GeneralName::DNSName(dns) => Some((*dns).to_owned()),
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

/// Envoy's `x-forwarded-client-cert` format: elements separated by `,`,
/// key=value pairs separated by `;`, values optionally double-quoted (a
/// quoted value may contain `,` `;` `=` and `\"`).
pub mod xfcc {
    /// One element: what one proxy saw of one client certificate.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct Element {
        /// `By=`: the identity of the proxy that added the element.
        pub by: Option<String>,
        /// `Hash=`: SHA-256 of the client certificate.
        pub hash: Option<String>,
        /// `URI=` values: the client certificate's URI SANs.
        pub uris: Vec<String>,
        /// `DNS=` values.
        pub dns: Vec<String>,
        /// `Subject=`.
        pub subject: Option<String>,
    }

    /// Longest header accepted.
    const MAX_LEN: usize = 16 * 1024;

    /// Parses a whole header value.
    pub fn parse(header: &str) -> Result<Vec<Element>, String> {
        if header.len() > MAX_LEN {
            return Err("x-forwarded-client-cert is too long".into());
        }
        let mut elements = Vec::new();
        let mut element = Element::default();
        let mut key = String::new();
        let mut value = String::new();
        let mut in_key = true;
        let mut quoted = false;
        let mut chars = header.chars().peekable();
        let mut pairs_in_element = 0;
        while let Some(c) = chars.next() {
            if c.is_control() {
                return Err("x-forwarded-client-cert contains control characters".into());
            }
            if quoted {
                match c {
                    '\\' => match chars.next() {
                        Some(escaped) => value.push(escaped),
                        None => return Err("x-forwarded-client-cert ends inside an escape".into()),
                    },
                    '"' => quoted = false,
                    _ => value.push(c),
                }
                continue;
            }
            match c {
                '=' if in_key => in_key = false,
                '"' if !in_key && value.is_empty() => quoted = true,
                ';' | ',' => {
                    finish_pair(&mut element, &mut key, &mut value, in_key)?;
                    pairs_in_element += 1;
                    in_key = true;
                    if c == ',' {
                        elements.push(std::mem::take(&mut element));
                        pairs_in_element = 0;
                    }
                }
                _ if in_key => key.push(c),
                _ => value.push(c),
            }
        }
        if quoted {
            return Err("x-forwarded-client-cert has an unterminated quote".into());
        }
        finish_pair(&mut element, &mut key, &mut value, in_key)?;
        let _ = pairs_in_element;
        elements.push(element);
        Ok(elements)
    }

    fn finish_pair(
        element: &mut Element,
        key: &mut String,
        value: &mut String,
        in_key: bool,
    ) -> Result<(), String> {
        let k = std::mem::take(key);
        let v = std::mem::take(value);
        let k = k.trim();
        if in_key || k.is_empty() {
            return Err("x-forwarded-client-cert has a field without key=value".into());
        }
        match k.to_ascii_lowercase().as_str() {
            "by" => element.by = Some(v),
            "hash" => element.hash = Some(v),
            "uri" => element.uris.push(v),
            "dns" => element.dns.push(v),
            "subject" => element.subject = Some(v),
            // Cert, Chain and future keys are not needed for identity.
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata_with(values: &[&str]) -> MetadataMap {
        let mut md = MetadataMap::new();
        for v in values {
            md.append(XFCC_HEADER, v.parse().unwrap());
        }
        md
    }

    #[test]
    fn envoy_examples_parse() {
        // From Envoy's documentation of x-forwarded-client-cert.
        let header = r#"By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=http://testclient.lyft.com,By=spiffe://cluster.local/ns/didit/sa/gateway;Hash=abc;URI=spiffe://cluster.local/ns/payments/sa/onboarding;DNS=onboarding.payments.svc"#;
        let elements = xfcc::parse(header).unwrap();
        assert_eq!(elements.len(), 2);
        assert_eq!(
            elements[0].subject.as_deref(),
            Some("/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client")
        );
        assert_eq!(elements[0].uris, ["http://testclient.lyft.com"]);
        assert_eq!(
            elements[1].by.as_deref(),
            Some("spiffe://cluster.local/ns/didit/sa/gateway")
        );
        assert_eq!(
            elements[1].uris,
            ["spiffe://cluster.local/ns/payments/sa/onboarding"]
        );
        assert_eq!(elements[1].dns, ["onboarding.payments.svc"]);
    }

    #[test]
    fn quoted_values_may_hold_separators_and_escaped_quotes() {
        let header = r#"Hash=1;Subject="CN=a, O=\"b; c\"";URI=spiffe://td/ns/a/sa/b"#;
        let elements = xfcc::parse(header).unwrap();
        assert_eq!(elements.len(), 1);
        assert_eq!(elements[0].subject.as_deref(), Some(r#"CN=a, O="b; c""#));
        assert_eq!(elements[0].uris, ["spiffe://td/ns/a/sa/b"]);
    }

    #[test]
    fn malformed_headers_are_refused() {
        for bad in [
            r#"URI="spiffe://x"#,
            "URI",
            "URI=a;;Hash=b",
            "=x",
            "URI=a,",
            "URI=a\u{1}",
        ] {
            assert!(xfcc::parse(bad).is_err(), "{bad:?}");
        }
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
            Some("a.example")
        );
    }
}
