//! The server side of RFC 6455 without I/O: the opening handshake's accept value, reading
//! client frames into messages, and writing server frames.
//!
//! Own rather than tungstenite's (issue 11 §2): tungstenite keeps a read buffer of
//! `read_buffer_size` and a write buffer as big as the largest frame it wrote for the whole life
//! of a connection (4.7 KiB of an idle registered connection's 14 KiB, measured with dhat).
//! Here a connection holds no buffer while it is idle: bytes are read into the reading task's
//! stack, and only a frame that has not arrived whole is kept, for as long as it takes to arrive.
//!
//! Owns: frame syntax and the rules a server applies to a client's frames (§5), close codes
//! (§7.4). Must not touch: sockets, timers, what the messages mean.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use sha1::{Digest, Sha1};

/// §1.3: appended to the client's key before hashing it for `Sec-WebSocket-Accept`.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key` (§4.2.2 step 5.4).
pub fn accept_key(key: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(key);
    h.update(GUID);
    STANDARD.encode(h.finalize())
}

/// Whether a `Sec-WebSocket-Key` is what §4.1 asks for: base64 of 16 bytes.
pub fn valid_key(key: &[u8]) -> bool {
    key.len() == 24 && STANDARD.decode(key).map(|k| k.len() == 16).unwrap_or(false)
}

/// Opcodes (§5.2).
pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// What a client sent, whole.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A text message, checked to be UTF-8.
    Text(Bytes),
    Binary(Bytes),
    /// Answered with a Pong carrying the same bytes (§5.5.3).
    Ping(Bytes),
    Pong,
    /// The client's Close, with its status code if it gave one (§5.5.1); nothing after it is
    /// read.
    Close(Option<u16>),
}

/// A client that broke the protocol: the close code §7.4.1 names for it, the reason sent in
/// the Close frame, and the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    pub code: u16,
    pub reason: &'static str,
    pub metric: &'static str,
}

const fn protocol(reason: &'static str) -> Violation {
    Violation {
        code: 1002,
        reason,
        metric: "protocol_error",
    }
}

const TOO_BIG: Violation = Violation {
    code: 1009,
    reason: "SIP message too big",
    metric: "message_too_big",
};

const NOT_UTF8: Violation = Violation {
    code: 1007,
    reason: "text frame is not UTF-8",
    metric: "bad_utf8",
};

/// A client frame's header, as far as it has arrived.
struct Header {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    /// Bytes of header, mask included.
    len: usize,
    payload: usize,
}

/// Reads a client's frames into messages, keeping only what has not arrived whole.
pub struct Inbound {
    max_message: usize,
    /// Bytes of a frame that has not arrived whole; empty (no allocation) between frames.
    carry: Vec<u8>,
    /// The fragments of a message whose last frame has not come yet (§5.4): text or not, and
    /// the payload so far.
    partial: Option<(bool, Vec<u8>)>,
    /// A Close came: nothing more is read.
    closed: bool,
}

impl Inbound {
    /// A reader that fails messages over `max_message` bytes (counting every fragment) with
    /// 1009.
    pub fn new(max_message: usize) -> Self {
        Self {
            max_message,
            carry: Vec::new(),
            partial: None,
            closed: false,
        }
    }

