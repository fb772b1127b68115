//! A strict parser of Envoy's `x-forwarded-client-cert` (XFCC) header.
//!
//! The grammar, as Envoy writes it:
//!
//! ```text
//! header   = element *( "," element )
//! element  = pair *( ";" pair )
//! pair     = key "=" value
//! key      = 1*ALPHA
//! value    = bare / quoted
//! bare     = *( any visible ASCII except "," ";" DQUOTE "\" )
//! quoted   = DQUOTE *( qdtext / "\" any visible ASCII or space ) DQUOTE
//! ```
//!
//! Anything else rejects the whole header: text after a closing quote, a
//! quote that does not open a value, an unterminated quote, an empty
//! element, a pair without `=`, control characters, duplicate `By`, `Hash`,
//! `Subject`, `Cert`, `Chain` or `URI` keys in one element. A lenient parser
//! is how a caller smuggles its own identity past the sidecar (a value that
//! opens a quote and swallows the sidecar's element), so nothing is guessed.

/// One element: what one proxy saw of one client certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Element {
    /// `By=`: the identity of the proxy that added the element.
    pub by: Option<String>,
    /// `Hash=`: SHA-256 of the client certificate.
    pub hash: Option<String>,
    /// `URI=`: the client certificate's URI SAN (at most one per element).
    pub uri: Option<String>,
    /// `DNS=` values (Envoy writes one pair per DNS SAN).
    pub dns: Vec<String>,
    /// `Subject=`.
    pub subject: Option<String>,
}

/// Why a header was rejected (never contains the header's text).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum XfccError {
    /// Over [`MAX_LEN`] bytes.
    #[error("x-forwarded-client-cert is too long")]
    TooLong,
    /// A control character (or a non-ASCII byte) anywhere in the header.
    #[error("x-forwarded-client-cert contains a control or non-ASCII character")]
    BadCharacter,
    /// An empty element or pair (`,,`, `;;`, a trailing separator).
    #[error("x-forwarded-client-cert has an empty element or field")]
    Empty,
    /// A key that is not letters, or a pair without `=`.
    #[error("x-forwarded-client-cert has a field without key=value")]
    BadPair,
    /// A quote that does not start the value, or text after a closing quote.
    #[error("x-forwarded-client-cert has a misplaced quote")]
    MisplacedQuote,
    /// A quoted value that never ends.
    #[error("x-forwarded-client-cert has an unterminated quote")]
    UnterminatedQuote,
    /// A backslash outside a quoted value, or one that escapes nothing.
    #[error("x-forwarded-client-cert has a misplaced backslash")]
    BadEscape,
    /// The same single-valued key twice in one element.
    #[error("x-forwarded-client-cert repeats {0} in one element")]
    Duplicate(&'static str),
}

/// Longest header accepted (the gRPC server's metadata limit is 16 KiB too).
pub const MAX_LEN: usize = 16 * 1024;

/// Parses a whole header value (several header lines joined with `,`).
pub fn parse(header: &str) -> Result<Vec<Element>, XfccError> {
    if header.len() > MAX_LEN {
        return Err(XfccError::TooLong);
    }
    if header
        .bytes()
        .any(|b| b.is_ascii_control() || !b.is_ascii())
    {
        return Err(XfccError::BadCharacter);
    }
    let mut parser = Parser {
        bytes: header.as_bytes(),
        pos: 0,
    };
    let mut elements = vec![parser.element()?];
    while parser.eat(b',') {
        elements.push(parser.element()?);
    }
    // `element` stops only at `,` or the end; anything else was rejected.
    debug_assert!(parser.pos == parser.bytes.len());
    Ok(elements)
}

/// A cursor over the header's bytes (ASCII only, checked in [`parse`]).
struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// `pair *( ";" pair )`, ending at `,` or the end of the header.
    fn element(&mut self) -> Result<Element, XfccError> {
        let mut element = Element::default();
        loop {
            let (key, value) = self.pair()?;
            store(&mut element, key, value)?;
            match self.peek() {
                Some(b';') => self.pos += 1,
                Some(b',') | None => return Ok(element),
                // `value` stops only at `;`, `,` or the end.
                Some(_) => return Err(XfccError::MisplacedQuote),
            }
        }
    }

    fn pair(&mut self) -> Result<(&str, String), XfccError> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_alphabetic()) {
            self.pos += 1;
        }
        // ASCII was checked, so any slice is valid UTF-8.
        let key =
            std::str::from_utf8(&self.bytes[start..self.pos]).map_err(|_| XfccError::BadPair)?;
        if key.is_empty() {
            return Err(match self.peek() {
                Some(b',' | b';') | None => XfccError::Empty,
                _ => XfccError::BadPair,
            });
        }
        if !self.eat(b'=') {
            return Err(XfccError::BadPair);
        }
        let value = if self.eat(b'"') {
            self.quoted()?
        } else {
            self.bare()?
        };
        Ok((key, value))
    }

    fn bare(&mut self) -> Result<String, XfccError> {
        let start = self.pos;
        while let Some(b) = self.peek() {
            match b {
                b',' | b';' => break,
                b'"' => return Err(XfccError::MisplacedQuote),
                b'\\' => return Err(XfccError::BadEscape),
                _ => self.pos += 1,
            }
        }
        Ok(String::from_utf8_lossy(&self.bytes[start..self.pos]).into_owned())
    }

    /// After the opening quote: up to and including the closing quote,
    /// which must be followed by `;`, `,` or the end.
    fn quoted(&mut self) -> Result<String, XfccError> {
        let mut value = Vec::new();
        loop {
            match self.peek() {
                None => return Err(XfccError::UnterminatedQuote),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(escaped) => value.push(escaped),
                        None => return Err(XfccError::UnterminatedQuote),
                    }
                    self.pos += 1;
                }
                Some(b) => {
                    value.push(b);
                    self.pos += 1;
                }
            }
        }
        match self.peek() {
            Some(b';' | b',') | None => Ok(String::from_utf8_lossy(&value).into_owned()),
            Some(_) => Err(XfccError::MisplacedQuote),
        }
    }
}

