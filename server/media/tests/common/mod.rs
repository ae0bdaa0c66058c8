//! Test harness: a real str0m `Rtc` as the browser (full ICE, controlling, on its own UDP
//! socket on 127.0.0.1, driven in the test thread), a plain UDP socket as the IMS peer, and the
//! media engine under test on loopback.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant};

use imsgw_media::{Command, Event, Media, MediaConfig};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::{Codec, FormatParams};
use str0m::media::{Direction, Frequency, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpPacket, RtpWrite};
use str0m::{Candidate, Input, Output, Rtc};
use tokio::sync::mpsc::UnboundedReceiver;

pub const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

pub fn config(ports: RangeInclusive<u16>) -> MediaConfig {
    MediaConfig {
        listen: (LO, 0).into(),
        public_addresses: Vec::new(),
        ims_address: LO.into(),
        rtp_ports: ports,
        inactivity: Duration::from_millis(1500),
        latch: false,
        max_sessions: 16,
        recv_buffer: 1 << 20,
    }
}

pub struct Gw {
    pub media: Media,
    pub events: UnboundedReceiver<Event>,
}

impl Gw {
    pub fn start(cfg: MediaConfig) -> Gw {
        let (media, events) = Media::start(cfg).expect("media starts");
        Gw { media, events }
    }
}

impl Drop for Gw {
    fn drop(&mut self) {
        self.media.stop();
    }
}

/// The browser: a str0m `Rtc` in RTP mode with opus/111, PCMU/0, telephone-event/8000 at 101.
pub struct Browser {
    pub rtc: Rtc,
    pub sock: UdpSocket,
    pub addr: SocketAddr,
    pub mid: Option<Mid>,
    pub connected: bool,
    pub rtp: Vec<RtpPacket>,
    /// False: the browser stops answering anything (no STUN, no DTLS).
    pub alive: bool,
    /// Set when the browser's own `Rtc` failed (e.g. the DTLS of a forged session).
    pub failed: Option<String>,
    /// Sends through this socket instead (a forged source address); receives on `sock`.
    pub send_from: Option<UdpSocket>,
    seq: u64,
}

impl Browser {
    pub fn new() -> Browser {
        Browser::build(false)
    }

    /// A browser that also offers VP8 video.
    pub fn with_video() -> Browser {
        Browser::build(true)
    }

    fn build(video: bool) -> Browser {
        let sock = UdpSocket::bind((LO, 0)).expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(2)))
            .expect("timeout");
        let addr = sock.local_addr().expect("addr");
        let mut cfg = Rtc::builder()
            .set_rtp_mode(true)
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .clear_codecs();
        let cc = cfg.codec_config();
        cc.add_config(
            111.into(),
            None,
            Codec::Opus,
            Frequency::FORTY_EIGHT_KHZ,
            Some(2),
            FormatParams {
                min_p_time: Some(10),
                use_inband_fec: Some(true),
                ..Default::default()
            },
        );
        cc.enable_pcmu(true, false);
        cc.add_config(
            101.into(),
            None,
            Codec::Tele,
            Frequency::EIGHT_KHZ,
            None,
            FormatParams::parse_line("0-15"),
        );
        if video {
            cc.enable_vp8(true);
        }
        let mut rtc = cfg.build(Instant::now());
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
        Browser {
            rtc,
            sock,
            addr,
            mid: None,
            connected: false,
            rtp: Vec::new(),
            alive: true,
            failed: None,
            send_from: None,
            seq: 1,
        }
    }

    pub fn offer(&mut self, dir: Direction) -> (String, SdpPendingOffer) {
        let mut api = self.rtc.sdp_api();
        let mid = api.add_media(MediaKind::Audio, dir, None, None, None);
        self.mid = Some(mid);
        let (offer, pending) = api.apply().expect("offer");
        (offer.to_sdp_string(), pending)
    }

    pub fn offer_audio_video(&mut self) -> (String, SdpPendingOffer) {
        let mut api = self.rtc.sdp_api();
        let mid = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        api.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
        self.mid = Some(mid);
        let (offer, pending) = api.apply().expect("offer");
        (offer.to_sdp_string(), pending)
    }

    pub fn reoffer(&mut self, dir: Direction) -> (String, SdpPendingOffer) {
        let mut api = self.rtc.sdp_api();
        api.set_direction(self.mid.expect("mid"), dir);
        let (offer, pending) = api.apply().expect("re-offer");
        (offer.to_sdp_string(), pending)
    }

    pub fn accept_answer(&mut self, pending: SdpPendingOffer, sdp: &str) {
        let answer = SdpAnswer::from_sdp_string(sdp).expect("answer parses");
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("answer accepted");
    }

    pub fn accept_offer(&mut self, sdp: &str) -> String {
        let offer = SdpOffer::from_sdp_string(sdp).expect("offer parses");
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .expect("offer accepted");
        if self.mid.is_none() {
            let mid = sdp
                .lines()
                .find_map(|l| l.trim_end().strip_prefix("a=mid:"))
                .expect("offer names a mid");
            self.mid = Some(Mid::from(mid));
        }
        answer.to_sdp_string()
    }

    /// One round: drain output, read the socket once (2 ms), feed a timeout.
    pub fn step(&mut self) {
        if self.failed.is_some() {
            std::thread::sleep(Duration::from_millis(2));
            return;
        }
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(_)) => break,
                Ok(Output::Transmit(t)) => {
                    if self.alive {
                        let sock = self.send_from.as_ref().unwrap_or(&self.sock);
                        let _ = sock.send_to(&t.contents, t.destination);
                    }
                }
                Ok(Output::Event(e)) => match e {
                    str0m::Event::Connected => self.connected = true,
                    str0m::Event::RtpPacket(p) => self.rtp.push(p),
                    _ => {}
                },
                Err(e) => {
                    self.failed = Some(e.to_string());
                    return;
                }
            }
        }
        let mut buf = [0u8; 2000];
        match self.sock.recv_from(&mut buf) {
            Ok((n, source)) if self.alive => {
                if let Ok(contents) = buf[..n].try_into() {
                    let input = Input::Receive(
                        Instant::now(),
                        Receive {
                            proto: Protocol::Udp,
                            source,
                            destination: self.addr,
                            contents,
                        },
                    );
                    let _ = self.rtc.handle_input(input);
                }
            }
            _ => {
                let _ = self.rtc.handle_input(Input::Timeout(Instant::now()));
            }
        }
    }

    /// Sends one RTP packet toward the gateway (str0m encrypts it).
    pub fn send_rtp(&mut self, pt: u8, ts: u32, payload: &[u8]) {
        let mid = self.mid.expect("mid");
        let seq = self.seq;
        self.seq += 1;
        let mut api = self.rtc.direct_api();
        let tx = api.stream_tx_by_mid(mid, None).expect("tx stream");
        tx.write_rtp(RtpWrite::new(
            pt.into(),
            seq.into(),
            ts,
            Instant::now(),
            Arc::<[u8]>::from(payload),
        ));
    }
}

