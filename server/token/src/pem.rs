//! The little PEM (RFC 7468) this crate needs: writing a PKCS#8 `PRIVATE KEY` and reading one
//! block of a private key back, PKCS#8 or SEC1 (`EC PRIVATE KEY`, RFC 5915) as operators'
//! tools write them. The decoded DER is returned to the caller and never shown in an error.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// PEM text of a PKCS#8 `PrivateKeyInfo` (RFC 7468 §10), 64 characters a line.
pub(crate) fn encode_private_key(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + 64);
    out.push_str("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every 64-byte chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

/// The DER inside the first `PRIVATE KEY` or `EC PRIVATE KEY` block of `text`.
pub(crate) fn decode_private_key(text: &str) -> Result<Vec<u8>, &'static str> {
    for label in ["PRIVATE KEY", "EC PRIVATE KEY"] {
        let begin = format!("-----BEGIN {label}-----");
        let end = format!("-----END {label}-----");
        let Some(start) = text.find(&begin) else {
            continue;
        };
        let body = &text[start + begin.len()..];
        let Some(stop) = body.find(&end) else {
            return Err("PEM block has no END line");
        };
        let b64: String = body[..stop].split_ascii_whitespace().collect();
        return STANDARD
            .decode(b64.as_bytes())
            .map_err(|_| "PEM body is not base64");
    }
    if text.contains("ENCRYPTED PRIVATE KEY") {
        return Err("encrypted private keys are not supported");
    }
    Err("no PRIVATE KEY or EC PRIVATE KEY PEM block")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_key_pem_round_trips() {
        let der: Vec<u8> = (0..=255u8).collect();
        let pem = encode_private_key(&der);
        assert!(pem.lines().all(|l| l.len() <= 64));
        assert_eq!(decode_private_key(&pem), Ok(der));
    }

    #[test]
    fn reads_sec1_label_and_rejects_others() {
        let pem = "junk\n-----BEGIN EC PRIVATE KEY-----\nAAEC\n-----END EC PRIVATE KEY-----\n";
        assert_eq!(decode_private_key(pem), Ok(vec![0, 1, 2]));
        assert!(decode_private_key("-----BEGIN PUBLIC KEY-----\nAAEC\n").is_err());
        assert!(decode_private_key("-----BEGIN PRIVATE KEY-----\nAAEC\n").is_err());
        assert!(
            decode_private_key("-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----")
                .is_err()
        );
        assert!(decode_private_key("-----BEGIN ENCRYPTED PRIVATE KEY-----").is_err());
    }
}
