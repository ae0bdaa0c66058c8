//! The edge's own addresses: the URIs it writes into Path, Record-Route and Via, and how it
//! recognises them when they come back in a Route (RFC 3261 §16.4, RFC 5626 §5, RFC 5658).
//!
//! Owns: the shape of our URIs. Must not touch: sockets, transactions.

use std::net::SocketAddr;

use imsgw_sip::{SipUri, Uri};

use super::flow::{FlowId, FlowKey, FlowTokenError};
use crate::config::UpstreamTransport;

/// What the edge calls itself on the IMS side.
#[derive(Debug, Clone)]
pub struct Local {
    /// UDP/TCP listener (`sip.listen`).
    pub listen: SocketAddr,
    /// TLS listener (`sip.tls_listen`).
    pub tls_listen: Option<SocketAddr>,
    /// How we reach the P-CSCF; our URIs toward the IMS use the same transport.
    pub transport: UpstreamTransport,
    /// Host written in the Via we put on requests going down a WebSocket (RFC 7118 §5.2 lets
    /// the proxy use any host there; the client answers over the same connection).
    pub ws_host: String,
    /// Where SIP phones reach us (`[phones]`: UDP, TCP, TLS listeners).
    pub clients: Vec<SocketAddr>,
    /// The address written toward phones for a listener bound to a wildcard address
    /// (`phones.advertise`; else the IP of `sip.listen`).
    pub phone_advertise: Option<std::net::IpAddr>,
}

/// How a client (a flow) is connected to the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowKind {
    /// SIP over WebSocket (RFC 7118).
    Ws,
    /// A phone's UDP source address, at our listener `local`.
    Udp(SocketAddr),
    /// A phone's TCP connection to our listener `local`.
    Tcp(SocketAddr),
    /// A phone's TLS connection to our listener `local`.
    Tls(SocketAddr),
}

impl FlowKind {
    /// Whether requests down this flow are retransmitted (RFC 3261 §17.1.1.2, §17.1.2.2).
    pub fn unreliable(self) -> bool {
        matches!(self, FlowKind::Udp(_))
    }
}

/// A Route that names us, as found at the top of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OurRoute {
    /// Our IMS-facing URI (no flow).
    Plain,
    /// A URI carrying a flow token that verified.
    Flow(FlowId),
    /// A URI of ours whose flow token did not verify (RFC 5626 §5.3: 403).
    Forged,
}

impl Local {
    /// The address the IMS side uses to reach us: the TLS listener when the upstream is TLS.
    pub fn ims_addr(&self) -> SocketAddr {
        match (self.transport, self.tls_listen) {
            (UpstreamTransport::Tls, Some(tls)) => tls,
            _ => self.listen,
        }
    }

    /// `Path` value for a REGISTER on `flow` (RFC 3327 §5, RFC 5626 §5.1: `ob` when the UA
    /// asked for outbound).
    pub fn path(&self, key: &FlowKey, flow: FlowId, ob: bool) -> String {
        let addr = self.ims_addr();
        format!(
            "<sip:{}@{}:{};transport={};lr{}>",
            key.token(flow),
            addr.ip(),
            addr.port(),
            self.transport.param(),
            if ob { ";ob" } else { "" }
        )
    }

    /// Our IMS-facing Record-Route URI.
    pub fn rr_ims(&self) -> String {
        let addr = self.ims_addr();
        format!(
            "<sip:{}:{};transport={};lr>",
            addr.ip(),
            addr.port(),
            self.transport.param()
        )
    }

    /// Our WebSocket-facing Record-Route URI; its flow token routes in-dialog requests from the
    /// IMS side down the right connection (RFC 5626 §5.3 applies to dialogs as to Path).
    pub fn rr_ws(&self, key: &FlowKey, flow: FlowId) -> String {
        let addr = self.ims_addr();
        format!(
            "<sip:{}@{}:{};transport=ws;lr;ob>",
            key.token(flow),
            addr.ip(),
            addr.port()
        )
    }

    /// Via sent-by toward the IMS.
    pub fn via_ims(&self, branch: &str) -> String {
        let addr = self.ims_addr();
        format!(
            "SIP/2.0/{} {}:{};branch={}",
            self.transport.via(),
            addr.ip(),
            addr.port(),
            branch
        )
    }

    /// Via sent-by toward a WebSocket client (RFC 7118 §5.2).
    pub fn via_ws(&self, branch: &str) -> String {
        format!("SIP/2.0/WS {};branch={}", self.ws_host, branch)
    }

    /// Via sent-by toward a client connected as `kind` (RFC 3261 §18.1.1: the address the
    /// phone can answer to; `rport` asked, RFC 3581).
    pub fn via_flow(&self, kind: FlowKind, branch: &str) -> String {
        let (t, a) = match self.advertised(kind) {
            FlowKind::Ws => return self.via_ws(branch),
            FlowKind::Udp(a) => ("UDP", a),
            FlowKind::Tcp(a) => ("TCP", a),
            FlowKind::Tls(a) => ("TLS", a),
        };
        format!("SIP/2.0/{t} {};rport;branch={branch}", hostport(a))
    }

    /// Our Record-Route URI facing a client connected as `kind`, with the flow token.
    pub fn rr_flow(&self, kind: FlowKind, key: &FlowKey, flow: FlowId) -> String {
        let (t, a) = match self.advertised(kind) {
            FlowKind::Ws => return self.rr_ws(key, flow),
            FlowKind::Udp(a) => ("udp", a),
            FlowKind::Tcp(a) => ("tcp", a),
            FlowKind::Tls(a) => ("tls", a),
        };
        format!(
            "<sip:{}@{};transport={t};lr;ob>",
            key.token(flow),
            hostport(a)
        )
    }

