//! The SIP message layer of imsgw: zero-copy parsing of one SIP message held in a single
//! [`Bytes`] buffer, typed views of the headers a proxy reasons about, stream framing for
//! TCP/TLS, byte-range splicing for edits, and building locally generated responses.
//!
//! A [`Message`] keeps the original buffer and byte ranges into it. Edits are expressed as a
//! [`Splice`] of ranges, so every byte the proxy does not change goes out exactly as it came in
//! (RFC 3261 §16.6: a proxy forwards what it does not understand untouched).
//!
//! [`Impu`] is the one canonical form of an IMS public user identity (no password, parameters,
//! headers or port) with its RFC 3261 §19.1.4 comparison against a From/To [`Uri`]; the token
//! crate and the WAF use it so that every IMPU in the system is spelled one way.
//!
//! This crate does no I/O, keeps no clock and never panics on network input: every problem is a
//! [`ParseError`]. It must not know about flows, registrations or transports; those live in the
//! `imsgw` server crate.

mod addr;
mod error;
mod exercise;
mod frame;
mod head;
mod header;
mod impu;
mod message;
mod response;
mod scan;
mod splice;
mod uri;
mod validate;
mod via;

#[cfg(test)]
mod proptest;

pub use addr::{Contacts, NameAddr};
pub use bytes::Bytes;
pub use error::{ParseError, SpliceError};
#[doc(hidden)]
pub use exercise::exercise;
pub use frame::{Frame, frame};
pub use head::LineEnding;
pub use header::{CSeq, Header, HeaderName, Method};
pub use impu::{Impu, ImpuError, MAX_IMPU_LEN};
pub use message::Message;
pub use response::response_to;
pub use scan::Param;
pub use splice::Splice;
pub use uri::{SipUri, Uri};
pub use validate::View;
pub use via::Via;
