//! The Via header value (RFC 3261 §20.42, §25.1 `via-parm`), with the parameters a proxy
//! reads and writes (branch, received, rport of RFC 3581). Positions are absolute offsets into
//! the message buffer so the server can splice `;received=` / `;rport=` in place.

use std::ops::Range;

use crate::error::ParseError;
use crate::scan::{Cursor, Param, find_param, text};

/// One via-parm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// The whole via-parm, trimmed.
    pub range: Range<usize>,
    /// The transport, uppercased (`UDP`, `TCP`, `TLS`, `WS`, `WSS`, `SCTP`, or an extension).
    pub transport: String,
    /// The sent-by host as written; IPv6 references keep their brackets.
    pub host: String,
    /// The sent-by port, if written.
    pub port: Option<u16>,
    /// The `branch` parameter value.
    pub branch: Option<String>,
    /// The `received` parameter value.
    pub received: Option<String>,
    /// `Some(None)` for a bare `;rport` request, `Some(Some(p))` once filled in (RFC 3581 §4).
    pub rport: Option<Option<u16>>,
    /// Every parameter in order, including the ones above.
    pub params: Vec<Param>,
}

impl Via {
    /// Where `;received=..;rport=..` can be inserted: the end of the via-parm (RFC 3261 §18.2.1,
    /// RFC 3581 §4). Replace an existing `rport` flag through [`Via::param_range`] instead.
    pub fn sent_by_end(&self) -> usize {
        self.range.end
    }

    /// The `;name=value` range of the first parameter called `name` (case-insensitive).
    pub fn param_range(&self, name: &str) -> Option<Range<usize>> {
        self.params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.range.clone())
    }

    /// Parses the via-parm at `buf[r]`: `SIP / 2.0 / transport LWS host [: port] *(; param)`,
    /// with LWS allowed around every separator (RFC 3261 §25.1 SLASH, COLON, SEMI).
    pub(crate) fn parse(buf: &[u8], r: Range<usize>) -> Result<Via, ParseError> {
        let mut c = Cursor::new(buf, r.clone());
        c.skip_ws();
        let name = c.token().ok_or(ParseError::BadVia)?;
        sep(&mut c, b'/')?;
        let version = c.token().ok_or(ParseError::BadVia)?;
        sep(&mut c, b'/')?;
        let transport = c.token().ok_or(ParseError::BadVia)?;
        if !buf[name].eq_ignore_ascii_case(b"SIP") || &buf[version] != b"2.0" {
            return Err(ParseError::BadVia);
        }
        c.skip_ws();
        let host = if c.peek() == Some(b'[') {
            let r = c.take_while(|b| b != b']');
            if !c.eat(b']') {
                return Err(ParseError::BadVia);
            }
            r.start..c.pos
        } else {
            c.take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        };
        if host.is_empty() {
            return Err(ParseError::BadVia);
        }
        let save = c.pos;
        c.skip_ws();
        let port = if c.eat(b':') {
            c.skip_ws();
            let d = c.take_while(|b| b.is_ascii_digit());
            Some(port_of(buf, d).ok_or(ParseError::BadVia)?)
        } else {
            c.pos = save;
            None
        };
        let params = c.params().ok_or(ParseError::BadVia)?;
        c.skip_ws();
        if !c.at_end() {
            return Err(ParseError::BadVia);
        }
        let rport = match find_param(&params, "rport") {
            None => None,
            Some(None) => Some(None),
            Some(Some(v)) => Some(Some(v.parse::<u16>().map_err(|_| ParseError::BadVia)?)),
        };
        let owned = |r: Range<usize>| text(buf, r).map(str::to_string).ok_or(ParseError::BadVia);
        Ok(Via {
            range: r,
            transport: owned(transport)?.to_ascii_uppercase(),
            host: owned(host)?,
            port,
            branch: find_param(&params, "branch").flatten().map(str::to_string),
            received: find_param(&params, "received")
                .flatten()
                .map(str::to_string),
            rport,
            params,
        })
    }
}

/// `SWS sep SWS`.
fn sep(c: &mut Cursor<'_>, b: u8) -> Result<(), ParseError> {
    c.skip_ws();
    if !c.eat(b) {
        return Err(ParseError::BadVia);
    }
    c.skip_ws();
    Ok(())
}

fn port_of(buf: &[u8], d: Range<usize>) -> Option<u16> {
    text(buf, d)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn via(s: &str) -> Result<Via, ParseError> {
        Via::parse(s.as_bytes(), 0..s.len())
    }

    #[test]
    fn parses_sent_by_and_params_rfc3261_20_42() {
        let v = via("SIP/2.0/wss a.invalid:8443;branch=z9hG4bK1;rport;received=10.0.0.1")
            .expect("valid");
        assert_eq!(v.transport, "WSS");
        assert_eq!(v.host, "a.invalid");
        assert_eq!(v.port, Some(8443));
        assert_eq!(v.branch.as_deref(), Some("z9hG4bK1"));
        assert_eq!(v.rport, Some(None));
        assert_eq!(v.received.as_deref(), Some("10.0.0.1"));
        assert_eq!(v.param_range("RPORT"), Some(42..48));
        assert_eq!(v.sent_by_end(), v.range.end);
    }

    #[test]
    fn allows_lws_around_separators_rfc3261_25_1() {
        let v =
            via("SIP  /   2.0\r\n /UDP\r\n    192.0.2.2 : 5060 ;branch=390skdjuw").expect("valid");
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "192.0.2.2");
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch.as_deref(), Some("390skdjuw"));
    }

    #[test]
    fn ipv6_sent_by_and_filled_rport_rfc3581() {
        let v =
            via("SIP/2.0/TCP [2001:db8::9]:5060;rport=1234;received=2001:db8::1").expect("valid");
        assert_eq!(v.host, "[2001:db8::9]");
        assert_eq!(v.rport, Some(Some(1234)));
        assert_eq!(v.received.as_deref(), Some("2001:db8::1"));
    }

    #[test]
    fn rejects_malformed_vias() {
        for bad in [
            "",
            "SIP/2.0 host",
            "SIP/7.0/UDP host",
            "SIP/2.0/UDP",
            "SIP/2.0/UDP host:",
            "SIP/2.0/UDP host:70000",
            "SIP/2.0/UDP host;;",
            "SIP/2.0/UDP host;rport=x",
            "SIP/2.0/UDP host junk",
            "SIP/2.0/UDP [::1",
        ] {
            assert!(via(bad).is_err(), "{bad:?}");
        }
    }
}
