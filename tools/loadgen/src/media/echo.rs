//! The IMS side of the media benchmark: one user agent registered at the IMS registrar over UDP
//! (no authentication: the lab's IMS Kamailio has none) that answers every INVITE with 200 and
//! an RTP/AVP SDP naming one shared echo socket, and an RTP echo that sends every packet back to
//! where it came from with the SSRC changed (a far end has its own SSRC). Its CPU is the tool's,
//! never the gateway's. Owns its sockets and threads; `stop` un-registers and joins them.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::media::msg::Msg;
use crate::sip::{has_tag, new_branch, token};

/// Packets the echo saw; read by the run at any time.
#[derive(Debug, Default)]
pub struct EchoCounters {
    /// RTP packets received from the gateway (what it relayed toward the IMS).
    pub rtp_in: AtomicU64,
    /// RTP packets sent back.
    pub rtp_out: AtomicU64,
    pub rtcp_in: AtomicU64,
    pub invites: AtomicU64,
    pub byes: AtomicU64,
}

/// A running echo.
pub struct Echo {
    /// User part it registered (`sip:USER@DOMAIN`), unique per run so bindings of earlier runs
    /// never get the INVITEs.
    pub user: String,
    pub counters: Arc<EchoCounters>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    sip: Arc<UdpSocket>,
    registrar: SocketAddr,
    register: Register,
}

/// Receive buffer of the echo's RTP socket: every call's packets arrive on it.
const ECHO_BUF: usize = 8 << 20;

/// Read timeout of the echo's sockets: how soon a thread notices `stop`.
const POLL: Duration = Duration::from_millis(200);

