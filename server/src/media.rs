//! `[media]`: the eIMS-AGW's settings as the operator writes them, checked once, and turned into
//! the engine's [`imsgw_media::MediaConfig`]. Without a `[media]` section the gateway anchors no
//! media: SDP passes through untouched (signalling-only, for interop testers who bring their own
//! media path).
//!
//! Owns: the `[media]` keys and their checks. Must not touch: the engine, SIP.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

use serde::Deserialize;

/// `[media]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaSection {
    /// `media.listen`: the one UDP socket every browser's WebRTC media uses (ICE-lite host
    /// candidate, DTLS-SRTP, rtcp-mux, BUNDLE). Required.
    pub listen: SocketAddr,
    /// `media.public_addresses`: the addresses browsers reach `listen`'s port at, put in the
    /// ICE candidates (a NAT's public address, or several). Default: `listen`'s IP, which
    /// must then not be unspecified (`0.0.0.0`).
    #[serde(default)]
    pub public_addresses: Vec<IpAddr>,
    /// `media.ims_address`: the address IMS-side RTP ports bind to and the IMS-side SDP names
    /// in `c=`. Default: `sip.listen`'s IP.
    #[serde(default)]
    pub ims_address: Option<IpAddr>,
    /// `media.rtp_ports`: the IMS-side RTP port range, `"FIRST-LAST"`; every call takes an even
    /// port and the next one (RTCP). Default `"30000-39999"` (5000 calls).
    #[serde(default = "default_rtp_ports")]
    pub rtp_ports: String,
    /// `media.inactivity_secs`: a browser that answers no STUN consent check for this long
    /// ends its call, with a BYE toward the IMS (RFC 7675 §5.1 says 30). Default 30.
    #[serde(default = "default_inactivity")]
    pub inactivity_secs: u64,
    /// `media.latch`: follow the IMS peer's real RTP source address when it differs from its
    /// SDP. Default false: latching lets anyone who guesses a port take a call's audio.
    #[serde(default)]
    pub latch: bool,
    /// `media.max_sessions`: calls with media at once; a new one past it is refused `503`.
    /// Default: as many as `rtp_ports` holds.
    #[serde(default)]
    pub max_sessions: Option<usize>,
    /// `media.recv_buffer`: receive buffer of the `listen` socket in bytes. Every call's media
    /// arrives there: the kernel default (about 208 KiB) holds about 10 ms of 400 calls, so a
    /// pause of the media thread longer than that drops packets. Capped by
    /// `net.core.rmem_max` unless imsgw runs with CAP_NET_ADMIN. Default 4194304.
    #[serde(default = "default_recv_buffer")]
    pub recv_buffer: usize,
    /// `media.max_calls_per_user`: calls with media one IMPU may have at once over all its
    /// connections (each connection also holds at most 4). Past it the person's own INVITE gets
    /// `403` and one toward them `486`, before a media port is taken: without it, one signed-in
    /// person with enough connections could hold every port. Default 8.
    #[serde(default = "default_calls_per_user")]
    pub max_calls_per_user: usize,
}

fn default_calls_per_user() -> usize {
    8
}

fn default_recv_buffer() -> usize {
    4 * 1024 * 1024
}

fn default_rtp_ports() -> String {
    "30000-39999".into()
}

fn default_inactivity() -> u64 {
    30
}

