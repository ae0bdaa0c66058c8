//! The claims of an imsgw access token (RFC 7519 §4.1 registered claims plus the IMS identities)
//! and their checking when a token is verified: presence, types, time window with leeway,
//! audience, and the IMS identity. Signature and issuer are checked before this, in `verify.rs`.

use imsgw_sip::Impu;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::TokenError;

/// RFC 7519 claims of an imsgw access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer (RFC 7519 §4.1.1): our WAF or a configured external issuer.
    pub iss: String,
    /// Audience (§4.1.3): the SIP service. When verifying, the configured audience the token's
    /// `aud` (a string or an array) was matched against.
    pub aud: String,
    /// Subject (§4.1.2): the signed-in web identity.
    pub sub: String,
    /// IMS public user identity the holder may register, e.g. `sip:alice@ims.example.net`, in
    /// canonical form: a token whose `impu` is not canonical is refused, never reinterpreted.
    pub impu: Impu,
    /// IMS private user identity, e.g. `alice@ims.example.net`.
    pub impi: String,
    /// Space-separated scopes (RFC 6749 §3.3); empty if the token has none.
    pub scope: String,
    /// Issued at (§4.1.6), Unix seconds; 0 if an external token has none.
    pub iat: u64,
    /// Not before (§4.1.5), Unix seconds; `iat` if the token has none.
    pub nbf: u64,
    /// Expiry (§4.1.4), Unix seconds. Always present.
    pub exp: u64,
    /// Token id (§4.1.7), the handle for revocation; empty if an external token has none.
    pub jti: String,
    /// The OAuth client the token was issued to (RFC 9068 §2.2, RFC 8693 §4.3). Every token
    /// minted here has one; when verifying it is optional, because tokens of external issuers
    /// that predate RFC 9068 lack it and RFC 9068 §4's validation does not rely on it. A token
    /// without one belongs to no client, so no client may revoke it (RFC 7009 §2.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The RFC 7638 thumbprint of the key the token is bound to, from and to
    /// `"cnf": {"jkt": "…"}` (RFC 7800 §3.1, RFC 9449 §6.1); `None` for a bearer token. The
    /// verifier accepts either: whoever takes the token (the edge) decides whether to require a
    /// proof by that key ([`crate::pop`]). A `cnf` that binds by another method than `jkt` is
    /// refused ([`TokenError::UnsupportedConfirmation`]), never read as a bearer token.
    #[serde(
        rename = "cnf",
        default,
        skip_serializing_if = "Option::is_none",
        with = "cnf"
    )]
    pub cnf_jkt: Option<String>,
}

impl Claims {
    /// Whether `s` is one of the space-separated scopes (RFC 6749 §3.3: exact, case-sensitive).
    pub fn has_scope(&self, s: &str) -> bool {
        self.scope.split(' ').any(|t| !t.is_empty() && t == s)
    }

