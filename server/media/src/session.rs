//! One call's media: the browser leg (a str0m `Rtc`, ICE-lite, DTLS-SRTP, RTP mode) beside its
//! IMS leg, and the offer/answer state between the two SDPs.
//!
//! Owns: the call's `Rtc`, its [`ImsLeg`], the negotiated codecs/directions of both legs, the
//! payload-type map, and turning each command's SDP into the other leg's SDP. A re-offer from
//! either side never restarts ICE or DTLS: the same `Rtc` (same ufrag, password, certificate and
//! DTLS role) and the same IMS port serve the call until it ends (TS 23.334 §5.20).
//! Must not touch: sockets other than its own IMS pair, other sessions, the demux tables.

use std::net::SocketAddr;
use std::time::Instant;

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{MediaKind, Mid};
use str0m::{IceCreds, Rtc};

pub use crate::browser_leg::{RtcContext, SeqOut};
use crate::browser_leg::{build_rtc, to_str0m};

use crate::CallRef;
use crate::codec::{PassThrough, PtMap};
use crate::ims_leg::ImsLeg;
use crate::sdp::{self, AudioDesc, CodecName, Direction, ImsSdp, RtpMap, SdpError};

/// A command that cannot be done: the SIP status and `Warning` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub warning: String,
}

impl Refusal {
    pub fn sdp(e: impl std::fmt::Display) -> Refusal {
        Refusal {
            status: 488,
            warning: e.to_string(),
        }
    }
}

impl From<SdpError> for Refusal {
    fn from(e: SdpError) -> Refusal {
        Refusal::sdp(e)
    }
}

/// Where the offer/answer exchange of this call stands.
enum Negotiation {
    Idle,
    /// The browser offered; the IMS offer went out; the IMS answer is awaited.
    AwaitImsAnswer {
        offer: Box<SdpOffer>,
        browser: AudioDesc,
        offered: Vec<RtpMap>,
    },
    /// The IMS offered; the WebRTC offer went out; the browser answer is awaited.
    AwaitBrowserAnswer {
        pending: Option<Box<SdpPendingOffer>>,
        ims: AudioDesc,
        offered: Vec<RtpMap>,
    },
}

/// The last IMS answer applied, kept to recognise a retransmission (183 then 200 with the
/// same body) and to re-narrow str0m's answer when another early dialog answers.
struct Answered {
    ims_sdp: String,
    str0m_answer: String,
    browser: AudioDesc,
    offered: Vec<RtpMap>,
    sent: String,
}

pub struct Session {
    pub call: CallRef,
    pub ufrag: String,
    /// Our ICE password: STUN from the browser is checked against it before it counts.
    pub ice_pwd: String,
    pub rtc: Rtc,
    pub ims: ImsLeg,
    /// The seam between legs (a transcoder later).
    pub relay: PassThrough,
    pub mid: Option<Mid>,
    /// Browser transport addresses seen in valid-looking STUN (for demux and cleanup).
    pub browser_addrs: Vec<SocketAddr>,
    /// RFC 7675: when consent was last refreshed; None until the browser-side SDP went out.
    pub consent_at: Option<Instant>,
    /// Whether media may flow browser→IMS / IMS→browser (hold: RFC 3264 §8.4).
    pub to_ims: bool,
    pub to_browser: bool,
    /// The browser closed DTLS (hung up); the session waits for Release or consent loss.
    pub remote_closed: bool,
    /// Extended RTP sequence toward the browser (SRTP index, RFC 3711 §3.3.1).
    pub seq_out: SeqOut,
    pub rtc_timeout: Instant,
    /// The earliest deadline queued in the engine's timer heap for this session.
    pub scheduled: Option<Instant>,
    session_id: u64,
    version: u64,
    /// Codecs the `Rtc` was built with (its PTs); str0m cannot add codecs later.
    rtc_codecs: Vec<RtpMap>,
    state: Negotiation,
    answered: Option<Answered>,
}