    /// Takes bytes read from the socket and appends the events they complete to `out`. A
    /// violation ends the connection: the caller sends its Close and reads no more.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<Event>) -> Result<(), Violation> {
        if self.closed {
            return Ok(());
        }
        if self.carry.is_empty() {
            let used = self.frames(data, out)?;
            if used < data.len() && !self.closed {
                self.carry = data[used..].to_vec();
            }
        } else {
            let mut carry = std::mem::take(&mut self.carry);
            carry.extend_from_slice(data);
            let used = self.frames(&carry, out)?;
            if used < carry.len() && !self.closed {
                carry.drain(..used);
                self.carry = carry;
            }
        }
        // No room is reserved for a frame's announced length: what is held grows with the
        // bytes that came, not with what a client says it will send.
        Ok(())
    }

    /// Bytes held between reads (a frame not yet whole, a message not yet finished).
    pub fn held(&self) -> usize {
        self.carry.capacity() + self.partial.as_ref().map_or(0, |(_, p)| p.capacity())
    }

    /// Parses the whole frames at the start of `buf`; returns how many bytes they took.
    fn frames(&mut self, buf: &[u8], out: &mut Vec<Event>) -> Result<usize, Violation> {
        let mut at = 0;
        while !self.closed {
            let Some(h) = self.header(&buf[at..])? else {
                break;
            };
            let end = at + h.len + h.payload;
            if buf.len() < end {
                break;
            }
            let payload = unmask(&buf[at + h.len..end], h.mask);
            at = end;
            self.frame(h, payload, out)?;
        }
        Ok(at)
    }

    /// The header at the start of `buf`, checked as soon as its bytes are in: None until then.
    /// Everything that can be refused from the header is refused before its payload comes.
    fn header(&self, buf: &[u8]) -> Result<Option<Header>, Violation> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0f;
        if b0 & 0x70 != 0 {
            return Err(protocol("reserved bits set without an extension"));
        }
        if b1 & 0x80 == 0 {
            // §5.1: a server MUST close the connection on an unmasked client frame.
            return Err(protocol("unmasked frame from a client"));
        }
        let control = opcode & 0x8 != 0;
        match opcode {
            CONTINUATION if self.partial.is_none() => {
                return Err(protocol("a continuation with nothing to continue"));
            }
            TEXT | BINARY if self.partial.is_some() => {
                return Err(protocol("a new message inside a fragmented one"));
            }
            CONTINUATION | TEXT | BINARY | CLOSE | PING | PONG => {}
            _ => return Err(protocol("reserved opcode")),
        }
        let (payload, len) = match b1 & 0x7f {
            126 => match buf.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(b) => {
                    let n = u64::from_be_bytes(b.try_into().expect("8 bytes"));
                    if n >> 63 != 0 {
                        return Err(protocol("frame length with its top bit set"));
                    }
                    (n, 10)
                }
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        if control && (!fin || payload > 125) {
            // §5.5: control frames are never fragmented and carry at most 125 bytes.
            return Err(protocol("a fragmented or oversize control frame"));
        }
        let so_far = self.partial.as_ref().map_or(0, |(_, p)| p.len()) as u64;
        if !control && so_far + payload > self.max_message as u64 {
            return Err(TOO_BIG);
        }
        let Some(m) = buf.get(len..len + 4) else {
            return Ok(None);
        };
        Ok(Some(Header {
            fin,
            opcode,
            mask: m.try_into().expect("4 bytes"),
            len: len + 4,
            // Bounded by max_message (data) or 125 (control) above.
            payload: payload as usize,
        }))
    }

    fn frame(
        &mut self,
        h: Header,
        payload: Vec<u8>,
        out: &mut Vec<Event>,
    ) -> Result<(), Violation> {
        match h.opcode {
            PING => out.push(Event::Ping(payload.into())),
            PONG => out.push(Event::Pong),
            CLOSE => {
                self.closed = true;
                self.carry = Vec::new();
                self.partial = None;
                out.push(Event::Close(close_code(&payload)?));
            }
            TEXT | BINARY if h.fin => out.push(message(h.opcode == TEXT, payload)?),
            TEXT | BINARY => self.partial = Some((h.opcode == TEXT, payload)),
            _ => {
                let (text, mut so_far) = self.partial.take().expect("checked in header()");
                so_far.extend_from_slice(&payload);
                if h.fin {
                    out.push(message(text, so_far)?);
                } else {
                    self.partial = Some((text, so_far));
                }
            }
        }
        Ok(())
    }
}

fn unmask(masked: &[u8], mask: [u8; 4]) -> Vec<u8> {
    masked
        .iter()
        .zip(mask.iter().cycle())
        .map(|(b, m)| b ^ m)
        .collect()
}

fn message(text: bool, payload: Vec<u8>) -> Result<Event, Violation> {
    if !text {
        return Ok(Event::Binary(payload.into()));
    }
    if std::str::from_utf8(&payload).is_err() {
        return Err(NOT_UTF8);
    }
    Ok(Event::Text(payload.into()))
}

/// The status code of a Close frame's body (§5.5.1, §7.4): none, or two bytes of a code a peer
/// may send, then a UTF-8 reason.
fn close_code(body: &[u8]) -> Result<Option<u16>, Violation> {
    match body {
        [] => Ok(None),
        [_] => Err(protocol("a Close body of one byte")),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            let allowed = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
            if !allowed {
                return Err(protocol("a close code a peer may not send"));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(Violation {
                    reason: "close reason is not UTF-8",
                    ..NOT_UTF8
                });
            }
            Ok(Some(code))
        }
    }
}

/// The header of a server frame (FIN set, unmasked, §5.2): the bytes and how many are used.
pub fn frame_header(opcode: u8, payload: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = 0x80 | opcode;
    let n = if payload < 126 {
        h[1] = payload as u8;
        2
    } else if let Ok(short) = u16::try_from(payload) {
        h[1] = 126;
        h[2..4].copy_from_slice(&short.to_be_bytes());
        4
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(payload as u64).to_be_bytes());
        10
    };
    (h, n)
}

