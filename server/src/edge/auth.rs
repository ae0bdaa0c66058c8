//! Bearer tokens at the edge (RFC 8898 §2, §4; RFC 6750 §3): who may send what through a flow,
//! the challenge for those who may not, and how the checked identity is asserted to the P-CSCF.
//!
//! Owns: the token verifier, the per-flow authorization, the decision for each request from a
//! WebSocket. Must not touch: sockets, HTTP, key files (the WAF driver feeds keys in).

use std::sync::Arc;

use imsgw_sip::{Contacts, HeaderName, Message, Method, SipUri, Uri};
use imsgw_token::{AccessToken, TokenError, Verifier, parse_bearer};

use crate::config::{Challenge, IdentityAssertion};

/// What the edge needs to know about revoked tokens (RFC 7009); the WAF's store implements it.
pub trait Revocations: Send + Sync {
    /// Whether the token with this `jti` was revoked.
    fn is_revoked(&self, jti: &str, now: u64) -> bool;
}

/// Settings from `[sip]` and `[waf]`.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// False only with `sip.danger_allow_unauthenticated`.
    pub required: bool,
    /// `realm` of the challenge: the home domain.
    pub realm: String,
    /// `authz_server` of the challenge: the WAF's issuer URL.
    pub authz_server: String,
    /// The scope a token needs.
    pub scope: String,
    pub challenge: Challenge,
    pub assertion: Vec<IdentityAssertion>,
    /// Header line for `tna`, with `{impi}`, `{impu}`, `{realm}`.
    pub tna_header: String,
}

/// Token checking state of the edge.
pub struct Auth {
    pub settings: AuthSettings,
    pub verifier: Option<Verifier>,
    pub revocations: Arc<dyn Revocations>,
}

/// An identity a token proved, as far as the edge needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The IMPU as an AOR (`sip:user@host`), for comparisons.
    pub impu_aor: String,
    /// The token's IMPU in canonical form (`imsgw_sip::Impu`), for P-Asserted-Identity.
    pub impu: String,
    pub impi: String,
    /// Token expiry, unix seconds.
    pub exp: u64,
    pub jti: String,
    /// The checked token and the header it came in, for `passthrough` (the P-CSCF checks it
    /// again); never logged.
    pub bearer: Option<(HeaderName, AccessToken)>,
}

impl Identity {
    /// Whether `uri` names this identity's IMPU.
    pub fn names(&self, uri: &Uri) -> bool {
        aor_of(uri).is_some_and(|a| a == self.impu_aor)
    }
}

/// What to do with a request from a WebSocket.
#[derive(Debug)]
pub enum Decision {
    /// Forward it; `identity` is what to assert (None when tokens are not required).
    Forward { identity: Option<Identity> },
    /// Answer it and stop.
    Reject(Rejection),
    /// An external issuer's key is unknown: fetch its JWKS, then look again.
    Park { issuer: String },
    /// Drop it without an answer (an `ACK` nobody authorized: it cannot be answered).
    Drop,
}

#[derive(Debug)]
pub struct Rejection {
    pub code: u16,
    pub reason: &'static str,
    /// `(header name, value)` for the challenge, if one goes with it.
    pub challenge: Option<(&'static str, String)>,
    /// Words for the `Warning` header.
    pub why: Option<String>,
}

impl Auth {
    /// An edge that checks nothing (tests of routing, `danger_allow_unauthenticated`).
    pub fn disabled(revocations: Arc<dyn Revocations>) -> Self {
        Self {
            settings: AuthSettings {
                required: false,
                realm: String::new(),
                authz_server: String::new(),
                scope: String::new(),
                challenge: Challenge::Www,
                assertion: Vec::new(),
                tna_header: String::new(),
            },
            verifier: None,
            revocations,
        }
    }