impl Session {
    /// The browser's initial offer: builds the `Rtc` (not answered yet) and the IMS offer.
    /// `take_leg` is called only once the SDP is known good (a bad offer holds no port).
    pub fn from_browser_offer(
        call: CallRef,
        sdp_text: &str,
        ctx: &RtcContext,
        take_leg: impl FnOnce() -> Result<ImsLeg, Refusal>,
        now: Instant,
    ) -> Result<(Session, String), Refusal> {
        let (browser, common, offer) = check_browser_offer(sdp_text)?;
        let (rtc, creds) = build_rtc(ctx, &common, now);
        let mut s = Session::new(call, rtc, creds, take_leg()?, common.clone(), now);
        s.mid = browser.mid.as_deref().map(Mid::from);
        let out = s.ims_offer(&browser, &common);
        s.state = Negotiation::AwaitImsAnswer {
            offer: Box::new(offer),
            browser,
            offered: common,
        };
        Ok((s, out))
    }

    /// The IMS's initial offer: builds the `Rtc` as offerer and the WebRTC offer.
    pub fn from_ims_offer(
        call: CallRef,
        sdp_text: &str,
        ctx: &RtcContext,
        take_leg: impl FnOnce() -> Result<ImsLeg, Refusal>,
        now: Instant,
    ) -> Result<(Session, String), Refusal> {
        let desc = check_ims_sdp(sdp_text)?;
        let common = desc.common()?;
        let (mut rtc, creds) = build_rtc(ctx, &common, now);
        let mut api = rtc.sdp_api();
        let mid = api.add_media(MediaKind::Audio, to_str0m(desc.direction), None, None, None);
        let Some((offer, pending)) = api.apply() else {
            // add_media always makes a change that needs negotiation.
            return Err(Refusal::sdp("WebRTC offer could not be made"));
        };
        let mut s = Session::new(call, rtc, creds, take_leg()?, common.clone(), now);
        s.set_ims_peer(&desc);
        s.mid = Some(mid);
        // No consent clock yet: the browser starts ICE only once it answers, which may be
        // after ringing for a long while (the "ICE gives up while the answer is late" trap).
        s.state = Negotiation::AwaitBrowserAnswer {
            pending: Some(Box::new(pending)),
            ims: desc,
            offered: common,
        };
        Ok((s, offer.to_sdp_string()))
    }

    fn new(
        call: CallRef,
        rtc: Rtc,
        creds: IceCreds,
        ims: ImsLeg,
        rtc_codecs: Vec<RtpMap>,
        now: Instant,
    ) -> Session {
        Session {
            call,
            ufrag: creds.ufrag,
            ice_pwd: creds.pass,
            rtc,
            ims,
            relay: PassThrough::default(),
            mid: None,
            browser_addrs: Vec::new(),
            consent_at: None,
            to_ims: false,
            to_browser: false,
            remote_closed: false,
            seq_out: SeqOut::default(),
            rtc_timeout: now,
            scheduled: None,
            session_id: u64::from(rand::random::<u32>()),
            version: 0,
            rtc_codecs,
            state: Negotiation::Idle,
            answered: None,
        }
    }

    /// The codecs of a re-offer the call's `Rtc` was built with; a voice codec among them, or
    /// the re-offer is refused (str0m cannot add a codec to a built `Rtc`).
    fn call_codecs(&self, offered: Vec<RtpMap>) -> Result<Vec<RtpMap>, Refusal> {
        let common: Vec<RtpMap> = offered
            .into_iter()
            .filter(|c| self.rtc_codecs.iter().any(|r| r.same_codec(c)))
            .collect();
        if !sdp::has_voice(&common) {
            return Err(Refusal::sdp(
                "re-offer has none of the call's codecs (imsgw cannot add a codec mid-call)",
            ));
        }
        Ok(common)
    }

    /// A browser re-offer (hold, resume, codec change): a new IMS offer on the same port.
    pub fn browser_reoffer(&mut self, sdp_text: &str) -> Result<String, Refusal> {
        let (browser, common, offer) = check_browser_offer(sdp_text)?;
        let common = self.call_codecs(common)?;
        let out = self.ims_offer(&browser, &common);
        self.state = Negotiation::AwaitImsAnswer {
            offer: Box::new(offer),
            browser,
            offered: common,
        };
        Ok(out)
    }

    fn ims_offer(&mut self, browser: &AudioDesc, codecs: &[RtpMap]) -> String {
        self.version += 1;
        ImsSdp {
            session_id: self.session_id,
            version: self.version,
            addr: self.ims_addr(),
            port: self.ims.port,
            codecs,
            // The gateway stands toward the IMS as the browser stands toward it.
            direction: browser.direction,
            // RTCP on port + 1 (issue 10: rtcp-mux only when the IMS side offers it; RFC 5761
            // §5.1.1 lets an offerer leave it out, and IMS equipment often mishandles it).
            rtcp_mux: false,
        }
        .build()
    }