impl Echo {
    /// Binds on `ip`, registers at `registrar` as `USER@domain` and starts answering.
    pub fn start(registrar: SocketAddr, ip: Ipv4Addr, domain: &str) -> Result<Echo> {
        let sip = UdpSocket::bind((ip, 0)).context("binding the echo's SIP socket")?;
        let (rtp, rtcp) = bind_pair(ip)?;
        for s in [&sip, &rtp, &rtcp] {
            s.set_read_timeout(Some(POLL)).context("set_read_timeout")?;
        }
        let sip_addr = sip.local_addr().context("local_addr")?;
        let rtp_port = rtp.local_addr().context("local_addr")?.port();
        let user = format!("echo{}", token(6));
        let register = Register {
            domain: domain.to_owned(),
            user: user.clone(),
            contact: format!("sip:{user}@{sip_addr}"),
            call_id: token(20),
            from_tag: token(8),
            sip_addr,
        };
        register.send(&sip, registrar, 1, 600)?;

        let counters = Arc::new(EchoCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let sip = Arc::new(sip);
        let uas = Uas {
            contact: register.contact.clone(),
            media_ip: ip,
            rtp_port,
            session: rand::random::<u32>(),
        };
        let mut threads = Vec::new();
        {
            let (sip, stop, c) = (sip.clone(), stop.clone(), counters.clone());
            threads.push(spawn("echo-sip", move || serve_sip(&sip, &uas, &stop, &c))?);
        }
        {
            let (stop, c) = (stop.clone(), counters.clone());
            threads.push(spawn("echo-rtp", move || echo_rtp(&rtp, &stop, &c))?);
        }
        {
            let (stop, c) = (stop.clone(), counters.clone());
            threads.push(spawn("echo-rtcp", move || drain_rtcp(&rtcp, &stop, &c))?);
        }
        Ok(Echo {
            user,
            counters,
            stop,
            threads,
            sip,
            registrar,
            register,
        })
    }

    /// Un-registers (best effort: the SIP thread still runs and drops the 200) and joins.
    pub fn stop(self) {
        let _ = self.register.send_only(&self.sip, self.registrar, 2, 0);
        std::thread::sleep(Duration::from_millis(100));
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .with_context(|| format!("starting thread {name}"))
}

/// An RTP socket and one on the next port for RTCP (RTP/AVP without rtcp-mux, RFC 3550 §11).
fn bind_pair(ip: Ipv4Addr) -> Result<(UdpSocket, UdpSocket)> {
    for _ in 0..50 {
        let rtp = crate::media::bind_udp((ip, 0).into(), ECHO_BUF)
            .context("binding the echo's RTP socket")?;
        let port = rtp.local_addr().context("local_addr")?.port();
        if port == u16::MAX {
            continue;
        }
        if let Ok(rtcp) = UdpSocket::bind((ip, port + 1)) {
            return Ok((rtp, rtcp));
        }
    }
    bail!("no free port pair for the echo's RTP and RTCP on {ip}")
}

/// The echo's registration.
struct Register {
    domain: String,
    user: String,
    contact: String,
    call_id: String,
    from_tag: String,
    sip_addr: SocketAddr,
}

impl Register {
    /// Sends REGISTER `cseq` and waits up to 5 s for 200 (retransmitting, RFC 3261 §17.1.2.2).
    fn send(&self, sock: &UdpSocket, to: SocketAddr, cseq: u32, expires: u32) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = vec![0u8; 65_536];
        while Instant::now() < deadline {
            self.send_only(sock, to, cseq, expires)?;
            let retry = Instant::now() + Duration::from_millis(500);
            while Instant::now() < retry {
                let Ok((n, _)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let text = String::from_utf8_lossy(&buf[..n]);
                let Some(m) = Msg::parse(&text) else { continue };
                if m.get("call-id") != Some(self.call_id.as_str()) {
                    continue;
                }
                match m.status() {
                    Some(200) => return Ok(()),
                    Some(c) if c >= 200 => bail!("the echo's REGISTER at {to} got {c}"),
                    _ => {}
                }
            }
        }
        bail!("the echo's REGISTER at {to} got no answer within 5 s; is the IMS Kamailio up?")
    }

    fn send_only(&self, sock: &UdpSocket, to: SocketAddr, cseq: u32, expires: u32) -> Result<()> {
        let (d, u) = (&self.domain, &self.user);
        let mut t = String::with_capacity(512);
        // `write!` to a String cannot fail.
        let _ = write!(
            t,
            "REGISTER sip:{d} SIP/2.0\r\nVia: SIP/2.0/UDP {};rport;branch={}\r\n\
             Max-Forwards: 70\r\nTo: <sip:{u}@{d}>\r\nFrom: <sip:{u}@{d}>;tag={}\r\n\
             Call-ID: {}\r\nCSeq: {cseq} REGISTER\r\nContact: <{}>;expires={expires}\r\n\
             User-Agent: imsgw-loadgen-echo\r\nContent-Length: 0\r\n\r\n",
            self.sip_addr,
            new_branch(),
            self.from_tag,
            self.call_id,
            self.contact
        );
        sock.send_to(t.as_bytes(), to)
            .with_context(|| format!("sending REGISTER to {to}"))?;
        Ok(())
    }
}

/// What the UAS puts in its answers.
struct Uas {
    contact: String,
    media_ip: Ipv4Addr,
    rtp_port: u16,
    session: u32,
}

fn serve_sip(sock: &UdpSocket, uas: &Uas, stop: &AtomicBool, c: &EchoCounters) {
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..n]);
        let Some(m) = Msg::parse(&text) else { continue };
        match m.method() {
            Some("INVITE") => {
                c.invites.fetch_add(1, Ordering::Relaxed);
            }
            Some("BYE") => {
                c.byes.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        if let Some(resp) = uas.answer(&m) {
            let _ = sock.send_to(resp.as_bytes(), from);
        }
    }
}

impl Uas {
    /// The response to request `m`: 200 with an SDP answer to an INVITE (488 when it offers
    /// neither PCMU nor PCMA), 200 to anything else but ACK, nothing to responses and ACK.
    fn answer(&self, m: &Msg<'_>) -> Option<String> {
        let method = m.method()?;
        if method == "ACK" {
            return None;
        }
        // The to-tag comes from the Call-ID, so a retransmitted INVITE gets the same answer.
        let tag = format!("{:08x}", fnv1a(m.get("call-id").unwrap_or("").as_bytes()));
        let (status, body) = match method {
            "INVITE" => match pick_pcm(m.body) {
                Some(pt) => ("200 OK", Some(self.sdp(pt))),
                None => ("488 Not Acceptable Here", None),
            },
            _ => ("200 OK", None),
        };
        let mut out = String::with_capacity(1024);
        let _ = write!(out, "SIP/2.0 {status}\r\n");
        for &(n, v) in &m.headers {
            let copy = ["via", "from", "call-id", "cseq"]
                .iter()
                .any(|h| Msg::is(n, h))
                // RFC 3261 §12.1.1: a UAS copies Record-Route into its 2xx.
                || (method == "INVITE" && Msg::is(n, "record-route"));
            if copy {
                let _ = write!(out, "{n}: {v}\r\n");
            } else if Msg::is(n, "to") {
                if has_tag(v) {
                    let _ = write!(out, "{n}: {v}\r\n");
                } else {
                    let _ = write!(out, "{n}: {v};tag={tag}\r\n");
                }
            }
        }
        if method == "INVITE" {
            let _ = write!(out, "Contact: <{}>\r\n", self.contact);
        }
        match body {
            Some(b) => {
                let _ = write!(
                    out,
                    "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
                    b.len()
                );
            }
            None => out.push_str("Content-Length: 0\r\n\r\n"),
        }
        Some(out)
    }

