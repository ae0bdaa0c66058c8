//! Stream framing for SIP over TCP/TLS (RFC 3261 §18.3) in the mini-redis style: `frame()`
//! checks whether the buffer starts with a complete message and says how long it is, without
//! allocating the message; the caller then splits those bytes off and calls
//! [`crate::Message::parse`]. "Incomplete" is not an error. Also recognises RFC 5626 §4.4.1
//! keep-alives. Owns no socket and no buffer.

use crate::error::ParseError;
use crate::head::{content_length, scan_head};

/// What the start of a stream buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A complete message of this many bytes (head and body) starts the buffer.
    Message(usize),
    /// A keep-alive starts the buffer (RFC 5626 §4.4.1): CRLFCRLF (a ping, answer with CRLF) or
    /// CRLF (a pong); drop this many bytes.
    KeepAlive(usize),
    /// More bytes are needed.
    Incomplete,
}

/// Looks for a complete message at the start of `buf`. Stream messages need Content-Length
/// (RFC 3261 §18.3): a head without one is `Err(NoContentLength)`. A message (or a head still
/// being received) longer than `max_len` is `Err(TooLarge)`. After an error the stream cannot be
/// resynchronised and should be closed.
///
/// A lone CRLF is reported as `Incomplete` until the next byte shows whether it is a pong or
/// the first half of a ping: splitting a ping into two pongs would leave it unanswered.
pub fn frame(buf: &[u8], max_len: usize) -> Result<Frame, ParseError> {
    if buf.starts_with(b"\r\n") {
        return Ok(match (buf.get(2), buf.get(3)) {
            (Some(b'\r'), Some(b'\n')) => Frame::KeepAlive(4),
            // `\r\n` or `\r\n\r`: a ping may still be arriving.
            (None, _) | (Some(b'\r'), None) => Frame::Incomplete,
            _ => Frame::KeepAlive(2),
        });
    }
    let Some(body_start) = find_head_end(buf) else {
        if buf.len() > max_len {
            return Err(ParseError::TooLarge);
        }
        return Ok(Frame::Incomplete);
    };
    if body_start > max_len {
        return Err(ParseError::TooLarge);
    }
    let head = scan_head(&buf[..body_start], 0, false)?;
    let len = content_length(buf, &head.headers)?.ok_or(ParseError::NoContentLength)?;
    let total = body_start.checked_add(len).ok_or(ParseError::TooLarge)?;
    if total > max_len {
        return Err(ParseError::TooLarge);
    }
    Ok(if buf.len() >= total {
        Frame::Message(total)
    } else {
        Frame::Incomplete
    })
}

/// Offset just after the empty line ending the head: the first `\n` followed by `\r\n` or `\n`.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = buf.get(i..)?.iter().position(|&b| b == b'\n') {
        let nl = i + p;
        match buf.get(nl + 1..) {
            Some([b'\n', ..]) => return Some(nl + 2),
            Some([b'\r', b'\n', ..]) => return Some(nl + 3),
            Some([b'\r']) | Some([]) | None => return None,
            _ => i = nl + 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[u8] =
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nl: 5\r\n\r\nhello";

    #[test]
    fn complete_message_reports_its_length_rfc3261_18_3() {
        let mut buf = REQ.to_vec();
        buf.extend_from_slice(b"INVITE sip:next");
        assert_eq!(frame(&buf, 4096), Ok(Frame::Message(REQ.len())));
    }

    #[test]
    fn partial_input_is_incomplete_not_an_error() {
        for cut in 1..REQ.len() {
            assert_eq!(
                frame(&REQ[..cut], 4096),
                Ok(Frame::Incomplete),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn keep_alives_rfc5626_4_4_1() {
        assert_eq!(frame(b"\r\n\r\n", 4096), Ok(Frame::KeepAlive(4)));
        assert_eq!(frame(b"\r\n\r\nOPTIONS", 4096), Ok(Frame::KeepAlive(4)));
        assert_eq!(frame(b"\r\nOPTIONS", 4096), Ok(Frame::KeepAlive(2)));
        assert_eq!(frame(b"\r\nO", 4096), Ok(Frame::KeepAlive(2)));
        assert_eq!(frame(b"\r\n", 4096), Ok(Frame::Incomplete));
        assert_eq!(frame(b"\r\n\r", 4096), Ok(Frame::Incomplete));
        assert_eq!(frame(b"", 4096), Ok(Frame::Incomplete));
    }

    #[test]
    fn oversize_is_rejected_before_it_is_buffered() {
        assert_eq!(frame(REQ, 20), Err(ParseError::TooLarge));
        assert_eq!(frame(&[b'x'; 100], 50), Err(ParseError::TooLarge));
        let big = b"OPTIONS sip:a@b SIP/2.0\r\nl: 999999\r\n\r\n";
        assert_eq!(frame(big, 4096), Err(ParseError::TooLarge));
        let huge = b"OPTIONS sip:a@b SIP/2.0\r\nl: 99999999999999999999999\r\n\r\n";
        assert_eq!(frame(huge, 4096), Err(ParseError::BadContentLength));
    }

    #[test]
    fn stream_message_without_content_length_is_an_error_rfc3261_18_3() {
        let buf = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n";
        assert_eq!(frame(buf, 4096), Err(ParseError::NoContentLength));
    }

    #[test]
    fn bare_lf_heads_are_framed() {
        let buf = b"OPTIONS sip:a@b SIP/2.0\nl: 2\n\nhiX";
        assert_eq!(frame(buf, 4096), Ok(Frame::Message(buf.len() - 1)));
    }
}
