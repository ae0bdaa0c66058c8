//! Drivers: the bytes on sockets and WebSockets. Each hands whole SIP messages to the hub.

pub mod admission;
pub mod client_addr;
pub mod http;
pub mod ims;
pub mod phones;
pub mod rfc6455;
pub mod tls;
pub mod ws;

/// What comes next on a SIP stream (TCP or TLS, RFC 3261 §18.3): shared by the IMS side's
/// connections and the phones'.
pub(crate) enum Piece {
    /// An RFC 5626 §4.4.1 keep-alive; `pong`: it was a CRLFCRLF ping, answer CRLF.
    KeepAlive { pong: bool },
    /// One whole SIP message.
    Message(bytes::Bytes),
}

/// Takes the next piece off the front of `buf`: None until one is whole; `Err` for a stream
/// that cannot be framed (it cannot be resynchronised: close it).
pub(crate) fn next_piece(
    buf: &mut bytes::BytesMut,
    max: usize,
) -> Result<Option<Piece>, imsgw_sip::ParseError> {
    use bytes::Buf;
    Ok(match imsgw_sip::frame(buf, max)? {
        imsgw_sip::Frame::Incomplete => None,
        imsgw_sip::Frame::KeepAlive(n) => {
            buf.advance(n);
            Some(Piece::KeepAlive { pong: n == 4 })
        }
        imsgw_sip::Frame::Message(n) => Some(Piece::Message(buf.split_to(n).freeze())),
    })
}
