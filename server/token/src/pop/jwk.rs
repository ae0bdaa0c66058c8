//! The public key a proof carries in its `jwk` header (RFC 7517, RFC 7518 §6.2: EC P-256 only),
//! and its RFC 7638 thumbprint ([`Jkt`]): what a bound token names in `cnf.jkt` (RFC 9449 §6.1).
//!
//! Owns: reading a JWK into a P-256 point and naming it. Must not touch: signatures, claims.

use std::fmt;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ParsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::PopError;

/// The RFC 7638 JWK thumbprint (SHA-256, base64url without padding: 43 characters) of a public
/// key: the `jkt` of RFC 9449 §6.1 and the `dpop_jkt` of RFC 9449 §10. Public, not secret.
///
/// Made only by [`jwk_thumbprint`] (from a key) or [`Jkt::parse`] (a value written earlier).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Jkt(String);

impl Jkt {
    /// A thumbprint written down earlier (a `dpop_jkt` parameter, a stored binding): 43
    /// base64url characters encoding 32 bytes, or `None`.
    pub fn parse(s: &str) -> Option<Jkt> {
        let bytes = URL_SAFE_NO_PAD.decode(s.as_bytes()).ok()?;
        (bytes.len() == 32 && s.len() == 43).then(|| Jkt(s.to_owned()))
    }

    /// The thumbprint text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The thumbprint text, owned.
    pub fn into_string(self) -> String {
        self.0
    }

    /// Whether a token's `cnf.jkt` (see [`crate::Claims::cnf_jkt`]) names this key. A token
    /// bound to no key is not bound to this one.
    pub fn binds(&self, cnf_jkt: Option<&str>) -> bool {
        cnf_jkt == Some(self.0.as_str())
    }
}

impl fmt::Display for Jkt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Jkt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Jkt({})", self.0)
    }
}

/// The RFC 7638 §3 thumbprint of a public EC P-256 JWK: SHA-256 over
/// `{"crv":"P-256","kty":"EC","x":"…","y":"…"}` (the required members of RFC 7518 §6.2.1 in
/// lexicographic order, no whitespace), base64url. Other members (`kid`, `alg`, `use`) and the
/// order or spacing of the input do not change it.
///
/// Refused like a proof's `jwk`: not an object, a private part `d`, another key type or
/// curve, coordinates that are not 32 bytes of canonical base64url.
pub fn jwk_thumbprint(jwk: &Value) -> Result<Jkt, PopError> {
    Ok(P256Jwk::parse(jwk)?.thumbprint())
}

/// An EC P-256 public key read from a JWK: its coordinates, each 32 bytes.
pub(super) struct P256Jwk {
    x: [u8; 32],
    y: [u8; 32],
}

