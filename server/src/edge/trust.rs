//! What a WebSocket client may not say about identity or trust, and what imsgw says instead.
//!
//! Every user reaches the P-CSCF from imsgw's one address, so the P-CSCF cannot tell users apart
//! by where a request comes from: what imsgw asserts is the only identity it may believe
//! (TS 24.229 §4.4 trust domain, RFC 3325 §5). Headers that belong to the trust domain, that
//! claim an identity, or that carry credentials are removed from everything a WebSocket sends
//! before imsgw adds its own assertion.
//!
//! Owns: the list of removed headers and the choice of the asserted IMPU. Must not touch:
//! token checks (`auth`), routing (`request`).

use std::collections::HashSet;

use imsgw_sip::{HeaderName, Impu, Message, Uri};

/// Headers removed from every request from a WebSocket whatever `sip.strip_headers` says,
/// because imsgw writes them itself or they name a route or identity only the network may set:
/// `P-Asserted-Identity` (RFC 3325 §5, only imsgw asserts), `P-Preferred-Identity` (consumed:
/// see [`asserted_impu`]), `P-Served-User` (RFC 5502, set by the S-CSCF), `Authorization` and
/// `Proxy-Authorization` (imsgw writes its own: `tna`, or the checked Bearer token in
/// `passthrough`), `Proof` (a proof of possession is for imsgw, which checks it: `pop`), `Path`
/// (RFC 3327: each proxy adds its own; a UA has none to give) and `Record-Route` (a UA does not
/// record-route; a forged one would steer the dialog).
pub const ALWAYS_REMOVED: &[&str] = &[
    "P-Asserted-Identity",
    "P-Preferred-Identity",
    "P-Served-User",
    "Authorization",
    "Proxy-Authorization",
    "Proof",
    "Path",
    "Record-Route",
];

/// Headers removed from responses from a WebSocket, whatever the config says: the identity a UA
/// could claim in a response (RFC 3325 §9.1 applies to responses too; in `pai` mode imsgw
/// asserts the answering flow's IMPU itself).
const ALWAYS_REMOVED_FROM_RESPONSES: &[&str] = &[
    "P-Asserted-Identity",
    "P-Preferred-Identity",
    "P-Served-User",
];

/// The default of `sip.strip_headers`: the other trust-domain headers of TS 24.229 §4.4 (and
/// the RFCs that define them) that a UE must not set: charging (RFC 7315 §4.6, §4.5), the
/// visited network (RFC 7315 §4.3), the profile key (RFC 5002), private network indication
/// (RFC 7316), asserted service (RFC 6050).
pub const DEFAULT_STRIPPED: &[&str] = &[
    "P-Charging-Vector",
    "P-Charging-Function-Addresses",
    "P-Visited-Network-ID",
    "P-Profile-Key",
    "P-Private-Network-Indication",
    "P-Asserted-Service",
];

/// Headers that can never be configured as stripped: the proxy needs them to route and to
/// answer (RFC 3261 §8.1.1).
pub const NEVER_STRIPPED: &[&str] = &[
    "Expires",
    "Supported",
    "Via",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Max-Forwards",
    "Route",
    "Contact",
    "Content-Length",
    "Content-Type",
];

/// Which headers come off what a WebSocket sends.
#[derive(Debug, Clone)]
pub struct StripList {
    requests: HashSet<HeaderName>,
    responses: HashSet<HeaderName>,
}

impl StripList {
    /// The fixed list plus `extra` (`sip.strip_headers`, already validated by the config).
    pub fn new<S: AsRef<str>>(extra: &[S]) -> Self {
        let extra = extra.iter().map(|n| HeaderName::new(n.as_ref()));
        let responses: HashSet<HeaderName> = ALWAYS_REMOVED_FROM_RESPONSES
            .iter()
            .map(|n| HeaderName::new(n))
            .chain(extra.clone())
            .collect();
        let requests = ALWAYS_REMOVED
            .iter()
            .map(|n| HeaderName::new(n))
            .chain(extra)
            .collect();
        Self {
            requests,
            responses,
        }
    }

    /// Whether `name` is removed from a request from a WebSocket.
    pub fn strips_request(&self, name: &HeaderName) -> bool {
        self.requests.contains(name)
    }

    /// Whether `name` is removed from a response from a WebSocket.
    pub fn strips_response(&self, name: &HeaderName) -> bool {
        self.responses.contains(name)
    }
}

impl Default for StripList {
    fn default() -> Self {
        Self::new(DEFAULT_STRIPPED)
    }
}

/// Why a `sip.strip_headers` entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StripListError {
    #[error("`{0}` is not a header name (RFC 3261 §7.3 token)")]
    NotAToken(String),
    #[error("`{0}` cannot be stripped: the proxy needs it to route and answer")]
    Needed(String),
}

/// Checks one configured header name.
pub fn check_strip_entry(name: &str) -> Result<(), StripListError> {
    let Some(parsed) = HeaderName::from_bytes(name.as_bytes()) else {
        return Err(StripListError::NotAToken(name.to_string()));
    };
    if NEVER_STRIPPED.iter().any(|n| HeaderName::new(n) == parsed) {
        return Err(StripListError::Needed(name.to_string()));
    }
    Ok(())
}

