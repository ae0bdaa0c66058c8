//! Bearer tokens at the edge (RFC 8898 §2, §4; RFC 6750 §3): who may send what through a flow,
//! the challenge for those who may not, and how the checked identity is asserted to the P-CSCF.
//! A token bound to a key (`cnf.jkt`) must also come with a proof of that key, or on a flow
//! that has proven it (`pop`).
//!
//! Owns: the token verifier, the per-flow authorization, the decision for each request from a
//! WebSocket. Must not touch: sockets, HTTP, key files (the WAF driver feeds keys in).

use std::collections::HashMap;

use imsgw_sip::{Contacts, Header, HeaderName, Impu, Message, Method, Uri, View};
use imsgw_token::pop::SIP_PROOF_NONCE_HEADER;
use imsgw_token::{AccessToken, TokenError, Verifier, parse_bearer};

use super::FlowId;
use super::pop::{FlowProofs, ProofRefusal, ProofSettings};
use super::status::Status;
use crate::config::{Challenge, IdentityAssertion};

/// Tokens revoked at the WAF (RFC 7009), as the edge was told through [`super::Edge::revoke`]:
/// an input like the keys, never a look-up in the WAF's store, so no store lock or network
/// round trip runs inside the edge. An entry is kept until its token would have expired anyway.
#[derive(Debug, Default)]
pub struct Revoked {
    by_jti: HashMap<String, u64>,
}

impl Revoked {
    /// The token with `jti`, valid until `exp`, is revoked.
    pub fn insert(&mut self, jti: String, exp: u64) {
        self.by_jti.insert(jti, exp);
    }

    pub fn contains(&self, jti: &str) -> bool {
        self.by_jti.contains_key(jti)
    }

    /// Forgets revocations of tokens that expired (plus the verifier's leeway) by `now`.
    pub fn prune(&mut self, now: u64, leeway: u64) {
        self.by_jti
            .retain(|_, exp| exp.saturating_add(leeway) >= now);
    }

    pub fn len(&self) -> usize {
        self.by_jti.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_jti.is_empty()
    }
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
    pub revoked: Revoked,
    /// Digest for phones with phone codes (`[waf.phone_code]`); None: phones get the Bearer
    /// challenge only.
    pub digest: Option<super::digest::DigestSettings>,
    /// Proofs of possession for tokens bound to a key (`pop`).
    pub proofs: ProofSettings,
    /// Checking new tokens' signatures away from the edge's task (`sip.verify_threads`).
    pub elsewhere: Elsewhere,
}

/// New tokens' signatures checked on another thread (issue 11 §3): the edge looks a token up
/// in its cache and, for one it has not seen, parks the request and hands out a
/// [`imsgw_token::Job`]; the verdict comes back to [`super::Edge::token_verdict`] and the
/// parked requests are decided again, every rule as before. Revocation, the proof of
/// possession and the identity rules stay here.
#[derive(Default)]
pub struct Elsewhere {
    /// Off: every token is checked inline, as [`Verifier::verify`] does.
    pub enabled: bool,
    /// The verdict being replayed: the requests parked for this token are decided with it.
    pub(super) settled: Option<([u8; 32], Result<imsgw_token::Verified, TokenError>)>,
    /// Decide inline for now (the verifying thread is full, gone, or late).
    pub(super) inline_now: bool,
}

impl Elsewhere {
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            ..Self::default()
        }
    }
}

/// The flow a request came on, as far as deciding for it goes.
pub struct FlowAuth<'a> {
    pub id: FlowId,
    /// The identity of the flow's last registration (RFC 8898 §2.1.4).
    pub identity: Option<&'a Identity>,
    /// What the flow has proven of keys (`pop`).
    pub proofs: &'a mut FlowProofs,
}

/// An identity a token proved, as far as the edge needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's IMPU, canonical; compared whole with a request's From/To (RFC 3261 §19.1.4).
    pub impu: Impu,
    pub impi: String,
    /// Token expiry, unix seconds.
    pub exp: u64,
    pub jti: String,
    /// The checked token and the header it came in, for `passthrough` (the P-CSCF checks it
    /// again); never logged.
    pub bearer: Option<(HeaderName, AccessToken)>,
}

