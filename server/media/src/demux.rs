//! Demultiplexing the one WebRTC socket: which session a STUN packet is for, from the local
//! ufrag in its USERNAME (RFC 8445 §7.2.2), parsed without allocating.
//!
//! Owns: reading STUN just far enough to route it, and checking a binding request's
//! MESSAGE-INTEGRITY with the session's password (RFC 8489 §14.5) before it may refresh consent
//! or teach the demux a browser address. Must not touch: sessions, sockets.

use str0m::config::CryptoProvider;
use str0m::ice::StunMessage;

/// Whether `data` is a binding request whose MESSAGE-INTEGRITY verifies with our password
/// (RFC 8445 §7.2.2: short-term credentials). Anything else never counts as consent.
pub(crate) fn stun_request_valid(data: &[u8], pwd: &str, crypto: &CryptoProvider) -> bool {
    let Ok(msg) = StunMessage::parse(data) else {
        return false;
    };
    msg.is_binding_request()
        && msg.verify(pwd.as_bytes(), |key, parts| {
            crypto.sha1_hmac_provider.sha1_hmac(key, parts)
        })
}

/// The local (our) ufrag of a STUN binding request: USERNAME is "local:remote" (RFC 8445
/// §7.2.2), read without allocating. None for anything malformed.
pub(crate) fn stun_local_ufrag(data: &[u8]) -> Option<&str> {
    if data.len() < 20 || data[4..8] != [0x21, 0x12, 0xA4, 0x42] {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
    let body = data.get(20..20 + len)?;
    let mut off = 0;
    while let Some(h) = body.get(off..off + 4) {
        let t = u16::from_be_bytes([h[0], h[1]]);
        let l = usize::from(u16::from_be_bytes([h[2], h[3]]));
        let v = body.get(off + 4..off + 4 + l)?;
        if t == 0x0006 {
            let user = std::str::from_utf8(v).ok()?;
            return user.split(':').next();
        }
        off += 4 + l.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun(username: &[u8]) -> Vec<u8> {
        let mut attr = vec![0x00, 0x06];
        attr.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attr.extend_from_slice(username);
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attr.len() as u16).to_be_bytes());
        m.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&attr);
        m
    }

    #[test]
    fn stun_username_names_our_ufrag_first_rfc8445_7_2_2() {
        assert_eq!(stun_local_ufrag(&stun(b"ours:theirs")), Some("ours"));
    }

    #[test]
    fn malformed_stun_is_no_ufrag_never_a_panic() {
        assert_eq!(stun_local_ufrag(&[0, 1, 0, 0]), None);
        let mut m = stun(b"a:b");
        m[3] = 200; // length past the end
        assert_eq!(stun_local_ufrag(&m), None);
        let mut m = stun(b"a:b");
        m[22] = 0xff; // attribute length past the end
        assert_eq!(stun_local_ufrag(&m), None);
        let mut m = stun(b"\xff\xfe:b");
        m.truncate(m.len());
        assert_eq!(stun_local_ufrag(&m), None, "not UTF-8");
        for n in 0..m.len() {
            let _ = stun_local_ufrag(&m[..n]);
        }
    }
}
