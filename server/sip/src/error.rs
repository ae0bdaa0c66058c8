//! Errors of the SIP message layer. Messages are short and name the SIP element at fault, so the
//! server can put them in a 400 reason phrase; they never echo input bytes.

use thiserror::Error;

/// Why a message, a header value or a stream frame was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// Nothing but line ends (or nothing at all).
    #[error("empty message")]
    Empty,
    /// The Request-Line or Status-Line is malformed (RFC 3261 §7.1, §7.2).
    #[error("malformed start line")]
    BadStartLine,
    /// The SIP-Version is not SIP/2.0 (RFC 3261 §7.1).
    #[error("unsupported SIP version")]
    BadVersion,
    /// The Status-Code is not three digits in 100..=699 (RFC 3261 §7.2, §21).
    #[error("bad status code")]
    BadStatus,
    /// A header line has no colon or a malformed name (RFC 3261 §7.3).
    #[error("malformed header line")]
    BadHeaderLine,
    /// A header value holds a control character other than HTAB, or a CR that does not start a
    /// line end (RFC 3261 §25.1: TEXT-UTF8 and LWS only).
    #[error("control character in a header value")]
    ControlInHeader,
    /// No empty line ends the headers (RFC 3261 §7).
    #[error("no empty line after the headers")]
    NoEndOfHeaders,
    /// A mandatory header is absent (RFC 3261 §8.1.1, §16.3).
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// A header that may appear once appears several times (RFC 3261 §7.3.1; RFC 4475 §3.3.8).
    #[error("more than one {0} header")]
    DuplicateHeader(&'static str),
    /// A Via value is malformed (RFC 3261 §20.42).
    #[error("malformed Via")]
    BadVia,
    /// A URI is malformed (RFC 3261 §19.1, §25.1).
    #[error("malformed URI")]
    BadUri,
    /// A name-addr or addr-spec header value (From, To, Contact, Route, ...) is malformed
    /// (RFC 3261 §20.10, §25.1).
    #[error("malformed {0} header")]
    BadNameAddr(&'static str),
    /// The Call-ID is empty or not a `word ["@" word]` (RFC 3261 §20.8).
    #[error("malformed Call-ID")]
    BadCallId,
    /// The CSeq is malformed or its number is not below 2^31 (RFC 3261 §8.1.1.5).
    #[error("malformed CSeq")]
    BadCSeq,
    /// The CSeq method differs from the request method (RFC 3261 §8.1.1.5; RFC 4475 §3.1.2.17).
    #[error("CSeq method does not match the request method")]
    CSeqMethodMismatch,
    /// Max-Forwards is not an integer in 0..=255 (RFC 3261 §20.22; RFC 4475 §3.1.2.4).
    #[error("malformed Max-Forwards")]
    BadMaxForwards,
    /// Expires is not a delta-seconds below 2^32 (RFC 3261 §20.19).
    #[error("malformed Expires")]
    BadExpires,
    /// Content-Length is not a non-negative integer (RFC 3261 §20.14).
    #[error("malformed Content-Length")]
    BadContentLength,
    /// The body is shorter than Content-Length (RFC 3261 §18.3).
    #[error("body shorter than Content-Length")]
    BodyTruncated,
    /// A stream message would exceed the configured maximum size.
    #[error("message too large")]
    TooLarge,
    /// A stream message has no Content-Length (RFC 3261 §18.3: mandatory on streams).
    #[error("Content-Length required on a stream transport")]
    NoContentLength,
    /// A header value index passed to an editing helper does not exist.
    #[error("no such header value")]
    NoSuchValue,
}

/// Why a [`crate::Splice`] could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpliceError {
    /// Two edits touch the same bytes; their result would be ambiguous.
    #[error("overlapping edits at offset {0}")]
    Overlap(usize),
    /// An edit lies outside the source buffer or its range is reversed.
    #[error("edit range {start}..{end} outside a buffer of {len} bytes")]
    OutOfBounds {
        /// Start of the bad range.
        start: usize,
        /// End of the bad range.
        end: usize,
        /// Length of the source buffer.
        len: usize,
    },
}