    /// Decides for a request from a flow whose registration identity is `flow_identity`.
    pub fn decide(
        &mut self,
        now: u64,
        msg: &Message,
        flow_identity: Option<&Identity>,
    ) -> Decision {
        if !self.settings.required {
            return Decision::Forward { identity: None };
        }
        let method = msg.method();
        if method == Some(&Method::Ack) {
            // An ACK cannot be answered (RFC 3261 §17.1.1.3): one that rides on no live
            // registration of this flow for its From is dropped. ACKs of INVITEs this flow sent
            // with their own token are matched by the caller before this.
            let from = msg.from().ok();
            let live = flow_identity.filter(|id| {
                id.exp > now
                    && !self.revocations.is_revoked(&id.jti, now)
                    && from.as_ref().is_some_and(|f| id.names(&f.uri))
            });
            return match live {
                Some(id) => Decision::Forward {
                    identity: Some(id.clone()),
                },
                None => Decision::Drop,
            };
        }
        let register = method == Some(&Method::Register);
        // The AOR the request speaks for: To for REGISTER (RFC 3261 §10.2), From otherwise.
        let claimed = if register { msg.to() } else { msg.from() };
        let claimed = claimed.ok().and_then(|na| aor_of(&na.uri));
        match self.bearer(now, msg) {
            // A token inside the clock-skew leeway but past its `exp` verifies, yet leaves no
            // time to register for: capping Expires would silently turn the REGISTER into a
            // removal of the binding (RFC 3261 §10.2.2). Refuse it as expired instead.
            Some(Ok(id)) if register && id.exp <= now => {
                Decision::Reject(self.refusal(&TokenError::Expired))
            }
            Some(Ok(id)) => match claimed {
                Some(aor) if aor == id.impu_aor => Decision::Forward { identity: Some(id) },
                _ => Decision::Reject(Rejection {
                    code: 403,
                    reason: "Forbidden",
                    challenge: None,
                    why: Some(format!(
                        "the token is for {}, not for the {} identity of this request",
                        id.impu,
                        if register { "To" } else { "From" }
                    )),
                }),
            },
            Some(Err(TokenError::UnknownKid { issuer: Some(iss) })) => {
                let refetch = self
                    .verifier
                    .as_mut()
                    .is_some_and(|v| v.should_refetch(&iss, now));
                if refetch {
                    Decision::Park { issuer: iss }
                } else {
                    Decision::Reject(self.refusal(&TokenError::UnknownKid { issuer: Some(iss) }))
                }
            }
            Some(Err(e)) => Decision::Reject(self.refusal(&e)),
            None if register => Decision::Reject(self.challenge(None)),
            None => {
                // RFC 8898 §2.1.4: requests after registration ride on the registration.
                let live = flow_identity
                    .filter(|id| id.exp > now && !self.revocations.is_revoked(&id.jti, now));
                match (live, claimed) {
                    (Some(id), Some(aor)) if aor == id.impu_aor => Decision::Forward {
                        identity: Some(id.clone()),
                    },
                    (Some(id), _) => Decision::Reject(Rejection {
                        code: 403,
                        reason: "Forbidden",
                        challenge: None,
                        why: Some(format!(
                            "this connection is registered as {}, not as the From identity",
                            id.impu
                        )),
                    }),
                    (None, _) => Decision::Reject(self.challenge(None)),
                }
            }
        }
    }

    /// The Bearer credentials of a request, checked. `None` when it carries none.
    fn bearer(&mut self, now: u64, msg: &Message) -> Option<Result<Identity, TokenError>> {
        let (header, raw) = bearer_headers(msg)
            .next()
            .map(|h| (h.name.clone(), msg.value(h)))?;
        let Some(verifier) = self.verifier.as_mut() else {
            return Some(Err(TokenError::Malformed("no verifier")));
        };
        let text = match std::str::from_utf8(raw) {
            Ok(t) => t,
            Err(_) => return Some(Err(TokenError::Malformed("not UTF-8"))),
        };
        let token = match parse_bearer(text) {
            Ok(t) => t,
            Err(_) => return Some(Err(TokenError::Malformed("Bearer credentials syntax"))),
        };
        let verified = match verifier.verify(now, token) {
            Ok(v) => v,
            Err(e) => return Some(Err(e)),
        };
        let c = verified.claims;
        if self.revocations.is_revoked(&c.jti, now) {
            return Some(Err(TokenError::Malformed("revoked")));
        }
        let Some(impu_aor) = Uri::parse(c.impu.as_str()).ok().as_ref().and_then(aor_of) else {
            return Some(Err(TokenError::BadClaim("impu")));
        };
        Some(Ok(Identity {
            impu_aor,
            impu: c.impu.to_string(),
            impi: c.impi,
            exp: c.exp,
            jti: c.jti,
            bearer: Some((header, AccessToken::new(token.to_string()))),
        }))
    }

    /// RFC 6750 §3.1: an insufficient scope is 403; anything else wrong with a token is 401
    /// with `error="invalid_token"`.
    fn refusal(&self, e: &TokenError) -> Rejection {
        if matches!(e, TokenError::InsufficientScope) {
            let mut r = self.challenge(Some("insufficient_scope"));
            r.code = 403;
            r.reason = "Forbidden";
            return r;
        }
        let mut r = self.challenge(Some("invalid_token"));
        r.why = Some(match e {
            TokenError::Malformed("revoked") => "the token was revoked".to_string(),
            e => format!("the token was refused: {e}"),
        });
        r
    }

    /// RFC 8898 §2.2 / §4: `Bearer realm="…", authz_server="…", scope="…"[, error="…"]`.
    fn challenge(&self, error: Option<&str>) -> Rejection {
        let s = &self.settings;
        let mut value = format!(
            "Bearer realm=\"{}\", authz_server=\"{}\", scope=\"{}\"",
            s.realm, s.authz_server, s.scope
        );
        if let Some(e) = error {
            value.push_str(&format!(", error=\"{e}\""));
        }
        let (code, reason, header) = match s.challenge {
            Challenge::Www => (401, "Unauthorized", "WWW-Authenticate"),
            Challenge::Proxy => (407, "Proxy Authentication Required", "Proxy-Authenticate"),
        };
        Rejection {
            code,
            reason,
            challenge: Some((header, value)),
            why: None,
        }
    }