/// The body of a server Close frame: the code, then the reason (cut to fit 125 bytes).
pub fn close_body(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut b = code.to_be_bytes().to_vec();
    b.extend_from_slice(&reason.as_bytes()[..end]);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame as a browser sends it: masked with `mask`.
    fn client(b0: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut f = vec![b0];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n < 65536 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        f
    }

    /// `wire` fed `step` bytes at a time to a new reader: the events, and the reader after.
    fn fed_in_chunks(wire: &[u8], step: usize) -> (Vec<Event>, Inbound) {
        let mut i = Inbound::new(65536);
        let mut out = Vec::new();
        for chunk in wire.chunks(step) {
            i.feed(chunk, &mut out).expect("valid");
        }
        (out, i)
    }

    fn feed_all(i: &mut Inbound, data: &[u8]) -> Result<Vec<Event>, Violation> {
        let mut out = Vec::new();
        i.feed(data, &mut out)?;
        Ok(out)
    }

    #[test]
    fn rfc6455_1_3_accept_key_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert!(valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!valid_key(b"dGhlIHNhbXBsZSBub25jZQ"));
        assert!(!valid_key(b"not base64 at all!!!!!!!"));
    }

    #[test]
    fn rfc6455_5_7_examples_masked_hello() {
        // §5.7: "A single-frame masked text message".
        let frame = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let mut i = Inbound::new(65536);
        assert_eq!(
            feed_all(&mut i, &frame),
            Ok(vec![Event::Text(Bytes::from_static(b"Hello"))])
        );
        assert_eq!(i.held(), 0);
    }

    #[test]
    fn frames_split_anywhere_come_out_whole_and_nothing_is_held_after() {
        let msg = b"REGISTER sip:ims.example SIP/2.0\r\n".repeat(100);
        let mut wire = client(0x81, &msg, [1, 2, 3, 4]);
        wire.extend(client(0x89, b"hi", [9, 9, 9, 9]));
        wire.extend(client(0x02, b"ab", [5, 6, 7, 8]));
        wire.extend(client(0x89, b"", [0, 0, 0, 0]));
        wire.extend(client(0x80, b"cd", [5, 6, 7, 8]));
        for step in [1, 2, 3, 7, 13, 500, wire.len()] {
            let (out, i) = fed_in_chunks(&wire, step);
            assert_eq!(
                out,
                vec![
                    Event::Text(Bytes::from(msg.clone())),
                    Event::Ping(Bytes::from_static(b"hi")),
                    Event::Ping(Bytes::new()),
                    Event::Binary(Bytes::from_static(b"abcd")),
                ],
                "chunks of {step}"
            );
            assert_eq!(i.held(), 0, "chunks of {step}");
        }
    }

    #[test]
    fn rfc6455_7_4_1_violations() {
        let cases: [(Vec<u8>, u16); 10] = [
            (
                {
                    let mut f = client(0x81, b"x", [0; 4]);
                    f[1] &= 0x7f;
                    f.drain(2..6);
                    f
                },
                1002,
            ),
            (client(0x83, b"x", [1; 4]), 1002),
            (client(0x89, &[b'a'; 126], [1; 4]), 1002),
            (client(0x09, b"x", [1; 4]), 1002),
            (client(0xc1, b"x", [1; 4]), 1002),
            (client(0x80, b"x", [1; 4]), 1002),
            (client(0x81, &[0x53, 0xc3, 0x28], [1; 4]), 1007),
            (client(0x88, &[0x03], [1; 4]), 1002),
            (client(0x88, &[0x03, 0xed], [1; 4]), 1002), // 1005 is never sent
            (client(0x88, &[0x03, 0xe8, 0xff], [1; 4]), 1007),
        ];
        for (wire, code) in cases {
            let mut i = Inbound::new(65536);
            assert_eq!(
                feed_all(&mut i, &wire).map_err(|v| v.code),
                Err(code),
                "{wire:02x?}"
            );
        }
        // A new message while one is fragmented.
        let mut i = Inbound::new(65536);
        let mut wire = client(0x01, b"a", [1; 4]);
        wire.extend(client(0x81, b"b", [1; 4]));
        assert_eq!(feed_all(&mut i, &wire).map_err(|v| v.code), Err(1002));
    }

    #[test]
    fn too_big_is_refused_from_the_header_alone_also_across_fragments() {
        let mut i = Inbound::new(1000);
        // Only the header of a 64 KiB frame: refused before any payload.
        let wire = client(0x82, &vec![0; 65536], [1; 4]);
        assert_eq!(feed_all(&mut i, &wire[..14]).map_err(|v| v.code), Err(1009));
        let mut i = Inbound::new(1000);
        let mut out = Vec::new();
        i.feed(&client(0x01, &[b'a'; 600], [1; 4]), &mut out)
            .expect("first half fits");
        assert_eq!(
            i.feed(&client(0x80, &[b'a'; 600], [1; 4])[..8], &mut out)
                .map_err(|v| v.code),
            Err(1009)
        );
        // A 64-bit length with the top bit set.
        let mut i = Inbound::new(usize::MAX);
        let mut f = vec![0x82, 0xff];
        f.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(feed_all(&mut i, &f).map_err(|v| v.code), Err(1002));
    }

    #[test]
    fn close_ends_reading_and_keeps_its_code() {
        let mut i = Inbound::new(65536);
        let mut wire = client(0x88, &[0x03, 0xe8, b'b', b'y', b'e'], [7; 4]);
        wire.extend(client(0x81, b"after", [7; 4]));
        assert_eq!(feed_all(&mut i, &wire), Ok(vec![Event::Close(Some(1000))]));
        assert_eq!(feed_all(&mut i, &client(0x81, b"x", [7; 4])), Ok(vec![]));
        let mut i = Inbound::new(65536);
        assert_eq!(
            feed_all(&mut i, &client(0x88, b"", [7; 4])),
            Ok(vec![Event::Close(None)])
        );
    }

    #[test]
    fn close_codes_and_fragments_a_hostile_client_may_try() {
        let code = |c: u16| {
            let mut i = Inbound::new(65536);
            feed_all(&mut i, &client(0x88, &c.to_be_bytes(), [3; 4])).map_err(|v| v.code)
        };
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, u16::MAX] {
            assert_eq!(code(bad), Err(1002), "{bad}");
        }
        for good in [1000, 1001, 1003, 1007, 1011, 3000, 4999] {
            assert_eq!(code(good), Ok(vec![Event::Close(Some(good))]), "{good}");
        }
        // "é" split across two fragments is one valid text message; a lone half is not.
        let mut wire = client(0x01, &[b'a', 0xc3], [1; 4]);
        wire.extend(client(0x89, b"in between", [2; 4]));
        wire.extend(client(0x80, &[0xa9], [1; 4]));
        for step in 1..wire.len() {
            let (out, _) = fed_in_chunks(&wire, step);
            assert_eq!(
                out,
                [
                    Event::Ping(Bytes::from_static(b"in between")),
                    Event::Text(Bytes::from("aé"))
                ]
            );
        }
        let mut i = Inbound::new(65536);
        let mut wire = client(0x01, &[b'a', 0xc3], [1; 4]);
        wire.extend(client(0x80, b"b", [1; 4]));
        assert_eq!(feed_all(&mut i, &wire).map_err(|v| v.code), Err(1007));
        // A Close in the middle of a fragmented message ends it; nothing is held after.
        let mut i = Inbound::new(65536);
        let mut wire = client(0x01, b"half", [1; 4]);
        wire.extend(client(0x88, &1000u16.to_be_bytes(), [1; 4]));
        assert_eq!(feed_all(&mut i, &wire), Ok(vec![Event::Close(Some(1000))]));
        assert_eq!(i.held(), 0);
        // Many empty fragments hold nothing; the size limit counts every fragment.
        let mut i = Inbound::new(10);
        let mut out = Vec::new();
        i.feed(&client(0x01, b"", [1; 4]), &mut out).expect("start");
        for _ in 0..10_000 {
            i.feed(&client(0x00, b"", [1; 4]), &mut out).expect("empty");
        }
        for _ in 0..10 {
            i.feed(&client(0x00, b"x", [1; 4]), &mut out).expect("fits");
        }
        assert_eq!(
            i.feed(&client(0x00, b"x", [1; 4]), &mut out)
                .map_err(|v| v.code),
            Err(1009)
        );
    }

    #[test]
    fn server_frame_headers_and_close_bodies() {
        assert_eq!(
            frame_header(TEXT, 5),
            ([0x81, 5, 0, 0, 0, 0, 0, 0, 0, 0], 2)
        );
        assert_eq!(frame_header(BINARY, 300).0[..4], [0x82, 126, 1, 44]);
        assert_eq!(frame_header(TEXT, 70_000).1, 10);
        let long = "é".repeat(100);
        let b = close_body(1008, &long);
        assert!(b.len() <= 125);
        assert!(std::str::from_utf8(&b[2..]).is_ok());
        assert_eq!(&b[..2], &[0x03, 0xf0]);
    }
}