    /// Builds claims from a verified payload, checking everything but signature and issuer.
    pub(crate) fn from_payload(
        payload: &Map<String, Value>,
        iss: &str,
        audience: &str,
        now: u64,
        leeway: u64,
    ) -> Result<Claims, TokenError> {
        let exp = numeric_date(payload, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
        let iat = numeric_date(payload, "iat")?;
        let nbf = numeric_date(payload, "nbf")?;
        let claims_time = (exp, nbf.or(iat).unwrap_or(0), iat);
        check_time(claims_time.0, nbf, iat, now, leeway)?;

        match payload.get("aud") {
            None => return Err(TokenError::MissingClaim("aud")),
            Some(Value::String(a)) if a == audience => {}
            Some(Value::Array(list)) if list.iter().any(|a| a.as_str() == Some(audience)) => {}
            Some(Value::String(_) | Value::Array(_)) => return Err(TokenError::WrongAudience),
            Some(_) => return Err(TokenError::BadClaim("aud")),
        }
        let sub = string(payload, "sub")?.ok_or(TokenError::MissingClaim("sub"))?;
        let impu = string(payload, "impu")?
            .filter(|s| !s.is_empty())
            .ok_or(TokenError::MissingClaim("impu"))?;
        let impu = Impu::parse(impu).map_err(TokenError::BadImpu)?;
        // External issuers may omit `impi`: default to the user@host of a SIP IMPU (TS 23.228
        // §4.3.3.1: the IMPI takes the form of an NAI, user@realm).
        let impi = match string(payload, "impi")? {
            Some(i) if !i.is_empty() => i.to_owned(),
            _ => impu
                .user_at_host()
                .ok_or(TokenError::MissingClaim("impi"))?
                .to_owned(),
        };
        Ok(Claims {
            iss: iss.to_owned(),
            aud: audience.to_owned(),
            sub: sub.to_owned(),
            impu,
            impi,
            scope: string(payload, "scope")?.unwrap_or_default().to_owned(),
            iat: claims_time.2.unwrap_or(0),
            nbf: claims_time.1,
            exp,
            jti: string(payload, "jti")?.unwrap_or_default().to_owned(),
            client_id: string(payload, "client_id")?
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            cnf_jkt: cnf_jkt(payload)?,
        })
    }

    /// Re-checks the time window of already verified claims (a cache hit).
    pub(crate) fn check_time(&self, now: u64, leeway: u64) -> Result<(), TokenError> {
        check_time(self.exp, Some(self.nbf), Some(self.iat), now, leeway)
    }
}

/// RFC 7519 §4.1.4-4.1.6 with clock-skew `leeway`: expired once `now > exp + leeway`; not yet
/// valid while `nbf` or `iat` is more than `leeway` in the future.
fn check_time(
    exp: u64,
    nbf: Option<u64>,
    iat: Option<u64>,
    now: u64,
    leeway: u64,
) -> Result<(), TokenError> {
    if now > exp.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    let horizon = now.saturating_add(leeway);
    if nbf.is_some_and(|t| t > horizon) || iat.is_some_and(|t| t > horizon) {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

/// A NumericDate claim (RFC 7519 §2: seconds, possibly fractional), or `None` if absent.
fn numeric_date(
    payload: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<u64>, TokenError> {
    match payload.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                return Ok(Some(u));
            }
            match n.as_f64() {
                // Truncation of a non-negative finite seconds value is the intent here.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Some(f) if (0.0..1.0e15).contains(&f) => Ok(Some(f as u64)),
                _ => Err(TokenError::BadClaim(name)),
            }
        }
        Some(_) => Err(TokenError::BadClaim(name)),
    }
}

/// The `jkt` of a `cnf` claim (RFC 7800 §3.1, RFC 9449 §6.1), or `None` if there is no `cnf`.
/// A `cnf` of another confirmation method only (`x5t#S256` of RFC 8705, `jwk`, `kid`) binds the
/// token to something not checked here: refused rather than taken as a bearer token.
fn cnf_jkt(payload: &Map<String, Value>) -> Result<Option<String>, TokenError> {
    match payload.get("cnf") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(cnf)) => match cnf.get("jkt") {
            Some(Value::String(j)) if !j.is_empty() => Ok(Some(j.clone())),
            None => Err(TokenError::UnsupportedConfirmation),
            Some(_) => Err(TokenError::BadClaim("cnf")),
        },
        Some(_) => Err(TokenError::BadClaim("cnf")),
    }
}

/// Serde for [`Claims::cnf_jkt`]: `Some(jkt)` is `{"jkt": jkt}`.
mod cnf {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Cnf<T> {
        jkt: T,
    }

    pub(super) fn serialize<S: Serializer>(jkt: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        // `skip_serializing_if` leaves only `Some` here; `None` would be `null`.
        jkt.as_deref().map(|jkt| Cnf { jkt }).serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(Option::<Cnf<String>>::deserialize(d)?.map(|c| c.jkt))
    }
}