/// The IMPU to assert for a request from a flow whose registration holds `registered` (the
/// default IMPU first): the one a `P-Preferred-Identity` names when it is one of them, else the
/// default (TS 24.229 §5.2.6.3.3, the P-CSCF's handling of requests from a UE). A preferred
/// identity naming anyone else is ignored, never asserted. A token carries one IMPU today, so
/// `registered` has one entry; an implicit registration set would have several.
pub fn asserted_impu<'a>(msg: &Message, registered: &'a [Impu]) -> Option<&'a Impu> {
    let ppi = HeaderName::new("P-Preferred-Identity");
    msg.headers()
        .iter()
        .filter(|h| h.name == ppi)
        .flat_map(|h| preferred_values(msg.value(h)))
        .find_map(|uri| registered.iter().find(|i| i.matches(&uri).unwrap_or(false)))
        .or_else(|| registered.first())
}

/// The URIs of a `P-Preferred-Identity` value (RFC 3325 §9.2: one or two name-addrs or
/// addr-specs, comma separated).
fn preferred_values(value: &[u8]) -> Vec<Uri> {
    let Ok(text) = std::str::from_utf8(value) else {
        return Vec::new();
    };
    text.split(',')
        .filter_map(|v| {
            let v = v.trim();
            let inner = match (v.find('<'), v.rfind('>')) {
                (Some(a), Some(b)) if a < b => &v[a + 1..b],
                _ => v,
            };
            Uri::parse(inner.trim()).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts24229_trust_domain_headers_are_stripped_case_insensitively() {
        let s = StripList::default();
        for n in [
            "p-asserted-identity",
            "P-PREFERRED-IDENTITY",
            "P-Served-User",
            "authorization",
            "Proxy-Authorization",
            "proof",
            "path",
            "Record-Route",
            "p-charging-vector",
            "P-Charging-Function-Addresses",
            "P-Visited-Network-ID",
            "P-Profile-Key",
        ] {
            assert!(s.strips_request(&HeaderName::new(n)), "{n}");
        }
        for n in [
            "Via",
            "Route",
            "Contact",
            "X-Foo",
            "Supported",
            "User-Agent",
        ] {
            assert!(!s.strips_request(&HeaderName::new(n)), "{n}");
        }
        assert!(s.strips_response(&HeaderName::new("P-Asserted-Identity")));
        assert!(s.strips_response(&HeaderName::new("P-Preferred-Identity")));
        assert!(!s.strips_response(&HeaderName::new("Record-Route")));
        assert!(!s.strips_response(&HeaderName::new("Path")));
    }

    #[test]
    fn ts24229_5_2_6_3_3_preferred_identity_picks_only_a_registered_impu() {
        let set = [
            Impu::parse("sip:alice@ims.example").expect("impu"),
            Impu::parse("tel:+15551234").expect("impu"),
        ];
        let msg = |ppi: &str| {
            Message::parse(bytes::Bytes::from(format!(
                "MESSAGE sip:b@ims.example SIP/2.0\r\nVia: SIP/2.0/WS x.invalid;branch=z9hG4bK1\r\n\
From: <sip:alice@ims.example>;tag=1\r\nTo: <sip:b@ims.example>\r\nCall-ID: c\r\n\
CSeq: 1 MESSAGE\r\n{ppi}Content-Length: 0\r\n\r\n"
            )))
            .expect("parses")
        };
        let pick = |ppi: &str| asserted_impu(&msg(ppi), &set).map(|i| i.as_str().to_string());
        assert_eq!(pick("").as_deref(), Some("sip:alice@ims.example"));
        assert_eq!(
            pick("P-Preferred-Identity: <tel:+1-555-1234>\r\n").as_deref(),
            Some("tel:+15551234")
        );
        assert_eq!(
            pick("P-Preferred-Identity: \"Boss\" <sip:boss@ims.example>, <tel:+19999>\r\n")
                .as_deref(),
            Some("sip:alice@ims.example"),
            "an identity outside the registration is never asserted"
        );
        assert_eq!(
            pick("P-Preferred-Identity: <sip:alice:pw@ims.example>\r\n").as_deref(),
            Some("sip:alice@ims.example")
        );
        assert_eq!(asserted_impu(&msg(""), &[]), None);
    }

    #[test]
    fn configured_list_adds_to_the_fixed_one_and_refuses_routing_headers() {
        let s = StripList::new(&["X-Internal"]);
        assert!(s.strips_request(&HeaderName::new("x-internal")));
        assert!(s.strips_request(&HeaderName::new("P-Asserted-Identity")));
        assert!(!s.strips_request(&HeaderName::new("P-Charging-Vector")));
        assert_eq!(
            check_strip_entry("Via"),
            Err(StripListError::Needed("Via".into()))
        );
        assert_eq!(
            check_strip_entry("v"),
            Err(StripListError::Needed("v".into()))
        );
        assert!(matches!(
            check_strip_entry("Bad Name"),
            Err(StripListError::NotAToken(_))
        ));
        assert_eq!(check_strip_entry("P-Early-Media"), Ok(()));
        // Edits of the edge live inside these: stripping them would break REGISTER.
        for n in ["Expires", "supported", "k"] {
            assert!(
                matches!(check_strip_entry(n), Err(StripListError::Needed(_))),
                "{n}"
            );
        }
    }
}