/// Files one pair into `element`, refusing repeats of single-valued keys.
fn store(element: &mut Element, key: &str, value: String) -> Result<(), XfccError> {
    fn once(slot: &mut Option<String>, name: &'static str, value: String) -> Result<(), XfccError> {
        match slot {
            Some(_) => Err(XfccError::Duplicate(name)),
            None => {
                *slot = Some(value);
                Ok(())
            }
        }
    }
    match key.to_ascii_lowercase().as_str() {
        "by" => once(&mut element.by, "By", value),
        "hash" => once(&mut element.hash, "Hash", value),
        "uri" => once(&mut element.uri, "URI", value),
        "subject" => once(&mut element.subject, "Subject", value),
        "dns" => {
            element.dns.push(value);
            Ok(())
        }
        // Cert, Chain and keys Envoy may add later are not needed for
        // identity.
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_examples_parse() {
        // From Envoy's documentation of x-forwarded-client-cert.
        let header = r#"By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=http://testclient.lyft.com,By=spiffe://cluster.local/ns/didit/sa/gateway;Hash=abc;URI=spiffe://cluster.local/ns/payments/sa/onboarding;DNS=onboarding.payments.svc;DNS=b.svc"#;
        let elements = parse(header).unwrap();
        assert_eq!(elements.len(), 2);
        assert_eq!(
            elements[0].subject.as_deref(),
            Some("/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client")
        );
        assert_eq!(
            elements[0].uri.as_deref(),
            Some("http://testclient.lyft.com")
        );
        assert_eq!(
            elements[1].by.as_deref(),
            Some("spiffe://cluster.local/ns/didit/sa/gateway")
        );
        assert_eq!(
            elements[1].uri.as_deref(),
            Some("spiffe://cluster.local/ns/payments/sa/onboarding")
        );
        assert_eq!(elements[1].dns, ["onboarding.payments.svc", "b.svc"]);
    }

    #[test]
    fn quoted_values_may_hold_separators_and_escapes() {
        let header = r#"Hash=1;Subject="CN=a\, b, O=\"b; c\"";URI=spiffe://td/ns/a/sa/b;Cert="""#;
        let elements = parse(header).unwrap();
        assert_eq!(elements.len(), 1);
        assert_eq!(elements[0].subject.as_deref(), Some(r#"CN=a, b, O="b; c""#));
        assert_eq!(elements[0].uri.as_deref(), Some("spiffe://td/ns/a/sa/b"));
        // Empty values are values.
        assert_eq!(
            parse(r#"Subject="";URI="#).unwrap()[0].uri.as_deref(),
            Some("")
        );
    }

    #[test]
    fn everything_outside_the_grammar_is_refused() {
        for (bad, why) in [
            (r#"URI="spiffe://x"#, XfccError::UnterminatedQuote),
            (r#"URI="a"b"#, XfccError::MisplacedQuote),
            (r#"URI="a" ;By=x"#, XfccError::MisplacedQuote),
            (r#"URI=a"b""#, XfccError::MisplacedQuote),
            (r#"Subject="x\"#, XfccError::UnterminatedQuote),
            (r"URI=a\b", XfccError::BadEscape),
            ("URI", XfccError::BadPair),
            ("URI =a", XfccError::BadPair),
            ("URI=a;;Hash=b", XfccError::Empty),
            ("=x", XfccError::BadPair),
            ("URI=a,", XfccError::Empty),
            ("", XfccError::Empty),
            ("URI=a\u{1}", XfccError::BadCharacter),
            ("URI=é", XfccError::BadCharacter),
            ("By=a;URI=b;By=a", XfccError::Duplicate("By")),
            ("By=a;URI=b;URI=c", XfccError::Duplicate("URI")),
            ("By=a;uri=b;URI=b", XfccError::Duplicate("URI")),
        ] {
            assert_eq!(parse(bad), Err(why), "{bad:?}");
        }
        assert_eq!(parse(&"a".repeat(MAX_LEN + 1)), Err(XfccError::TooLong));
    }

    /// The audit's attack: the caller's value opens a quote that would
    /// swallow the sidecar's element if quotes could close anywhere.
    #[test]
    fn a_value_cannot_swallow_the_next_element() {
        let smuggled = concat!(
            r#"By=spiffe://td/ns/didit/sa/gateway;URI=spiffe://td/ns/victim/sa/v;Subject=""#,
            r#",By=spiffe://td/ns/didit/sa/gateway;Hash=ab;Subject="";URI=spiffe://td/ns/evil/sa/e"#
        );
        assert_eq!(parse(smuggled), Err(XfccError::MisplacedQuote));
    }
}