/// Runs the browser until `until` holds or `limit` passes; returns whether it held.
pub fn pump(b: &mut Browser, limit: Duration, mut until: impl FnMut(&mut Browser) -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        b.step();
        if until(b) {
            return true;
        }
    }
    false
}

/// Waits for the next event, stepping the browser meanwhile.
pub fn next_event(gw: &mut Gw, b: Option<&mut Browser>, limit: Duration) -> Event {
    let end = Instant::now() + limit;
    let mut b = b;
    loop {
        if let Ok(e) = gw.events.try_recv() {
            return e;
        }
        assert!(Instant::now() < end, "no media event within {limit:?}");
        match b.as_deref_mut() {
            Some(b) => b.step(),
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

pub fn expect_sdp(e: Event, call: u64, req: u64) -> String {
    match e {
        Event::Sdp {
            call: c,
            req: r,
            sdp,
        } if c == call && r == req => sdp,
        other => panic!("expected Sdp for call {call} req {req}, got {other:?}"),
    }
}

/// The plain RTP/AVP peer on the IMS side.
pub struct Ims {
    pub sock: UdpSocket,
    pub addr: SocketAddr,
}

impl Ims {
    pub fn new() -> Ims {
        let sock = UdpSocket::bind((LO, 0)).expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(2)))
            .expect("timeout");
        let addr = sock.local_addr().expect("addr");
        Ims { sock, addr }
    }

    /// An IMS-side SDP (offer or answer) naming this socket.
    pub fn sdp(&self, codecs: &str, dir: &str) -> String {
        let pts: Vec<&str> = codecs
            .split(',')
            .filter(|c| !c.is_empty())
            .map(|c| c.split(' ').next().unwrap_or(""))
            .collect();
        let mut s = format!(
            "v=0\r\no=ims 42 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP {}\r\n",
            self.addr.port(),
            pts.join(" ")
        );
        for c in codecs.split(',').filter(|c| !c.is_empty()) {
            s.push_str(&format!("a=rtpmap:{c}\r\n"));
        }
        s.push_str(&format!("a={dir}\r\na=ptime:20\r\n"));
        s
    }

    pub fn send_rtp(&self, to: SocketAddr, pt: u8, seq: u16, ts: u32, payload: &[u8]) {
        let mut p = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0x11, 0x22, 0x33, 0x44];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(payload);
        self.sock.send_to(&p, to).expect("send");
    }

    /// Next RTP (not RTCP) datagram within `limit`, stepping the browser meanwhile.
    pub fn recv_rtp(&self, b: &mut Browser, limit: Duration) -> Option<Vec<u8>> {
        let end = Instant::now() + limit;
        let mut buf = [0u8; 2000];
        while Instant::now() < end {
            b.step();
            if let Ok((n, _)) = self.sock.recv_from(&mut buf)
                && n >= 12
                && !(192..=223).contains(&buf[1])
            {
                return Some(buf[..n].to_vec());
            }
        }
        None
    }
}

/// The even IMS-side port in an IMS-side SDP from the gateway.
pub fn ims_port(sdp: &str) -> u16 {
    let m = sdp
        .lines()
        .find(|l| l.starts_with("m=audio "))
        .expect("m=audio");
    m.split(' ').nth(1).expect("port").parse().expect("number")
}

/// Browser offer → IMS offer → IMS answer → browser answer → ICE + DTLS connected.
pub fn connect_from_browser(
    gw: &mut Gw,
    b: &mut Browser,
    ims: &Ims,
    call: u64,
    answer_codecs: &str,
) -> u16 {
    let (offer, pending) = b.offer(Direction::SendRecv);
    gw.media.send(Command::BrowserOffer {
        call,
        req: 1,
        sdp: offer,
    });
    let ims_offer = expect_sdp(next_event(gw, None, Duration::from_secs(3)), call, 1);
    let port = ims_port(&ims_offer);
    gw.media.send(Command::ImsAnswer {
        call,
        req: 2,
        sdp: ims.sdp(answer_codecs, "sendrecv"),
    });
    let answer = expect_sdp(next_event(gw, None, Duration::from_secs(3)), call, 2);
    b.accept_answer(pending, &answer);
    assert!(
        pump(b, Duration::from_secs(5), |b| b.connected),
        "browser connects (ICE + DTLS) to the gateway"
    );
    port
}

pub fn ims_to(port: u16) -> SocketAddr {
    (LO, port).into()
}