    fn sdp(&self, pt: u8) -> String {
        let name = if pt == 0 { "PCMU" } else { "PCMA" };
        let (ip, port, s) = (self.media_ip, self.rtp_port, self.session);
        format!(
            "v=0\r\no=- {s} 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP {pt}\r\na=rtpmap:{pt} {name}/8000\r\na=ptime:20\r\n\
             a=sendrecv\r\n"
        )
    }
}

/// The first of PCMU (0) or PCMA (8) in the offer's first audio m-line, in its order.
fn pick_pcm(sdp: &str) -> Option<u8> {
    let m = sdp
        .lines()
        .find_map(|l| l.trim_end().strip_prefix("m=audio "))?;
    m.split(' ')
        .skip(2)
        .filter_map(|f| f.parse::<u8>().ok())
        .find(|&pt| pt == 0 || pt == 8)
}

fn fnv1a(b: &[u8]) -> u32 {
    b.iter().fold(0x811c_9dc5, |h, &x| {
        (h ^ u32::from(x)).wrapping_mul(0x0100_0193)
    })
}

/// Sends every RTP packet back to its source with the SSRC changed.
fn echo_rtp(sock: &UdpSocket, stop: &AtomicBool, c: &EchoCounters) {
    let mut buf = vec![0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        c.rtp_in.fetch_add(1, Ordering::Relaxed);
        let pkt = &mut buf[..n];
        // RFC 3550 §5.1: version 2, SSRC at bytes 8..12.
        if n < 12 || pkt[0] >> 6 != 2 {
            continue;
        }
        for b in &mut pkt[8..12] {
            *b ^= 0x5a;
        }
        if sock.send_to(pkt, from).is_ok() {
            c.rtp_out.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Counts and drops RTCP (the socket exists so the gateway's RTCP gets no ICMP errors).
fn drain_rtcp(sock: &UdpSocket, stop: &AtomicBool, c: &EchoCounters) {
    let mut buf = vec![0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        if sock.recv_from(&mut buf).is_ok() {
            c.rtcp_in.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uas() -> Uas {
        Uas {
            contact: "sip:echo1@127.0.0.1:6000".into(),
            media_ip: Ipv4Addr::LOCALHOST,
            rtp_port: 7000,
            session: 1,
        }
    }

    const OFFER: &str = "v=0\r\nm=audio 9 RTP/AVP 101 8 0\r\n";

    #[test]
    fn invite_gets_200_with_record_route_contact_and_the_offered_pcm() {
        let inv = format!(
            "INVITE sip:echo1@ims.example SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5370;branch=z9hG4bKa\r\nVia: SIP/2.0/WS x.invalid;branch=z9hG4bKb\r\nRecord-Route: <sip:127.0.0.1:5370;lr>\r\nFrom: <sip:m1@ims.example>;tag=f\r\nTo: <sip:echo1@ims.example>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: {}\r\n\r\n{OFFER}",
            OFFER.len()
        );
        let r = uas()
            .answer(&Msg::parse(&inv).expect("parses"))
            .expect("answered");
        let m = Msg::parse(&r).expect("response parses");
        assert_eq!(m.status(), Some(200));
        assert_eq!(m.all("via").count(), 2);
        assert_eq!(m.get("record-route"), Some("<sip:127.0.0.1:5370;lr>"));
        assert!(has_tag(m.get("to").expect("To")));
        assert_eq!(m.get("contact"), Some("<sip:echo1@127.0.0.1:6000>"));
        assert!(
            m.body
                .contains("m=audio 7000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n")
        );
        assert_eq!(
            m.get("content-length"),
            Some(m.body.len().to_string().as_str())
        );
        // Same Call-ID, same tag: a retransmission gets the same answer.
        assert_eq!(uas().answer(&Msg::parse(&inv).expect("parses")), Some(r));
    }

    #[test]
    fn no_pcm_offered_is_488_ack_is_not_answered_bye_is_200() {
        let inv = "INVITE sip:e SIP/2.0\r\nCall-ID: c\r\n\r\nm=audio 9 RTP/AVP 96\r\n";
        let r = uas()
            .answer(&Msg::parse(inv).expect("parses"))
            .expect("answered");
        assert!(r.starts_with("SIP/2.0 488 "));
        assert!(
            uas()
                .answer(&Msg::parse("ACK sip:e SIP/2.0\r\n\r\n").expect("p"))
                .is_none()
        );
        let bye =
            uas().answer(&Msg::parse("BYE sip:e SIP/2.0\r\nTo: <sip:e>;tag=1\r\n\r\n").expect("p"));
        assert!(bye.is_some_and(|b| b.starts_with("SIP/2.0 200 OK\r\nTo: <sip:e>;tag=1\r\n")));
        assert!(
            uas()
                .answer(&Msg::parse("SIP/2.0 200 OK\r\n\r\n").expect("p"))
                .is_none()
        );
    }

    /// A registrar on loopback that answers every request with 200 and records what it got.
    fn fake_registrar() -> (SocketAddr, std::thread::JoinHandle<Vec<String>>) {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        let addr = sock.local_addr().expect("addr");
        let t = std::thread::spawn(move || {
            let (mut seen, mut buf) = (Vec::new(), vec![0u8; 4096]);
            // REGISTER, then the un-REGISTER.
            while seen.len() < 2 {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    break;
                };
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if let Some(ok) = crate::sip::ok_response(&text, "r") {
                    sock.send_to(ok.as_bytes(), from).expect("send");
                }
                seen.push(text);
            }
            seen
        });
        (addr, t)
    }

    #[test]
    fn echo_registers_answers_an_invite_and_echoes_rtp_with_another_ssrc() {
        let (registrar, seen) = fake_registrar();
        let echo = Echo::start(registrar, Ipv4Addr::LOCALHOST, "ims.example").expect("starts");
        let proxy = UdpSocket::bind("127.0.0.1:0").expect("bind");
        proxy
            .set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        let contact = format!("127.0.0.1:{}", echo.register.sip_addr.port());
        let inv = format!(
            "INVITE sip:{}@{contact} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKx\r\nFrom: <sip:a@ims.example>;tag=1\r\nTo: <sip:{}@ims.example>\r\nCall-ID: loop\r\nCSeq: 1 INVITE\r\nContent-Length: {}\r\n\r\n{OFFER}",
            echo.user,
            proxy.local_addr().expect("addr"),
            echo.user,
            OFFER.len()
        );
        proxy.send_to(inv.as_bytes(), &contact).expect("send");
        let mut buf = vec![0u8; 4096];
        let (n, _) = proxy.recv_from(&mut buf).expect("200 to the INVITE");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let m = Msg::parse(&text).expect("parses");
        assert_eq!(m.status(), Some(200), "{text}");
        let port = m
            .body
            .lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|l| l.split(' ').next())
            .and_then(|p| p.parse::<u16>().ok())
            .expect("an m=audio port");

        let mut rtp = vec![0x80u8, 8, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4];
        rtp.extend_from_slice(&[0xd5; 160]);
        proxy.send_to(&rtp, ("127.0.0.1", port)).expect("send rtp");
        let (n, _) = proxy.recv_from(&mut buf).expect("echoed");
        assert_eq!(n, rtp.len());
        assert_eq!(&buf[8..12], &[1 ^ 0x5a, 2 ^ 0x5a, 3 ^ 0x5a, 4 ^ 0x5a]);
        assert_eq!(&buf[12..n], &rtp[12..]);

        let user = echo.user.clone();
        echo.stop();
        let seen = seen.join().expect("registrar");
        assert!(seen[0].starts_with("REGISTER sip:ims.example SIP/2.0\r\n"));
        assert!(seen[0].contains(&format!("Contact: <sip:{user}@127.0.0.1:")));
        assert!(
            seen[1].contains(";expires=0\r\n"),
            "un-registered: {}",
            seen[1]
        );
    }

    #[test]
    fn pick_pcm_keeps_the_offer_order() {
        assert_eq!(pick_pcm("m=audio 1 RTP/AVP 0 8\r\n"), Some(0));
        assert_eq!(pick_pcm("m=audio 1 UDP/TLS/RTP/SAVPF 111 8\r\n"), Some(8));
        assert_eq!(pick_pcm("m=video 1 RTP/AVP 0\r\n"), None);
    }
}
