//! SDP of both legs, as text in and text out, with no I/O (RFC 4566 / RFC 3264).
//!
//! Owns: parsing an SDP body into the few facts the gateway reasons about (audio codecs and
//! their payload types, direction, address and port, RTCP port, rtcp-mux), the codec
//! intersection with what imsgw carries, and building the IMS-side RTP/AVP SDP from scratch
//! (TS 23.334 §5.20: nothing of ICE, DTLS, BUNDLE, mid, msid, ssrc, rtcp-fb or extmap reaches
//! the IMS). It also narrows str0m's browser-side answer to the codecs and direction the IMS
//! chose.
//! Must not touch: sockets, str0m sessions, SIP.

use std::fmt::Write as _;
use std::net::IpAddr;

/// The largest SDP body looked at; past it the offer is refused (bounded by construction).
pub const MAX_SDP_LEN: usize = 64 * 1024;
/// At most this many m-lines and this many formats per m-line are considered.
const MAX_MEDIA: usize = 16;
const MAX_FORMATS: usize = 64;

/// Why an SDP body cannot be used; each renders as the `Warning: 399` text of a 488.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP body too large ({0} bytes)")]
    TooLarge(usize),
    #[error("SDP has no v=0 line")]
    NoVersion,
    #[error("SDP line {0} is malformed: {1}")]
    BadLine(usize, &'static str),
    #[error("SDP has no audio m-line")]
    NoAudio,
    #[error("SDP audio m-line has no usable connection address")]
    NoAddress,
    #[error("SDP audio transport {0} is not RTP/AVP")]
    NotRtpAvp(String),
    #[error("no common codec: {offered} offered; imsgw carries {carried}")]
    NoCommonCodec { offered: String, carried: String },
}

/// What imsgw carries between the legs, untouched (no transcoding yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecName {
    Pcma,
    Pcmu,
    G722,
    Opus,
    /// RFC 4733 events; paired with the audio codec of the same clock rate.
    TelephoneEvent,
}

impl CodecName {
    fn from_encoding(name: &str) -> Option<CodecName> {
        Some(match name.to_ascii_lowercase().as_str() {
            "pcma" => CodecName::Pcma,
            "pcmu" => CodecName::Pcmu,
            "g722" => CodecName::G722,
            "opus" => CodecName::Opus,
            "telephone-event" => CodecName::TelephoneEvent,
            _ => return None,
        })
    }

    /// The encoding name as RFC 3551 / RFC 7587 / RFC 4733 spell it in `a=rtpmap`.
    pub fn encoding(self) -> &'static str {
        match self {
            CodecName::Pcma => "PCMA",
            CodecName::Pcmu => "PCMU",
            CodecName::G722 => "G722",
            CodecName::Opus => "opus",
            CodecName::TelephoneEvent => "telephone-event",
        }
    }
}

/// The list named in a 488 warning.
pub const CARRIED: &str =
    "PCMA/8000, PCMU/8000, G722/8000, opus/48000/2, telephone-event/8000, telephone-event/48000";

/// A payload type as one SDP names it (`a=rtpmap`, or a static RFC 3551 number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub pt: u8,
    pub encoding: String,
    pub clock: u32,
    pub channels: Option<u8>,
    pub fmtp: Option<String>,
}

/// Whether `codecs` hold a voice codec, not only telephone-event: a call needs one.
pub fn has_voice(codecs: &[RtpMap]) -> bool {
    codecs
        .iter()
        .any(|c| c.carried() != Some(CodecName::TelephoneEvent))
}

impl RtpMap {
    /// The codec imsgw knows it as, if it carries it at this clock rate.
    pub fn carried(&self) -> Option<CodecName> {
        let name = CodecName::from_encoding(&self.encoding)?;
        let ok = match name {
            CodecName::Pcma | CodecName::Pcmu | CodecName::G722 => self.clock == 8000,
            // RFC 7587 §7: always opus/48000/2.
            CodecName::Opus => self.clock == 48000 && self.channels == Some(2),
            CodecName::TelephoneEvent => self.clock == 8000 || self.clock == 48000,
        };
        ok.then_some(name)
    }

    fn label(&self) -> String {
        match self.channels {
            Some(c) if c != 1 => format!("{}/{}/{}", self.encoding, self.clock, c),
            _ => format!("{}/{}", self.encoding, self.clock),
        }
    }

    /// Same codec on the other leg (names case-insensitive, same clock); PTs may differ.
    pub fn same_codec(&self, other: &RtpMap) -> bool {
        self.encoding.eq_ignore_ascii_case(&other.encoding) && self.clock == other.clock
    }
}