    /// The header lines that state who sent a request (`sip.identity_assertion`), for a request
    /// from a flow that `id` authorized, asserting `impu`. Every request from a flow carries
    /// them, REGISTER and in-dialog or out-of-dialog requests alike, since the P-CSCF sees every
    /// user arrive from imsgw's one address: `tna` (TS 24.229 §5.4.1.2.2, TS 33.203 Annex U
    /// trusted node authentication), `pai` (RFC 3325; not on REGISTER, TS 24.229 §5.2.2), and
    /// `passthrough`: the checked Bearer token, re-written without extra parameters.
    pub fn assertion_lines(&self, id: &Identity, impu: &str, register: bool) -> Vec<String> {
        let mut lines = Vec::new();
        for mode in &self.settings.assertion {
            match mode {
                IdentityAssertion::Tna => {
                    let line = self
                        .settings
                        .tna_header
                        .replace("{impi}", &sanitize(&id.impi))
                        .replace("{impu}", &sanitize(impu))
                        .replace("{realm}", &self.settings.realm);
                    lines.push(format!("{line}\r\n"));
                }
                IdentityAssertion::Pai if !register => {
                    lines.push(format!("P-Asserted-Identity: <{}>\r\n", sanitize(impu)));
                }
                IdentityAssertion::Pai => {}
                IdentityAssertion::Passthrough => {
                    if let Some((header, token)) = &id.bearer {
                        // The token passed `parse_bearer` (b64token): no CR, LF or quote.
                        lines.push(format!(
                            "{}: Bearer {}\r\n",
                            header.as_str(),
                            token.expose()
                        ));
                    }
                }
            }
        }
        lines
    }
}

/// The header lines with Bearer credentials: never forwarded unless `passthrough`.
pub fn bearer_headers(msg: &Message) -> impl Iterator<Item = &imsgw_sip::Header> {
    msg.headers().iter().filter(move |h| {
        matches!(
            h.name,
            HeaderName::Authorization | HeaderName::ProxyAuthorization
        ) && msg
            .value(h)
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"bearer"))
    })
}

/// The AOR of a URI for comparisons: `sip:user@host` (RFC 3261 §10.3 canonical form).
pub fn aor_of(uri: &Uri) -> Option<String> {
    match uri {
        Uri::Sip(s) => Some(sip_aor(s)),
        Uri::Other(o) => Some(o.to_ascii_lowercase()),
    }
}

fn sip_aor(s: &SipUri) -> String {
    // Registrations are for sip: AORs; a sips: AOR names the same identity.
    s.aor().replacen("sips:", "sip:", 1)
}

/// Keeps a claim from breaking out of its header line or quoted string.
fn sanitize(v: &str) -> String {
    v.chars()
        .filter(|c| !matches!(c, '\r' | '\n' | '"' | '<' | '>'))
        .collect()
}

/// The registration a REGISTER asks for, capped at `max_secs`: the Expires header and
/// `expires` Contact parameters to rewrite, and whether it removes bindings only.
pub struct ExpiresPlan {
    /// `(range, new text)` to replace.
    pub replace: Vec<(std::ops::Range<usize>, String)>,
    /// Add `Expires: N` when nothing in the request says how long.
    pub add_header: Option<u64>,
    /// Every binding asks for 0 (or `Contact: *`): a de-registration.
    pub unregister: bool,
}

/// RFC 3261 §10.2.1.1: the expiry of each Contact is its `expires` parameter, else the Expires
/// header, else the registrar's default; here each is capped to the token's remaining life.
pub fn plan_expires(msg: &Message, max_secs: u64) -> ExpiresPlan {
    let mut plan = ExpiresPlan {
        replace: Vec::new(),
        add_header: None,
        unregister: false,
    };
    let header = msg.header(&HeaderName::Expires).map(|h| {
        let v = std::str::from_utf8(msg.value(h))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        (h.value.clone(), v)
    });
    let header_secs = header.as_ref().and_then(|(_, v)| *v);
    if let Some((range, Some(v))) = &header
        && *v > max_secs
    {
        plan.replace.push((range.clone(), max_secs.to_string()));
    }
    let contacts = match msg.contacts() {
        Ok(Contacts::Star(_)) => {
            plan.unregister = true;
            return plan;
        }
        Ok(Contacts::List(list)) => list,
        Err(_) => Vec::new(),
    };
    let mut all_zero = !contacts.is_empty();
    let mut uncovered = false;
    for c in &contacts {
        match c
            .params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case("expires"))
        {
            Some(p) => {
                let v = p
                    .value
                    .as_deref()
                    .and_then(|v| v.trim().parse::<u64>().ok());
                match v {
                    Some(0) => {}
                    Some(v) => {
                        all_zero = false;
                        if v > max_secs {
                            // `;expires=N` as a whole: its range may hold LWS.
                            plan.replace
                                .push((p.range.clone(), format!(";expires={max_secs}")));
                        }
                    }
                    None => all_zero = false,
                }
            }
            None => match header_secs {
                Some(0) => {}
                Some(_) => all_zero = false,
                None => {
                    all_zero = false;
                    uncovered = true;
                }
            },
        }
    }
    if uncovered && header.is_none() {
        plan.add_header = Some(max_secs);
    }
    plan.unregister = all_zero;
    plan
}