    fn ims_addr(&self) -> std::net::IpAddr {
        self.ims
            .rtp
            .local_addr()
            .map(|a| a.ip())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }

    /// The IMS answered the offer made from the browser's; gives the browser-side answer.
    pub fn ims_answer(&mut self, sdp_text: &str, now: Instant) -> Result<String, Refusal> {
        match std::mem::replace(&mut self.state, Negotiation::Idle) {
            Negotiation::AwaitImsAnswer {
                offer,
                browser,
                offered,
            } => {
                let checked = check_ims_sdp(sdp_text)
                    .map_err(Refusal::from)
                    .and_then(|d| chosen_of(&d, &offered).map(|c| (d, c)));
                let (desc, chosen) = match checked {
                    Ok(x) => x,
                    Err(r) => {
                        // Still waiting: a corrected answer may come.
                        self.state = Negotiation::AwaitImsAnswer {
                            offer,
                            browser,
                            offered,
                        };
                        return Err(r);
                    }
                };
                let raw = self
                    .rtc
                    .sdp_api()
                    .accept_offer(*offer)
                    .map_err(|e| Refusal::sdp(format!("browser offer not accepted: {e}")))?
                    .to_sdp_string();
                let sent = self.apply_ims_answer(&desc, &browser, &offered, &chosen, &raw, now);
                self.answered = Some(Answered {
                    ims_sdp: sdp_text.to_string(),
                    str0m_answer: raw,
                    browser,
                    offered,
                    sent: sent.clone(),
                });
                Ok(sent)
            }
            Negotiation::AwaitBrowserAnswer {
                pending,
                ims,
                offered,
            } => {
                self.state = Negotiation::AwaitBrowserAnswer {
                    pending,
                    ims,
                    offered,
                };
                Err(Refusal::sdp("no offer toward the IMS is outstanding"))
            }
            Negotiation::Idle => {
                let Some(prev) = self.answered.take() else {
                    return Err(Refusal::sdp("no offer toward the IMS is outstanding"));
                };
                if prev.ims_sdp == sdp_text {
                    let sent = prev.sent.clone();
                    self.answered = Some(prev);
                    return Ok(sent);
                }
                // Another answer to the same offer (another early dialog, or its 200):
                // follow its peer and codec; the browser's transport stays as it is.
                let result = check_ims_sdp(sdp_text)
                    .map_err(Refusal::from)
                    .and_then(|d| chosen_of(&d, &prev.offered).map(|c| (d, c)));
                let (desc, chosen) = match result {
                    Ok(x) => x,
                    Err(r) => {
                        self.answered = Some(prev);
                        return Err(r);
                    }
                };
                let sent = self.apply_ims_answer(
                    &desc,
                    &prev.browser,
                    &prev.offered,
                    &chosen,
                    &prev.str0m_answer,
                    now,
                );
                self.answered = Some(Answered {
                    ims_sdp: sdp_text.to_string(),
                    sent: sent.clone(),
                    ..prev
                });
                Ok(sent)
            }
        }
    }

    fn apply_ims_answer(
        &mut self,
        ims: &AudioDesc,
        browser: &AudioDesc,
        offered: &[RtpMap],
        chosen: &[RtpMap],
        str0m_answer: &str,
        now: Instant,
    ) -> String {
        let browser_side: Vec<RtpMap> = offered
            .iter()
            .filter(|o| chosen.iter().any(|c| c.same_codec(o)))
            .cloned()
            .collect();
        self.set_ims_peer(ims);
        self.set_media(&browser_side, chosen, browser.direction, ims.direction);
        if self.consent_at.is_none() {
            self.consent_at = Some(now);
        }
        // The gateway stands toward the browser as the IMS stands toward it (RFC 3264 §6.1:
        // within what the browser offered).
        let dir = ims.direction.and(browser.direction.reversed());
        let keep: Vec<u8> = browser_side.iter().map(|c| c.pt).collect();
        sdp::narrow_audio(str0m_answer, &keep, dir)
    }