/// Media direction, from the point of view of the side that wrote the SDP (RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
    fn from_parts(send: bool, recv: bool) -> Direction {
        match (send, recv) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }
    /// The direction seen from the other end (RFC 3264 §6.1: sendonly is answered recvonly).
    pub fn reversed(self) -> Direction {
        Direction::from_parts(self.receives(), self.sends())
    }
    /// What both allow.
    pub fn and(self, other: Direction) -> Direction {
        Direction::from_parts(
            self.sends() && other.sends(),
            self.receives() && other.receives(),
        )
    }
    pub fn attr(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
    fn from_attr(a: &str) -> Option<Direction> {
        Some(match a {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }
}

/// The first audio m-line of an SDP body: what the gateway needs of either leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioDesc {
    /// `c=` of the media or the session.
    pub addr: Option<IpAddr>,
    pub port: u16,
    pub proto: String,
    /// Every format of the m-line in order, with its rtpmap (static ones filled in).
    pub codecs: Vec<RtpMap>,
    /// Formats the m-line lists that have no rtpmap and no static meaning.
    pub unknown_formats: Vec<String>,
    pub direction: Direction,
    pub rtcp_mux: bool,
    /// `a=rtcp:` (RFC 3605), port and optional address.
    pub rtcp: Option<(u16, Option<IpAddr>)>,
    /// How many m-lines other than this one were present (video, application...).
    pub other_media: usize,
    /// `a=mid` (RFC 5888), when the SDP has one (the browser's does).
    pub mid: Option<String>,
}

impl AudioDesc {
    /// The codecs imsgw carries, in this SDP's order; a telephone-event is kept only when an
    /// audio codec of the same clock is kept (RFC 4733 §2.5.1.2 events share the clock).
    pub fn carried(&self) -> Vec<RtpMap> {
        let audio: Vec<&RtpMap> = self
            .codecs
            .iter()
            .filter(|c| c.carried().is_some_and(|n| n != CodecName::TelephoneEvent))
            .collect();
        self.codecs
            .iter()
            .filter(|c| match c.carried() {
                None => false,
                Some(CodecName::TelephoneEvent) => audio.iter().any(|a| a.clock == c.clock),
                Some(_) => true,
            })
            .cloned()
            .collect()
    }

    /// [`Self::carried`], or the 488 naming what was offered and what imsgw carries.
    pub fn common(&self) -> Result<Vec<RtpMap>, SdpError> {
        let common = self.carried();
        if has_voice(&common) {
            return Ok(common);
        }
        let mut offered: Vec<String> = self.codecs.iter().map(RtpMap::label).collect();
        offered.extend(
            self.unknown_formats
                .iter()
                .map(|f| format!("payload type {f}")),
        );
        if offered.is_empty() {
            offered.push("nothing".into());
        }
        Err(SdpError::NoCommonCodec {
            offered: offered.join(", "),
            carried: CARRIED.into(),
        })
    }
}

/// Parses an SDP body down to its first audio m-line. Never panics; bounded.
pub fn parse_audio(sdp: &str) -> Result<AudioDesc, SdpError> {
    if sdp.len() > MAX_SDP_LEN {
        return Err(SdpError::TooLarge(sdp.len()));
    }
    let mut seen_v = false;
    let mut session_addr = None;
    let mut session_dir = None;
    // Index into `media` of the current m-line, if it is the audio one we keep.
    let mut media_count = 0usize;
    let mut audio: Option<AudioDesc> = None;
    let mut in_audio = false;
    let mut audio_addr = None;
    let mut audio_dir = None;
    let mut format_order: Vec<u8> = Vec::new();
    for (i, raw) in sdp.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        let n = i + 1;
        if line.is_empty() {
            continue;
        }
        let Some((kind, value)) = line.split_once('=') else {
            return Err(SdpError::BadLine(n, "no '='"));
        };
        match kind {
            "v" => {
                if value.trim() != "0" {
                    return Err(SdpError::BadLine(n, "version is not 0"));
                }
                seen_v = true;
            }
            "m" => {
                media_count += 1;
                if media_count > MAX_MEDIA {
                    return Err(SdpError::BadLine(n, "too many m-lines"));
                }
                in_audio = false;
                let mut parts = value.split_ascii_whitespace();
                let media = parts.next().ok_or(SdpError::BadLine(n, "empty m-line"))?;
                if media != "audio" || audio.is_some() {
                    continue;
                }
                let port = parts
                    .next()
                    .and_then(|p| p.split('/').next())
                    .and_then(|p| p.parse::<u16>().ok())
                    .ok_or(SdpError::BadLine(n, "bad m-line port"))?;
                let proto = parts
                    .next()
                    .ok_or(SdpError::BadLine(n, "m-line has no transport"))?
                    .to_string();
                let mut desc = AudioDesc {
                    addr: None,
                    port,
                    proto,
                    codecs: Vec::new(),
                    unknown_formats: Vec::new(),
                    direction: Direction::SendRecv,
                    rtcp_mux: false,
                    rtcp: None,
                    other_media: 0,
                    mid: None,
                };
                for f in parts.take(MAX_FORMATS) {
                    let Ok(pt) = f.parse::<u8>() else {
                        return Err(SdpError::BadLine(n, "format is not a payload type"));
                    };
                    if pt > 127 {
                        return Err(SdpError::BadLine(n, "payload type above 127"));
                    }
                    format_order.push(pt);
                    match static_pt(pt) {
                        Some(m) => desc.codecs.push(m),
                        None => desc.unknown_formats.push(f.to_string()),
                    }
                }
                audio = Some(desc);
                in_audio = true;
            }
            "c" => {
                let addr = parse_connection(value).ok_or(SdpError::BadLine(n, "bad c= line"))?;
                if media_count == 0 {
                    session_addr = Some(addr);
                } else if in_audio {
                    audio_addr = Some(addr);
                }
            }
            "a" => {
                let (name, val) = match value.split_once(':') {
                    Some((a, v)) => (a, Some(v)),
                    None => (value, None),
                };
                if let Some(d) = Direction::from_attr(name) {
                    if media_count == 0 {
                        session_dir = Some(d);
                    } else if in_audio {
                        audio_dir = Some(d);
                    }
                    continue;
                }
                let Some(desc) = audio.as_mut().filter(|_| in_audio) else {
                    continue;
                };
                match (name, val) {
                    ("rtcp-mux", _) => desc.rtcp_mux = true,
                    ("mid", Some(v)) if !v.is_empty() && v.len() <= 32 => {
                        desc.mid = Some(v.trim().to_string());
                    }
                    ("rtpmap", Some(v)) => {
                        let m = parse_rtpmap(v).ok_or(SdpError::BadLine(n, "bad a=rtpmap"))?;
                        // An rtpmap names a format of the m-line; one naming none is ignored.
                        if let Some(pos) = desc
                            .unknown_formats
                            .iter()
                            .position(|f| f.parse::<u8>().ok() == Some(m.pt))
                        {
                            desc.unknown_formats.remove(pos);
                            desc.codecs.push(m);
                        } else if let Some(c) = desc.codecs.iter_mut().find(|c| c.pt == m.pt) {
                            let fmtp = c.fmtp.take();
                            *c = RtpMap { fmtp, ..m };
                        }
                    }
                    ("fmtp", Some(v)) => {
                        let (pt, params) = v
                            .split_once(' ')
                            .ok_or(SdpError::BadLine(n, "bad a=fmtp"))?;
                        let pt = pt
                            .parse::<u8>()
                            .map_err(|_| SdpError::BadLine(n, "bad a=fmtp"))?;
                        if let Some(c) = desc.codecs.iter_mut().find(|c| c.pt == pt) {
                            c.fmtp = Some(params.trim().to_string());
                        }
                    }
                    ("rtcp", Some(v)) => {
                        let mut p = v.split_ascii_whitespace();
                        let port = p.next().and_then(|x| x.parse::<u16>().ok());
                        let rest: Vec<&str> = p.collect();
                        let addr = (rest.len() == 3)
                            .then(|| rest[2].parse::<IpAddr>().ok())
                            .flatten();
                        desc.rtcp = port.map(|port| (port, addr));
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if !seen_v {
        return Err(SdpError::NoVersion);
    }
    let mut desc = audio.ok_or(SdpError::NoAudio)?;
    // Formats listed in the m-line before their rtpmap keep the m-line order.
    desc.codecs
        .sort_by_key(|c| format_order.iter().position(|p| *p == c.pt));
    desc.addr = audio_addr.or(session_addr);
    desc.direction = audio_dir.or(session_dir).unwrap_or_default();
    desc.other_media = media_count.saturating_sub(1);
    Ok(desc)
}

fn static_pt(pt: u8) -> Option<RtpMap> {
    // RFC 3551 §6, Table 4: the static audio types imsgw carries.
    let (encoding, clock) = match pt {
        0 => ("PCMU", 8000),
        8 => ("PCMA", 8000),
        9 => ("G722", 8000),
        _ => return None,
    };
    Some(RtpMap {
        pt,
        encoding: encoding.into(),
        clock,
        channels: None,
        fmtp: None,
    })
}

fn parse_rtpmap(v: &str) -> Option<RtpMap> {
    let (pt, rest) = v.split_once(' ')?;
    let pt = pt.parse::<u8>().ok().filter(|p| *p <= 127)?;
    let mut parts = rest.trim().split('/');
    let encoding = parts.next()?.to_string();
    if encoding.is_empty() || encoding.len() > 32 {
        return None;
    }
    let clock = parts.next()?.parse::<u32>().ok().filter(|c| *c > 0)?;
    let channels = match parts.next() {
        Some(c) => Some(c.parse::<u8>().ok()?),
        None => None,
    };
    Some(RtpMap {
        pt,
        encoding,
        clock,
        channels,
        fmtp: None,
    })
}

fn parse_connection(v: &str) -> Option<IpAddr> {
    let mut p = v.split_ascii_whitespace();
    if p.next()? != "IN" {
        return None;
    }
    let family = p.next()?;
    // RFC 4566 §5.7: a multicast TTL may follow after '/'.
    let addr = p.next()?.split('/').next()?.parse::<IpAddr>().ok()?;
    match (family, addr) {
        ("IP4", IpAddr::V4(_)) | ("IP6", IpAddr::V6(_)) => Some(addr),
        _ => None,
    }
}

/// What goes into an IMS-side SDP (offer or answer) that imsgw writes.
#[derive(Debug, Clone)]
pub struct ImsSdp<'a> {
    pub session_id: u64,
    pub version: u64,
    pub addr: IpAddr,
    pub port: u16,
    pub codecs: &'a [RtpMap],
    pub direction: Direction,
    pub rtcp_mux: bool,
}

impl ImsSdp<'_> {
    /// Plain RTP/AVP, built fresh: nothing of the browser's SDP is copied but the codecs.
    pub fn build(&self) -> String {
        let ip = match self.addr {
            IpAddr::V4(_) => "IP4",
            IpAddr::V6(_) => "IP6",
        };
        let mut s = String::with_capacity(256);
        // Writing to a String cannot fail.
        let _ = write!(
            s,
            "v=0\r\no=imsgw {} {} IN {ip} {}\r\ns=-\r\nc=IN {ip} {}\r\nt=0 0\r\nm=audio {} RTP/AVP",
            self.session_id, self.version, self.addr, self.addr, self.port
        );
        for c in self.codecs {
            let _ = write!(s, " {}", c.pt);
        }
        s.push_str("\r\n");
        for c in self.codecs {
            let name = c.carried().map(CodecName::encoding).unwrap_or(&c.encoding);
            match c.channels {
                Some(ch) if ch != 1 => {
                    let _ = write!(s, "a=rtpmap:{} {}/{}/{}\r\n", c.pt, name, c.clock, ch);
                }
                _ => {
                    let _ = write!(s, "a=rtpmap:{} {}/{}\r\n", c.pt, name, c.clock);
                }
            }
            if let Some(f) = &c.fmtp {
                let _ = write!(s, "a=fmtp:{} {}\r\n", c.pt, f);
            }
        }
        let _ = write!(
            s,
            "a=ptime:20\r\na={}\r\na=rtcp:{}\r\n",
            self.direction.attr(),
            self.port.saturating_add(1)
        );
        if self.rtcp_mux {
            s.push_str("a=rtcp-mux\r\n");
        }
        s
    }
}

/// Narrows str0m's browser-side SDP (answer, or offer on an IMS re-offer): the first audio
/// m-line keeps only `keep` payload types (with their rtpmap/fmtp/rtcp-fb lines) and carries
/// `direction`. str0m writes every codec its `Rtc` was built with; the IMS chose or offered
/// fewer. Other m-lines are left as str0m wrote them.
pub fn narrow_audio(answer: &str, keep: &[u8], direction: Direction) -> String {
    let mut out = String::with_capacity(answer.len());
    let mut in_audio = false;
    let mut seen_audio = false;
    for raw in answer.lines() {
        let line = raw.trim_end_matches('\r');
        if let Some(m) = line.strip_prefix("m=") {
            in_audio = m.starts_with("audio ") && !seen_audio;
            seen_audio |= in_audio;
            if in_audio {
                let parts: Vec<&str> = m.split(' ').collect();
                if parts.len() >= 3 {
                    let _ = write!(out, "m={} {} {}", parts[0], parts[1], parts[2]);
                    for f in &parts[3..] {
                        if f.parse::<u8>().is_ok_and(|p| keep.contains(&p)) {
                            let _ = write!(out, " {f}");
                        }
                    }
                    out.push_str("\r\n");
                    continue;
                }
            }
        } else if in_audio && let Some(a) = line.strip_prefix("a=") {
            let name = a.split([':', ' ']).next().unwrap_or("");
            if Direction::from_attr(name).is_some() {
                let _ = write!(out, "a={}\r\n", direction.attr());
                continue;
            }
            if matches!(name, "rtpmap" | "fmtp" | "rtcp-fb") {
                let pt = a
                    .split_once(':')
                    .and_then(|(_, v)| v.split(' ').next())
                    .and_then(|p| p.parse::<u8>().ok());
                if pt.is_some_and(|p| !keep.contains(&p)) {
                    continue;
                }
            }
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
#[path = "sdp_tests.rs"]
mod tests;