/// A string claim, or `None` if absent.
fn string<'a>(
    payload: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, TokenError> {
    match payload.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(TokenError::BadClaim(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;

    fn payload(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("object"),
        }
    }

    fn good() -> Value {
        json!({"iss":"https://waf","aud":"sip","sub":"u1","impu":"sip:alice@ims.example",
               "impi":"alice@ims.example","scope":"sip openid","iat":NOW,"nbf":NOW,
               "exp":NOW + 300,"jti":"j1","client_id":"wic"})
    }

    fn check(v: Value, now: u64) -> Result<Claims, TokenError> {
        Claims::from_payload(&payload(v), "https://waf", "sip", now, 60)
    }

    #[test]
    fn has_scope_matches_whole_space_separated_tokens_rfc6749_3_3() {
        let c = check(good(), NOW).expect("valid");
        assert!(c.has_scope("sip") && c.has_scope("openid"));
        assert!(!c.has_scope("si") && !c.has_scope("") && !c.has_scope("SIP"));
    }

    #[test]
    fn exp_boundary_with_leeway_rfc7519_4_1_4() {
        assert!(check(good(), NOW + 300 + 60).is_ok());
        assert_eq!(check(good(), NOW + 300 + 61), Err(TokenError::Expired));
        assert_eq!(check(good(), u64::MAX), Err(TokenError::Expired));
    }

    #[test]
    fn nbf_and_iat_in_the_future_beyond_leeway_rfc7519_4_1_5() {
        let mut v = good();
        v["nbf"] = json!(NOW + 61);
        assert_eq!(check(v.clone(), NOW), Err(TokenError::NotYetValid));
        v["nbf"] = json!(NOW + 60);
        assert!(check(v, NOW).is_ok());
        let mut v = good();
        v["iat"] = json!(NOW + 3600);
        v.as_object_mut().expect("obj").remove("nbf");
        assert_eq!(check(v, NOW), Err(TokenError::NotYetValid));
    }

    #[test]
    fn aud_may_be_an_array_rfc7519_4_1_3() {
        let mut v = good();
        v["aud"] = json!(["other", "sip"]);
        assert_eq!(check(v.clone(), NOW).expect("ok").aud, "sip");
        v["aud"] = json!(["other"]);
        assert_eq!(check(v, NOW), Err(TokenError::WrongAudience));
    }

    #[test]
    fn wrong_types_and_missing_claims_are_named() {
        for (name, bad) in [
            ("exp", json!("soon")),
            ("exp", json!(-1)),
            ("sub", json!(1)),
            ("aud", json!(5)),
            ("impu", json!([])),
            ("client_id", json!(7)),
        ] {
            let mut v = good();
            v[name] = bad;
            assert_eq!(check(v, NOW), Err(TokenError::BadClaim(name)), "{name}");
        }
        for name in ["exp", "aud", "sub", "impu"] {
            let mut v = good();
            v.as_object_mut().expect("obj").remove(name);
            assert_eq!(check(v, NOW), Err(TokenError::MissingClaim(name)), "{name}");
        }
    }

    #[test]
    fn fractional_numeric_date_is_accepted_rfc7519_2() {
        let mut v = good();
        v["exp"] = json!((NOW + 300) as f64 + 0.5);
        assert_eq!(check(v, NOW).expect("ok").exp, NOW + 300);
    }

    #[test]
    fn missing_impi_defaults_to_user_at_host_of_the_canonical_impu_ts23228_4_3_3_1() {
        let mut v = good();
        v.as_object_mut().expect("obj").remove("impi");
        v["impu"] = json!("SIP:%62ob@IMS.example");
        let c = check(v.clone(), NOW).expect("ok");
        assert_eq!(c.impi, "bob@ims.example");
        assert_eq!(c.impu.as_str(), "sip:bob@ims.example");
        v["impu"] = json!("tel:+15551234");
        assert_eq!(check(v, NOW), Err(TokenError::MissingClaim("impi")));
    }

    #[test]
    fn non_canonical_impu_is_refused_not_reinterpreted_rfc3261_19_1_4() {
        use imsgw_sip::ImpuError;
        for (bad, why) in [
            ("sip:bob:x@ims.example", ImpuError::Password),
            ("sip:bob:@ims.example", ImpuError::Password),
            ("sip:bob@ims.example;user=phone", ImpuError::Params),
            ("sip:bob@ims.example?subject=x", ImpuError::Headers),
            ("sip:bob@ims.example:5060", ImpuError::Port),
            ("sips:bob@ims.example", ImpuError::Scheme),
            (" sip:bob@ims.example", ImpuError::BadChar),
        ] {
            let mut v = good();
            v["impu"] = json!(bad);
            assert_eq!(check(v, NOW), Err(TokenError::BadImpu(why)), "{bad}");
        }
        assert_eq!(
            TokenError::BadImpu(ImpuError::Password).oauth_error(),
            "invalid_token"
        );
    }

    #[test]
    fn optional_claims_default() {
        let v = json!({"aud":"sip","sub":"u","impu":"sip:a@b","exp":NOW + 10});
        let c = check(v, NOW).expect("ok");
        assert_eq!(
            (c.iat, c.nbf, c.scope.as_str(), c.jti.as_str()),
            (0, 0, "", "")
        );
        assert_eq!(c.client_id, None);
    }

    #[test]
    fn cnf_jkt_is_read_from_and_written_to_the_cnf_object_rfc9449_6_1() {
        let mut v = good();
        v["cnf"] = json!({"jkt": "abc"});
        let c = check(v, NOW).expect("ok");
        assert_eq!(c.cnf_jkt.as_deref(), Some("abc"));
        let out = serde_json::to_value(&c).expect("json");
        assert_eq!(out["cnf"], json!({"jkt": "abc"}));
        assert_eq!(serde_json::from_value::<Claims>(out).expect("back"), c);
        let unbound = check(good(), NOW).expect("ok");
        assert_eq!(unbound.cnf_jkt, None);
        let out = serde_json::to_value(&unbound).expect("json");
        assert!(out.get("cnf").is_none(), "{out}");
        assert_eq!(
            serde_json::from_value::<Claims>(out).expect("back"),
            unbound
        );
    }

    #[test]
    fn a_cnf_of_another_method_or_shape_is_refused_rfc7800_3_1() {
        let mut v = good();
        v["cnf"] = json!({"x5t#S256": "abc"});
        assert_eq!(check(v, NOW), Err(TokenError::UnsupportedConfirmation));
        for bad in [json!("abc"), json!({"jkt": 1}), json!({"jkt": ""})] {
            let mut v = good();
            v["cnf"] = bad;
            assert_eq!(check(v, NOW), Err(TokenError::BadClaim("cnf")));
        }
        let mut v = good();
        v["cnf"] = Value::Null;
        assert_eq!(check(v, NOW).expect("null is absent").cnf_jkt, None);
    }

    #[test]
    fn client_id_is_read_when_present_and_optional_otherwise_rfc9068_2_2() {
        assert_eq!(
            check(good(), NOW).expect("ok").client_id.as_deref(),
            Some("wic")
        );
        let mut v = good();
        v["client_id"] = json!("");
        assert_eq!(check(v, NOW).expect("ok").client_id, None);
    }
}