    /// `kind` with a wildcard listener address replaced by the one phones can reach: a Via or
    /// Record-Route naming 0.0.0.0 would send the phone's next request to itself.
    fn advertised(&self, kind: FlowKind) -> FlowKind {
        let fix = |a: SocketAddr| {
            if a.ip().is_unspecified() {
                SocketAddr::new(self.phone_advertise.unwrap_or(self.listen.ip()), a.port())
            } else {
                a
            }
        };
        match kind {
            FlowKind::Ws => FlowKind::Ws,
            FlowKind::Udp(a) => FlowKind::Udp(fix(a)),
            FlowKind::Tcp(a) => FlowKind::Tcp(fix(a)),
            FlowKind::Tls(a) => FlowKind::Tls(fix(a)),
        }
    }

    /// Whether a Via's sent-by is one of ours.
    pub fn is_our_via(&self, host: &str, port: Option<u16>) -> bool {
        if host.eq_ignore_ascii_case(&self.ws_host) {
            return true;
        }
        self.is_our_hostport(host, port)
    }

    /// Whether `uri` names us; if so, what it carries.
    pub fn our_route(&self, uri: &Uri, key: &FlowKey) -> Option<OurRoute> {
        let Uri::Sip(sip) = uri else {
            return None;
        };
        if !self.is_our_hostport(&sip.host, sip.port) {
            return None;
        }
        Some(match sip.user.as_deref() {
            None | Some("") => OurRoute::Plain,
            Some(user) => match key.verify(user) {
                Ok(flow) => OurRoute::Flow(flow),
                Err(FlowTokenError::Malformed | FlowTokenError::Forged) => OurRoute::Forged,
            },
        })
    }

    fn is_our_hostport(&self, host: &str, port: Option<u16>) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let Ok(ip) = host.parse::<std::net::IpAddr>() else {
            return false;
        };
        let port = port.unwrap_or(5060);
        let mine = |a: SocketAddr| a.ip() == ip && a.port() == port;
        let advertised = self.phone_advertise.unwrap_or(self.listen.ip());
        let client = |a: &SocketAddr| {
            a.port() == port && (a.ip() == ip || (a.ip().is_unspecified() && advertised == ip))
        };
        mine(self.listen) || self.tls_listen.is_some_and(mine) || self.clients.iter().any(client)
    }
}

/// `host:port`, brackets around an IPv6 address.
fn hostport(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(v) => format!("{}:{}", v.ip(), v.port()),
        SocketAddr::V6(v) => format!("[{}]:{}", v.ip(), v.port()),
    }
}

/// Whether a SIP URI carries `ob` (RFC 5626 §5.3).
pub fn has_ob(uri: &SipUri) -> bool {
    uri.param("ob").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> Local {
        Local {
            listen: "127.0.0.1:5062".parse().expect("addr"),
            tls_listen: Some("127.0.0.1:5063".parse().expect("addr")),
            transport: UpstreamTransport::Udp,
            ws_host: "imsgw.invalid".into(),
            clients: vec!["127.0.0.1:5080".parse().expect("addr")],
            phone_advertise: None,
        }
    }

    fn uri(s: &str) -> Uri {
        Uri::Sip(SipUri::parse(s).expect("uri"))
    }

    #[test]
    fn rfc5626_path_carries_a_token_that_routes_back() {
        let key = FlowKey::random();
        let l = local();
        let path = l.path(&key, FlowId(42), true);
        let inner = path.trim_start_matches('<').trim_end_matches('>');
        let u = SipUri::parse(inner).expect("our path parses");
        assert!(has_ob(&u));
        assert_eq!(
            l.our_route(&Uri::Sip(u), &key),
            Some(OurRoute::Flow(FlowId(42)))
        );
    }

    #[test]
    fn foreign_and_forged_routes_are_told_apart() {
        let key = FlowKey::random();
        let l = local();
        assert_eq!(l.our_route(&uri("sip:127.0.0.1:5070;lr"), &key), None);
        assert_eq!(
            l.our_route(&uri("sip:127.0.0.1:5062;lr"), &key),
            Some(OurRoute::Plain)
        );
        assert_eq!(
            l.our_route(
                &uri("sip:AAAAAAAAAAAAAAAAAAAAAAAAAAA@127.0.0.1:5062;lr"),
                &key
            ),
            Some(OurRoute::Forged)
        );
        assert_eq!(l.our_route(&uri("sip:127.0.0.1;lr"), &key), None);
    }

    #[test]
    fn via_and_record_route_toward_a_phone_name_the_listener_it_used() {
        let key = FlowKey::random();
        let l = local();
        let a: SocketAddr = "127.0.0.1:5080".parse().expect("addr");
        assert_eq!(
            l.via_flow(FlowKind::Udp(a), "z9hG4bKx"),
            "SIP/2.0/UDP 127.0.0.1:5080;rport;branch=z9hG4bKx"
        );
        let v6: SocketAddr = "[::1]:5081".parse().expect("addr");
        assert_eq!(
            l.via_flow(FlowKind::Tls(v6), "b"),
            "SIP/2.0/TLS [::1]:5081;rport;branch=b"
        );
        assert_eq!(l.via_flow(FlowKind::Ws, "b"), l.via_ws("b"));
        let rr = l.rr_flow(FlowKind::Tcp(a), &key, FlowId(7));
        assert!(rr.ends_with("@127.0.0.1:5080;transport=tcp;lr;ob>"), "{rr}");
        // It routes back to the flow, as any URI of ours does.
        let u = SipUri::parse(rr.trim_start_matches('<').trim_end_matches('>')).expect("uri");
        assert_eq!(
            l.our_route(&Uri::Sip(u), &key),
            Some(OurRoute::Flow(FlowId(7)))
        );
    }
}