    /// An IMS re-offer: a WebRTC offer from the same `Rtc` (no ICE or DTLS restart).
    pub fn ims_reoffer(&mut self, sdp_text: &str) -> Result<String, Refusal> {
        let desc = check_ims_sdp(sdp_text)?;
        let common = self.call_codecs(desc.common()?)?;
        let Some(mid) = self.mid else {
            return Err(Refusal::sdp("call has no negotiated audio yet"));
        };
        let want = to_str0m(desc.direction);
        let mut api = self.rtc.sdp_api();
        // str0m offers only when something changed; a re-offer that changes nothing for the
        // browser (a session refresh, a codec subset) still needs a real offer, so the
        // direction is stepped through another value and back.
        let other = if want == str0m::media::Direction::Inactive {
            str0m::media::Direction::SendRecv
        } else {
            str0m::media::Direction::Inactive
        };
        api.set_direction(mid, other);
        api.set_direction(mid, want);
        let Some((offer, pending)) = api.apply() else {
            return Err(Refusal::sdp("WebRTC re-offer could not be made"));
        };
        // The IMS side's new address takes effect with the browser's answer (RFC 3264 §8):
        // a re-offer the browser rejects leaves the media where it was.
        // A later IMS answer can no longer belong to the browser's earlier offer.
        self.answered = None;
        // str0m offers every codec the `Rtc` was built with; the browser may only pick among
        // those the IMS offers now.
        let keep: Vec<u8> = self
            .rtc_codecs
            .iter()
            .filter(|r| common.iter().any(|c| c.same_codec(r)))
            .map(|r| r.pt)
            .collect();
        let text = sdp::narrow_audio(&offer.to_sdp_string(), &keep, desc.direction);
        self.state = Negotiation::AwaitBrowserAnswer {
            pending: Some(Box::new(pending)),
            ims: desc,
            offered: common,
        };
        Ok(text)
    }

    /// The browser answered the WebRTC offer; gives the IMS-side answer.
    pub fn browser_answer(&mut self, sdp_text: &str, now: Instant) -> Result<String, Refusal> {
        let Negotiation::AwaitBrowserAnswer {
            pending,
            ims,
            offered,
        } = std::mem::replace(&mut self.state, Negotiation::Idle)
        else {
            return Err(Refusal::sdp("no WebRTC offer is outstanding"));
        };
        let parsed = sdp::parse_audio(sdp_text)
            .map_err(Refusal::from)
            .and_then(|b| {
                SdpAnswer::from_sdp_string(sdp_text)
                    .map(|a| (b, a))
                    .map_err(|e| Refusal::sdp(format!("browser answer unreadable: {e}")))
            });
        let (browser, answer) = match parsed {
            Ok(x) => x,
            Err(r) => {
                self.state = Negotiation::AwaitBrowserAnswer {
                    pending,
                    ims,
                    offered,
                };
                return Err(r);
            }
        };
        if let Some(p) = pending {
            self.rtc
                .sdp_api()
                .accept_answer(*p, answer)
                .map_err(|e| Refusal::sdp(format!("browser answer not accepted: {e}")))?;
        }
        let kept: Vec<RtpMap> = browser
            .carried()
            .into_iter()
            .filter(|b| offered.iter().any(|o| o.same_codec(b)))
            .collect();
        let ims_chosen: Vec<RtpMap> = offered
            .iter()
            .filter(|o| kept.iter().any(|k| k.same_codec(o)))
            .cloned()
            .collect();
        if !sdp::has_voice(&ims_chosen) {
            return Err(Refusal::sdp("browser answer kept no codec the IMS offered"));
        }
        self.set_ims_peer(&ims);
        self.set_media(&kept, &ims_chosen, browser.direction, ims.direction);
        if self.consent_at.is_none() {
            self.consent_at = Some(now);
        }
        self.version += 1;
        Ok(ImsSdp {
            session_id: self.session_id,
            version: self.version,
            addr: self.ims_addr(),
            port: self.ims.port,
            codecs: &ims_chosen,
            // Mirrored: the gateway stands toward the IMS as the browser stands toward it.
            direction: browser.direction.and(ims.direction.reversed()),
            rtcp_mux: ims.rtcp_mux,
        }
        .build())
    }

    fn set_ims_peer(&mut self, ims: &AudioDesc) {
        if let Some(addr) = ims.addr.filter(|a| !a.is_unspecified()) {
            let rtp = SocketAddr::new(addr, ims.port);
            let rtcp = ims.rtcp.map(|(p, a)| SocketAddr::new(a.unwrap_or(addr), p));
            self.ims.set_peer(rtp, rtcp, ims.rtcp_mux);
        }
    }