impl P256Jwk {
    /// Reads `jwk`, refusing everything but a public EC P-256 key (RFC 9449 §4.3 check 7: no
    /// private key; RFC 7518 §6.2.1: `crv`, `x`, `y`).
    pub(super) fn parse(jwk: &Value) -> Result<P256Jwk, PopError> {
        let Value::Object(m) = jwk else {
            return Err(PopError::BadJwk("not a JSON object"));
        };
        // Whatever the key type: a proof that publishes its private key proves nothing.
        if m.contains_key("d") {
            return Err(PopError::PrivateKeyInJwk);
        }
        match m.get("kty") {
            Some(Value::String(k)) if k == "EC" => {}
            Some(Value::String(_)) => return Err(PopError::KeyNotEc),
            None => return Err(PopError::BadJwk("no kty")),
            Some(_) => return Err(PopError::BadJwk("kty is not a string")),
        }
        match m.get("crv") {
            Some(Value::String(c)) if c == "P-256" => {}
            Some(Value::String(_)) => return Err(PopError::CurveNotP256),
            None => return Err(PopError::BadJwk("no crv")),
            Some(_) => return Err(PopError::BadJwk("crv is not a string")),
        }
        let coordinate = |name: &str, bad: &'static str| -> Result<[u8; 32], PopError> {
            let Some(Value::String(s)) = m.get(name) else {
                return Err(PopError::BadJwk(bad));
            };
            // The base64 engine refuses padding and non-zero trailing bits, so one key has one
            // spelling and so one thumbprint.
            URL_SAFE_NO_PAD
                .decode(s.as_bytes())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or(PopError::BadJwk(bad))
        };
        Ok(P256Jwk {
            x: coordinate("x", "x is not 32 bytes of base64url")?,
            y: coordinate("y", "y is not 32 bytes of base64url")?,
        })
    }

    /// RFC 7638 §3.2–3.3, from the coordinates re-encoded (they decoded canonically, so this is
    /// the text the JWK carried).
    pub(super) fn thumbprint(&self) -> Jkt {
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            URL_SAFE_NO_PAD.encode(self.x),
            URL_SAFE_NO_PAD.encode(self.y)
        );
        Jkt(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
    }

    /// The key for ES256 verification; refused if the point is not on P-256.
    pub(super) fn verification_key(&self) -> Result<ParsedPublicKey, PopError> {
        // SEC 1 §2.3.3: the uncompressed point 04 || x || y.
        let mut point = [0u8; 65];
        point[0] = 4;
        point[1..33].copy_from_slice(&self.x);
        point[33..].copy_from_slice(&self.y);
        ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
            .map_err(|_| PopError::BadJwk("not a point on P-256"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // The public key of the example DPoP proof in RFC 9449 §4.2 (Figure 4).
    const X: &str = "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs";
    const Y: &str = "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA";

    #[test]
    fn thumbprint_of_the_rfc9449_example_key_rfc7638_3() {
        // Computed independently with Node.js 20 (node:crypto, which also checked the point):
        //   node -e 'const c=require("crypto"); const j={kty:"EC",crv:"P-256",x:"l8tF…BFs",
        //     y:"9VE4…GRDA"}; c.createPublicKey({key:j,format:"jwk"});
        //     console.log(c.createHash("sha256").update(JSON.stringify({crv:j.crv,kty:j.kty,
        //     x:j.x,y:j.y})).digest("base64url"))'
        // It is also the `cnf.jkt` RFC 9449 §6.1 shows for that key.
        let jwk = json!({"kty":"EC","x":X,"y":Y,"crv":"P-256"});
        let jkt = jwk_thumbprint(&jwk).expect("thumbprint");
        assert_eq!(jkt.as_str(), "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
        assert_eq!(Jkt::parse(jkt.as_str()), Some(jkt));
    }

    #[test]
    fn member_order_whitespace_and_optional_members_do_not_change_it_rfc7638_3_3() {
        let a = jwk_thumbprint(&json!({"crv":"P-256","kty":"EC","x":X,"y":Y})).expect("a");
        let text = format!(
            "{{ \"y\" : \"{Y}\",\n \"alg\":\"ES256\", \"x\":\"{X}\", \"kid\":\"k1\",\t\"use\":\"sig\", \"crv\":\"P-256\", \"kty\":\"EC\" }}"
        );
        let b = jwk_thumbprint(&serde_json::from_str(&text).expect("json")).expect("b");
        assert_eq!(a, b);
    }

    #[test]
    fn only_a_public_p256_key_is_accepted() {
        let base = json!({"kty":"EC","crv":"P-256","x":X,"y":Y});
        let with = |k: &str, v: Value| {
            let mut j = base.clone();
            j[k] = v;
            jwk_thumbprint(&j).err()
        };
        assert_eq!(
            with("d", json!("AAAA")),
            Some(PopError::PrivateKeyInJwk),
            "a private key"
        );
        assert_eq!(with("kty", json!("RSA")), Some(PopError::KeyNotEc));
        assert_eq!(with("kty", json!("OKP")), Some(PopError::KeyNotEc));
        assert_eq!(with("crv", json!("P-384")), Some(PopError::CurveNotP256));
        assert!(matches!(with("x", json!(5)), Some(PopError::BadJwk(_))));
        // 31 bytes, then padding, then non-zero trailing bits: none is 32 canonical bytes.
        assert!(matches!(
            with("x", json!(&X[..42])),
            Some(PopError::BadJwk(_))
        ));
        assert!(matches!(
            with("x", json!(format!("{X}="))),
            Some(PopError::BadJwk(_))
        ));
        let last = X.chars().last().expect("x");
        let twisted = format!("{}{}", &X[..42], if last == 's' { 't' } else { 's' });
        assert!(
            matches!(with("x", json!(twisted)), Some(PopError::BadJwk(_))),
            "non-canonical trailing bits"
        );
        assert!(matches!(
            jwk_thumbprint(&json!("EC")),
            Err(PopError::BadJwk(_))
        ));
        let mut rsa = json!({"kty":"RSA","n":"sXch","e":"AQAB"});
        assert_eq!(jwk_thumbprint(&rsa).err(), Some(PopError::KeyNotEc));
        rsa["d"] = json!("x");
        assert_eq!(jwk_thumbprint(&rsa).err(), Some(PopError::PrivateKeyInJwk));
    }

    #[test]
    fn a_point_off_the_curve_is_no_key() {
        let mut y = URL_SAFE_NO_PAD.decode(Y).expect("y");
        y[31] ^= 1;
        let jwk = json!({"kty":"EC","crv":"P-256","x":X,"y":URL_SAFE_NO_PAD.encode(&y)});
        let parsed = P256Jwk::parse(&jwk).expect("well-formed");
        assert!(matches!(
            parsed.verification_key(),
            Err(PopError::BadJwk("not a point on P-256"))
        ));
        let good = P256Jwk::parse(&json!({"kty":"EC","crv":"P-256","x":X,"y":Y})).expect("ok");
        assert!(good.verification_key().is_ok());
    }

    #[test]
    fn a_jkt_is_43_base64url_characters_of_32_bytes() {
        assert!(Jkt::parse("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I").is_some());
        for bad in [
            "",
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4",
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I=",
            "0ZcOCORZNYy+DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
        ] {
            assert!(Jkt::parse(bad).is_none(), "{bad}");
        }
        let j = Jkt::parse("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I").expect("jkt");
        assert!(j.binds(Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I")));
        assert!(!j.binds(None) && !j.binds(Some("other")));
    }
}
