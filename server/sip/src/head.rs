//! Splitting a message head into its start line and header lines (RFC 3261 §7, §7.3.1), and
//! the Content-Length rules that delimit the body (§18.3). Shared by `Message::parse` and stream
//! framing; knows no header semantics beyond names and Content-Length.

use std::ops::Range;

use crate::error::ParseError;
use crate::header::{Header, HeaderName, Method};
use crate::scan::{text, trim};

/// How the start line ended. `parse()` accepts bare LF leniently; new lines spliced into the
/// message should use the same ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnding {
    /// CR LF, as RFC 3261 §7 requires.
    CrLf,
    /// A bare LF.
    Lf,
}

impl LineEnding {
    /// The bytes of this line ending.
    pub fn as_str(self) -> &'static str {
        match self {
            LineEnding::CrLf => "\r\n",
            LineEnding::Lf => "\n",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Start {
    Request {
        method: Method,
        uri: Range<usize>,
        version: Range<usize>,
    },
    Response {
        version: Range<usize>,
        status: u16,
        reason: Range<usize>,
    },
}

/// The head of a message: start line and header lines, found by [`scan_head`].
pub(crate) struct Head {
    pub(crate) start_line: Range<usize>,
    pub(crate) line_ending: LineEnding,
    pub(crate) bare_lf: bool,
    pub(crate) headers: Vec<Header>,
    pub(crate) headers_start: usize,
    pub(crate) headers_end: usize,
    pub(crate) body_start: usize,
}

/// Splits `buf[from..]` into the start line and header lines (RFC 3261 §7, §7.3.1): a line
/// starting with SP or HTAB continues the previous header; lines end in CRLF or, leniently, LF.
/// `eof_ends_head`: the buffer may end after a complete header line instead of an empty line.
pub(crate) fn scan_head(buf: &[u8], from: usize, eof_ends_head: bool) -> Result<Head, ParseError> {
    let mut bare_lf = false;
    let mut next_line = |pos: usize| -> Option<(usize, usize)> {
        let nl = pos + buf.get(pos..)?.iter().position(|&b| b == b'\n')?;
        if nl > pos && buf[nl - 1] == b'\r' {
            Some((nl - 1, nl + 1))
        } else {
            bare_lf = true;
            Some((nl, nl + 1))
        }
    };
    let (sl_end, mut pos) = next_line(from).ok_or(ParseError::NoEndOfHeaders)?;
    let line_ending = if buf.get(sl_end) == Some(&b'\r') {
        LineEnding::CrLf
    } else {
        LineEnding::Lf
    };
    let headers_start = pos;
    let mut headers = Vec::new();
    let (headers_end, body_start) = loop {
        if pos >= buf.len() && eof_ends_head {
            break (pos, pos);
        }
        let (content_end, after) = next_line(pos).ok_or(ParseError::NoEndOfHeaders)?;
        if content_end == pos {
            break (pos, after);
        }
        let colon = buf[pos..content_end]
            .iter()
            .position(|&b| b == b':')
            .ok_or(ParseError::BadHeaderLine)?
            + pos;
        let mut name_end = colon;
        while name_end > pos && matches!(buf[name_end - 1], b' ' | b'\t') {
            name_end -= 1;
        }
        let name = HeaderName::from_bytes(&buf[pos..name_end]).ok_or(ParseError::BadHeaderLine)?;
        let (mut value_end, mut line_end) = (content_end, after);
        while matches!(buf.get(line_end), Some(b' ' | b'\t')) {
            let (ce, a) = next_line(line_end).ok_or(ParseError::NoEndOfHeaders)?;
            value_end = ce;
            line_end = a;
        }
        headers.push(Header {
            name,
            line: pos..line_end,
            value: trim(buf, colon + 1..value_end),
        });
        pos = line_end;
    };
    Ok(Head {
        start_line: from..sl_end,
        line_ending,
        bare_lf,
        headers,
        headers_start,
        headers_end,
        body_start,
    })
}

/// Tells requests from responses and splits the start line (RFC 3261 §7.1, §7.2). Lenient about
/// spacing in the Request-Line so the message can still be answered; see `validate`.
pub(crate) fn parse_start(buf: &[u8], r: Range<usize>) -> Result<Start, ParseError> {
    let line = &buf[r.clone()];
    let sp1 = line
        .iter()
        .position(|&b| b == b' ')
        .ok_or(ParseError::BadStartLine)?;
    if line.starts_with(b"SIP/") {
        let rest = &line[sp1 + 1..];
        let code_len = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        let code = &rest[..code_len];
        if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
            return Err(ParseError::BadStatus);
        }
        let status = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        if !(100..=699).contains(&status) {
            return Err(ParseError::BadStatus);
        }
        let reason_start = (r.start + sp1 + 1 + code_len + 1).min(r.end);
        return Ok(Start::Response {
            version: r.start..r.start + sp1,
            status,
            reason: reason_start..r.end,
        });
    }
    let method = Method::from_bytes(&line[..sp1]).ok_or(ParseError::BadStartLine)?;
    // sp1 exists, so rposition finds at least it.
    let sp2 = line.iter().rposition(|&b| b == b' ').unwrap_or(sp1);
    let (uri, version) = if sp2 == sp1 {
        (r.start + sp1 + 1..r.end, r.end..r.end)
    } else {
        (r.start + sp1 + 1..r.start + sp2, r.start + sp2 + 1..r.end)
    };
    Ok(Start::Request {
        method,
        uri,
        version,
    })
}

/// Content-Length of `headers`: digits only; several lines are an error.
pub(crate) fn content_length(buf: &[u8], headers: &[Header]) -> Result<Option<usize>, ParseError> {
    let mut lines = headers
        .iter()
        .filter(|h| h.name == HeaderName::ContentLength);
    let Some(h) = lines.next() else {
        return Ok(None);
    };
    if lines.next().is_some() {
        return Err(ParseError::DuplicateHeader("Content-Length"));
    }
    let v = buf.get(h.value.clone()).unwrap_or_default();
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::BadContentLength);
    }
    text(buf, h.value.clone())
        .and_then(|s| s.parse().ok())
        .map(Some)
        .ok_or(ParseError::BadContentLength)
}

/// The body per Content-Length (RFC 3261 §18.3).
pub(crate) fn body_range(
    buf: &[u8],
    headers: &[Header],
    start: usize,
) -> Result<Range<usize>, ParseError> {
    match content_length(buf, headers)? {
        None => Ok(start..buf.len()),
        Some(n) => match start.checked_add(n) {
            Some(end) if end <= buf.len() => Ok(start..end),
            _ => Err(ParseError::BodyTruncated),
        },
    }
}