    fn set_media(
        &mut self,
        browser: &[RtpMap],
        ims: &[RtpMap],
        browser_dir: Direction,
        ims_dir: Direction,
    ) {
        self.relay.pts = PtMap::new(browser, ims);
        // RFC 3264 §8.4 hold: nothing flows in a held direction.
        self.to_ims = browser_dir.sends() && ims_dir.receives();
        self.to_browser = ims_dir.sends() && browser_dir.receives();
        if let Some(c) = ims
            .iter()
            .find(|c| c.carried() != Some(CodecName::TelephoneEvent))
        {
            self.ims.clock = c.clock;
        }
    }
}

fn check_browser_offer(text: &str) -> Result<(AudioDesc, Vec<RtpMap>, SdpOffer), Refusal> {
    let desc = sdp::parse_audio(text)?;
    let common = desc.common()?;
    if desc.port == 0 {
        return Err(Refusal::sdp(
            "browser offer's audio m-line is disabled (port 0)",
        ));
    }
    let offer = SdpOffer::from_sdp_string(text)
        .map_err(|e| Refusal::sdp(format!("browser offer unreadable: {e}")))?;
    Ok((desc, common, offer))
}

fn check_ims_sdp(text: &str) -> Result<AudioDesc, SdpError> {
    let mut desc = sdp::parse_audio(text)?;
    if !desc.proto.eq_ignore_ascii_case("RTP/AVP") {
        return Err(SdpError::NotRtpAvp(desc.proto));
    }
    match desc.addr {
        None => return Err(SdpError::NoAddress),
        // RFC 3264 §8.4 (the RFC 2543 hold): c=0.0.0.0 means "send nothing to me".
        Some(a) if a.is_unspecified() => desc.direction = desc.direction.and(Direction::SendOnly),
        Some(_) => {}
    }
    Ok(desc)
}

/// The codecs an IMS answer chose among those offered (with the IMS's PT numbers).
fn chosen_of(desc: &AudioDesc, offered: &[RtpMap]) -> Result<Vec<RtpMap>, Refusal> {
    if desc.port == 0 {
        return Err(Refusal::sdp("the IMS rejected the audio stream (port 0)"));
    }
    let chosen: Vec<RtpMap> = desc
        .carried()
        .into_iter()
        .filter(|c| offered.iter().any(|o| o.same_codec(c)))
        .collect();
    if !sdp::has_voice(&chosen) {
        let names: Vec<String> = desc
            .codecs
            .iter()
            .map(|c| format!("{}/{}", c.encoding, c.clock))
            .collect();
        return Err(Refusal::sdp(format!(
            "IMS answer has no codec imsgw offered ({} answered)",
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        )));
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ims_sdp_must_be_rtp_avp_with_an_address() {
        let ok = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert!(check_ims_sdp(ok).is_ok());
        let savp = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/SAVP 0\r\n";
        assert!(matches!(check_ims_sdp(savp), Err(SdpError::NotRtpAvp(_))));
        let no_c = "v=0\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(check_ims_sdp(no_c), Err(SdpError::NoAddress));
    }

    #[test]
    fn ims_hold_by_zero_address_stops_media_toward_it_rfc3264_8_4() {
        let old_hold = "v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n";
        assert_eq!(
            check_ims_sdp(old_hold).map(|d| d.direction),
            Ok(Direction::SendOnly)
        );
    }

    #[test]
    fn ims_answer_without_our_codecs_is_488_naming_what_came() {
        let offered = [RtpMap {
            pt: 0,
            encoding: "PCMU".into(),
            clock: 8000,
            channels: None,
            fmtp: None,
        }];
        let d = check_ims_sdp("v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 8\r\n")
            .expect("valid SDP");
        let r = chosen_of(&d, &offered).expect_err("PCMA was not offered");
        assert_eq!(r.status, 488);
        assert!(r.warning.contains("PCMA/8000 answered"), "{}", r.warning);
        let rejected = check_ims_sdp("v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 0 RTP/AVP 0\r\n")
            .expect("valid SDP");
        assert!(
            chosen_of(&rejected, &offered).is_err(),
            "port 0 is a rejected stream"
        );
    }
}