impl MediaSection {
    /// The engine's settings; `sip_listen` gives the default IMS-side address. An error names
    /// the key and the fix.
    pub fn engine_config(
        &self,
        sip_listen: SocketAddr,
    ) -> Result<imsgw_media::MediaConfig, (String, String)> {
        let key = |k: &str, m: &str| (format!("media.{k}"), m.to_string());
        let rtp_ports = parse_ports(&self.rtp_ports).map_err(|m| key("rtp_ports", m))?;
        let public_addresses = if self.public_addresses.is_empty() {
            if self.listen.ip().is_unspecified() {
                return Err(key(
                    "public_addresses",
                    "required when media.listen is an unspecified address (0.0.0.0 or ::): browsers need an address to send media to",
                ));
            }
            vec![self.listen.ip()]
        } else {
            self.public_addresses.clone()
        };
        if public_addresses.iter().any(|a| a.is_unspecified()) {
            return Err(key(
                "public_addresses",
                "must name addresses browsers can reach, not 0.0.0.0 or ::",
            ));
        }
        if self.listen.port() == 0 {
            return Err(key(
                "listen",
                "needs a fixed port: browsers are told it in SDP",
            ));
        }
        if !(1..=3600).contains(&self.inactivity_secs) {
            return Err(key("inactivity_secs", "must be between 1 and 3600"));
        }
        let ims_address = self.ims_address.unwrap_or(sip_listen.ip());
        if ims_address.is_unspecified() {
            return Err(key(
                "ims_address",
                "must be an address the IMS side can send RTP to, not 0.0.0.0 or ::",
            ));
        }
        let first_even = usize::from(*rtp_ports.start()).next_multiple_of(2);
        // Even ports p with p + 1 in the range.
        let pairs = (usize::from(*rtp_ports.end()) - first_even).div_ceil(2);
        let max_sessions = self.max_sessions.unwrap_or(pairs);
        if max_sessions == 0 {
            return Err(key("max_sessions", "must be at least 1"));
        }
        if self.max_calls_per_user == 0 {
            return Err(key("max_calls_per_user", "must be at least 1"));
        }
        Ok(imsgw_media::MediaConfig {
            listen: self.listen,
            public_addresses,
            ims_address,
            rtp_ports,
            inactivity: Duration::from_secs(self.inactivity_secs),
            latch: self.latch,
            max_sessions,
            recv_buffer: self.recv_buffer,
        })
    }
}

/// `"FIRST-LAST"`, at least one even/odd pair, not below 1024.
fn parse_ports(s: &str) -> Result<RangeInclusive<u16>, &'static str> {
    const WHAT: &str = "must be \"FIRST-LAST\" with 1024 <= FIRST < LAST <= 65535, holding at least one even port and the next";
    let (a, b) = s.split_once('-').ok_or(WHAT)?;
    let first: u16 = a.trim().parse().map_err(|_| WHAT)?;
    let last: u16 = b.trim().parse().map_err(|_| WHAT)?;
    if first < 1024 || last <= first {
        return Err(WHAT);
    }
    let first_even = first + (first % 2);
    if first_even >= last {
        return Err(WHAT);
    }
    Ok(first..=last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(toml_text: &str) -> MediaSection {
        toml::from_str(toml_text).expect("parses")
    }

    #[test]
    fn defaults_come_from_listen_and_sip() {
        let s = section("listen = \"127.0.0.1:10000\"");
        let c = s
            .engine_config("127.0.0.2:5062".parse().expect("addr"))
            .expect("valid");
        assert_eq!(
            c.public_addresses,
            vec!["127.0.0.1".parse::<IpAddr>().expect("ip")]
        );
        assert_eq!(c.ims_address, "127.0.0.2".parse::<IpAddr>().expect("ip"));
        assert_eq!(c.rtp_ports, 30000..=39999);
        assert_eq!(c.max_sessions, 5000);
        assert!(!c.latch);
        assert_eq!(c.recv_buffer, 4 << 20);
        assert_eq!(s.max_calls_per_user, 8);
    }

    #[test]
    fn bad_values_name_their_key() {
        let sip = "127.0.0.1:5062".parse().expect("addr");
        for (text, key) in [
            ("listen = \"0.0.0.0:10000\"", "media.public_addresses"),
            ("listen = \"127.0.0.1:0\"", "media.listen"),
            (
                "listen = \"127.0.0.1:1\"\nrtp_ports = \"5000\"",
                "media.rtp_ports",
            ),
            (
                "listen = \"127.0.0.1:1\"\nrtp_ports = \"5001-5002\"",
                "media.rtp_ports",
            ),
            (
                "listen = \"127.0.0.1:1\"\nrtp_ports = \"900-2000\"",
                "media.rtp_ports",
            ),
            (
                "listen = \"127.0.0.1:1\"\ninactivity_secs = 0",
                "media.inactivity_secs",
            ),
            (
                "listen = \"127.0.0.1:1\"\nims_address = \"0.0.0.0\"",
                "media.ims_address",
            ),
            (
                "listen = \"127.0.0.1:1\"\nmax_sessions = 0",
                "media.max_sessions",
            ),
            (
                "listen = \"127.0.0.1:1\"\nmax_calls_per_user = 0",
                "media.max_calls_per_user",
            ),
        ] {
            let err = section(text).engine_config(sip).expect_err(text);
            assert_eq!(err.0, key, "{text}: {err:?}");
        }
    }
}