impl Identity {
    /// Whether `uri` names this identity's IMPU (RFC 3261 §19.1.4); a URI with a password or
    /// headers names nobody.
    pub fn names(&self, uri: &Uri) -> bool {
        self.impu.matches(uri).unwrap_or(false)
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
    /// The token is new: check its signature elsewhere (`job`, with the token), then look
    /// again.
    Verify(Box<(imsgw_token::Job, AccessToken)>),
}

#[derive(Debug)]
pub struct Rejection {
    pub status: Status,
    /// `(header name, value)` for the challenge, if one goes with it.
    pub challenge: Option<(&'static str, String)>,
    /// Words for the `Warning` header.
    pub why: Option<String>,
    /// Other header lines: `Proof-Nonce`, `Retry-After`.
    pub extra: Vec<(&'static str, String)>,
}

impl Auth {
    /// An edge that checks nothing (tests of routing, `danger_allow_unauthenticated`).
    pub fn disabled() -> Self {
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
            revoked: Revoked::default(),
            digest: None,
            proofs: ProofSettings::default(),
            elsewhere: Elsewhere::default(),
        }
    }

    /// Decides for a request from `flow`.
    pub fn decide(
        &mut self,
        now: u64,
        msg: &Message,
        view: &View,
        flow: &mut FlowAuth<'_>,
    ) -> Decision {
        self.decide_with(now, msg, view, flow, true)
    }

    /// [`Auth::decide`] for a request whose credentials are the flow's own code (see `grant`):
    /// it rides on the flow's registration as if it carried none.
    pub fn decide_riding(
        &mut self,
        now: u64,
        msg: &Message,
        view: &View,
        flow: &mut FlowAuth<'_>,
    ) -> Decision {
        self.decide_with(now, msg, view, flow, false)
    }

    fn decide_with(
        &mut self,
        now: u64,
        msg: &Message,
        view: &View,
        flow: &mut FlowAuth<'_>,
        credentials: bool,
    ) -> Decision {
        if !self.settings.required {
            return Decision::Forward { identity: None };
        }
        let method = view.method.as_ref();
        let live = flow.identity.filter(|id| self.is_live(now, id));
        if method == Some(&Method::Ack) {
            // An ACK cannot be answered (RFC 3261 §17.1.1.3): one that rides on no live
            // registration of this flow for its From is dropped. ACKs of INVITEs this flow sent
            // with their own token are matched by the caller before this.
            return match live.filter(|id| id.names(&view.from.uri)) {
                Some(id) => Decision::Forward {
                    identity: Some(id.clone()),
                },
                None => Decision::Drop,
            };
        }
        let register = method == Some(&Method::Register);
        // The identity the request speaks for: To for REGISTER (RFC 3261 §10.2), From otherwise.
        let (claimed, which) = if register {
            (&view.to.uri, "To")
        } else {
            (&view.from.uri, "From")
        };
        let bearer = if credentials {
            self.bearer(now, msg, view, flow)
        } else {
            None
        };
        match bearer {
            // A token inside the clock-skew leeway but past its `exp` verifies, yet leaves no
            // time to register for: capping Expires would silently turn the REGISTER into a
            // removal of the binding (RFC 3261 §10.2.2). Refuse it as expired instead.
            Some(Ok(id)) if register && id.exp <= now => {
                Decision::Reject(self.refusal(&Refused::Token(TokenError::Expired)))
            }
            Some(Ok(id)) if id.names(claimed) => Decision::Forward { identity: Some(id) },
            Some(Ok(id)) => Decision::Reject(not_yours(format!(
                "the token is for {}, not for the {which} identity of this request",
                id.impu
            ))),
            Some(Err(Refused::Token(TokenError::UnknownKid { issuer: Some(iss) }))) => {
                let refetch = self
                    .verifier
                    .as_mut()
                    .is_some_and(|v| v.should_refetch(&iss, now));
                if refetch {
                    Decision::Park { issuer: iss }
                } else {
                    Decision::Reject(self.refusal(&Refused::Token(TokenError::UnknownKid {
                        issuer: Some(iss),
                    })))
                }
            }
            Some(Err(Refused::Proof(p))) => Decision::Reject(self.proof_refusal(now, flow.id, &p)),
            Some(Err(Refused::Unverified(job))) => Decision::Verify(job),
            Some(Err(e)) => Decision::Reject(self.refusal(&e)),
            None if register => Decision::Reject(self.challenge(None)),
            // RFC 8898 §2.1.4: requests after registration ride on the registration.
            None => match live {
                Some(id) if id.names(claimed) => Decision::Forward {
                    identity: Some(id.clone()),
                },
                Some(id) => Decision::Reject(not_yours(format!(
                    "this connection is registered as {}, not as the From identity",
                    id.impu
                ))),
                None => Decision::Reject(self.challenge(None)),
            },
        }
    }

    /// The Bearer credentials of a request, checked, and for a token bound to a key the proof
    /// of it (`pop`). `None` when it carries none.
    fn bearer(
        &mut self,
        now: u64,
        msg: &Message,
        view: &View,
        flow: &mut FlowAuth<'_>,
    ) -> Option<Result<Identity, Refused>> {
        let h = bearer_headers(msg, view).next()?;
        let (header, raw) = (h.name.clone(), msg.value(h));
        let Ok(text) = std::str::from_utf8(raw) else {
            return Some(Err(Refused::Token(TokenError::Malformed("not UTF-8"))));
        };
        let Ok(token) = parse_bearer(text) else {
            return Some(Err(Refused::Token(TokenError::Malformed(
                "Bearer credentials syntax",
            ))));
        };
        if self.verifier.is_none() {
            return Some(Err(Refused::Token(TokenError::Malformed("no verifier"))));
        }
        // Issue 13 §3: a token bound to a key is its holder's only on a flow that proves the key.
        let checked = self
            .check_token(now, token, header, true)
            .and_then(|(id, cnf_jkt)| {
                if let Some(cnf) = cnf_jkt {
                    (self.proofs)
                        .check(now, flow.id, flow.proofs, msg, view, token, &cnf)
                        .map_err(Refused::Proof)?;
                }
                Ok(id)
            });
        Some(checked)
    }

    /// A token's identity and the key it is bound to (`cnf.jkt`), if it verifies and is not
    /// revoked; `header` is where it came (or, for one the edge obtained itself, would go) for
    /// `passthrough`.
    fn check_token(
        &mut self,
        now: u64,
        token: &str,
        header: HeaderName,
        may_defer: bool,
    ) -> Result<(Identity, Option<String>), Refused> {
        let Some(verifier) = self.verifier.as_mut() else {
            return Err(Refused::Token(TokenError::Malformed("no verifier")));
        };
        let e = &self.elsewhere;
        let verified = if may_defer && e.enabled && !e.inline_now {
            match verifier.lookup(now, token) {
                imsgw_token::Lookup::Done(r) => r,
                imsgw_token::Lookup::Uncached(job) => match &e.settled {
                    // A good verdict went into the cache; this is a refusal being replayed.
                    Some((hash, r)) if *hash == job.token_hash() => r.clone(),
                    _ => {
                        let token = AccessToken::new(token.to_owned());
                        return Err(Refused::Unverified(Box::new((job, token))));
                    }
                },
            }
        } else {
            verifier.verify(now, token)
        };
        let c = verified.map_err(Refused::Token)?.claims;
        if self.revoked.contains(&c.jti) {
            return Err(Refused::Revoked);
        }
        let id = Identity {
            impu: c.impu,
            impi: c.impi,
            exp: c.exp,
            jti: c.jti,
            // Kept only where it travels on: a token is most of what an idle connection costs.
            bearer: self
                .settings
                .assertion
                .contains(&IdentityAssertion::Passthrough)
                .then(|| (header, AccessToken::new(token.to_string()))),
        };
        Ok((id, c.cnf_jkt))
    }

    /// The identity of a token the edge obtained for a UA (a code it exchanged, a refresh),
    /// checked like any other; `Err` says why not.
    pub fn identity_of(&mut self, now: u64, token: &AccessToken) -> Result<Identity, String> {
        // A token the edge obtained was never the UA's to prove: its binding is not checked.
        self.check_token(now, token.expose(), HeaderName::Authorization, false)
            .map(|(id, _)| id)
            .map_err(|e| match e {
                Refused::Revoked => "the token was revoked".to_string(),
                Refused::Token(e) => format!("the token was refused: {e}"),
                Refused::Proof(p) => p.to_string(),
                Refused::Unverified(_) => unreachable!("checked inline"),
            })
    }

    /// RFC 6750 §3.1: an insufficient scope is 403; anything else wrong with a token is 401
    /// with `error="invalid_token"`.
    fn refusal(&self, e: &Refused) -> Rejection {
        if matches!(e, Refused::Token(TokenError::InsufficientScope)) {
            let mut r = self.challenge(Some("insufficient_scope"));
            r.status = Status::FORBIDDEN;
            return r;
        }
        let mut r = self.challenge(Some("invalid_token"));
        r.why = Some(match e {
            Refused::Revoked => "the token was revoked".to_string(),
            Refused::Token(e) => format!("the token was refused: {e}"),
            Refused::Proof(p) => p.to_string(),
            Refused::Unverified(_) => "the token is being checked".to_string(),
        });
        r
    }

    /// A bound token without a good proof (`pop`): 401 with the Bearer challenge, its `error`
    /// and a fresh `Proof-Nonce` for `flow` to sign (as RFC 9449 §8 hands out `DPoP-Nonce`);
    /// or, for a flow with too many proofs, 503 with `Retry-After` (RFC 3261 §21.5.4).
    fn proof_refusal(&self, now: u64, flow: FlowId, p: &ProofRefusal) -> Rejection {
        let mut r = if let ProofRefusal::Busy { retry_after } = p {
            Rejection {
                status: Status::SERVICE_UNAVAILABLE,
                challenge: None,
                why: None,
                extra: vec![("Retry-After", retry_after.to_string())],
            }
        } else {
            let mut r = self.challenge(p.error());
            let nonce = self.proofs.nonce(flow, now);
            r.extra.push((SIP_PROOF_NONCE_HEADER, nonce));
            r
        };
        r.why = Some(p.to_string());
        r
    }

    /// RFC 8898 §2.2 / §4: `Bearer realm="…", authz_server="…", scope="…"[, error="…"]`.
    pub(super) fn challenge(&self, error: Option<&str>) -> Rejection {
        let s = &self.settings;
        let mut value = format!(
            "Bearer realm=\"{}\", authz_server=\"{}\", scope=\"{}\"",
            s.realm, s.authz_server, s.scope
        );
        if let Some(e) = error {
            value.push_str(&format!(", error=\"{e}\""));
        }
        let (status, header) = match s.challenge {
            Challenge::Www => (Status::UNAUTHORIZED, "WWW-Authenticate"),
            Challenge::Proxy => (Status::PROXY_AUTH_REQUIRED, "Proxy-Authenticate"),
        };
        Rejection {
            status,
            challenge: Some((header, value)),
            why: None,
            extra: Vec::new(),
        }
    }

    /// Whether a registration `id` proved still speaks for its flow: its token not expired and
    /// not revoked (RFC 8898 §2.1.4).
    fn is_live(&self, now: u64, id: &Identity) -> bool {
        id.exp > now && !self.revoked.contains(&id.jti)
    }

    /// The `P-Asserted-Identity` line for a response a flow registered as `id` sends, in `pai`
    /// mode and while the registration is live and not revoked.
    pub fn response_pai(&self, now: u64, id: &Identity) -> Option<String> {
        (self.is_live(now, id) && self.settings.assertion.contains(&IdentityAssertion::Pai))
            .then(|| format!("P-Asserted-Identity: <{}>\r\n", sanitize(id.impu.as_str())))
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

/// Why a token was not accepted.
#[derive(Debug)]
enum Refused {
    Token(TokenError),
    /// Valid, but revoked at the WAF (RFC 7009).
    Revoked,
    /// Valid, but bound to a key this flow has not proven (`pop`).
    Proof(ProofRefusal),
    /// Not seen before: its signature is to be checked elsewhere (`Elsewhere`).
    Unverified(Box<(imsgw_token::Job, AccessToken)>),
}

/// A 403 for a request whose identity is not the one its token or registration proved.
fn not_yours(why: String) -> Rejection {
    Rejection {
        status: Status::FORBIDDEN,
        challenge: None,
        why: Some(why),
        extra: Vec::new(),
    }
}

/// The credentials headers that carry Bearer credentials (Authorization or
/// Proxy-Authorization, RFC 8898 §2.1, §2.3).
pub fn bearer_headers<'a>(msg: &'a Message, view: &'a View) -> impl Iterator<Item = &'a Header> {
    view.credentials.iter().filter(move |h| {
        msg.value(h)
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"bearer"))
    })
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
pub fn plan_expires(view: &View, max_secs: u64) -> ExpiresPlan {
    let mut plan = ExpiresPlan {
        replace: Vec::new(),
        add_header: None,
        unregister: false,
    };
    let header = view
        .expires
        .as_ref()
        .map(|(v, range)| (range.clone(), v.map(u64::from)));
    let header_secs = header.as_ref().and_then(|(_, v)| *v);
    if let Some((range, Some(v))) = &header
        && *v > max_secs
    {
        plan.replace.push((range.clone(), max_secs.to_string()));
    }
    let contacts = match &view.contacts {
        Contacts::Star(_) => {
            plan.unregister = true;
            return plan;
        }
        Contacts::List(list) => list,
    };
    let mut all_zero = !contacts.is_empty();
    let mut uncovered = false;
    for c in contacts {
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
