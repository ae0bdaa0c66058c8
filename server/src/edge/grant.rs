//! Grants the edge holds for a flow (issue 13 §1): a UA that obtained an authorization code
//! sends it in its REGISTER (`Bearer code="…", code_verifier="…", client_id="…"`, see
//! `imsgw_token::parse_bearer_credentials`) and the edge exchanges it at the WAF. From then on
//! the edge holds that flow's tokens:
//!
//! - the REGISTER goes on with the access token's identity, its Expires capped to the token's
//!   life as for any token (RFC 8898 §2.1);
//! - a later REGISTER on the same flow needs no credentials: it rides on the held grant, and
//!   when less than half the access token's life is left the edge refreshes it first (the
//!   registration never outlives the token, so the UA's re-REGISTER always comes before the
//!   token lapses);
//! - when the WAF revokes the token (the family was revoked: sign-out, RFC 7009, a replayed
//!   code or refresh token), the edge ends the registration with an un-REGISTER of its own and
//!   closes the flow (1008), which ends the flow's calls.
//!
//! The WAF's store is never touched here (STYLE.md §15): the exchange is an [`Output::Grant`]
//! the driver carries out off the edge's task, and its answer comes back through
//! [`Edge::granted`]. The REGISTER waits meanwhile, like a request waiting for a JWKS.
//!
//! Owns: held grants, exchanges in flight. Must not touch: the store, sockets, the clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use imsgw_sip::{HeaderName, Message, Method, Splice, View};
use imsgw_token::{AccessToken, BearerCredentials, Secret, parse_bearer_credentials};
use tracing::{debug, info};

use super::auth::{Identity, bearer_headers, plan_expires};
use super::digest::DigestCheck;
use super::status::Status;
use super::{Dest, Edge, FlowId, FlowKind, Output};

/// What the edge asks the WAF for.
#[derive(Debug, Clone)]
pub enum GrantAsk {
    /// Exchange an authorization code (RFC 6749 §4.1.3 with RFC 7636 §4.5).
    Code {
        code: Secret,
        verifier: Secret,
        client_id: String,
        redirect_uri: Option<String>,
    },
    /// Refresh a held grant (RFC 6749 §6).
    Refresh {
        client_id: String,
        refresh_token: Secret,
    },
    /// A phone's Digest answer (issue 13 §2): the WAF tries it on the IMPU's phone codes and
    /// app passwords (`waf::phone_code::sign_in`).
    Phone {
        impu: String,
        /// The phone's `+sip.instance`, else its Contact's `user@host`.
        phone: String,
        source: std::net::IpAddr,
        check: Box<DigestCheck>,
    },
    /// The connection a grant was held for is gone: revoke the grant (RFC 7009), which was
    /// for that connection only. Nothing comes back.
    Revoke {
        client_id: String,
        refresh_token: Secret,
    },
}

// For `Output`'s comparisons in tests; secrets compared in constant time.
impl PartialEq for GrantAsk {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (
                Self::Code {
                    code: a,
                    verifier: b,
                    client_id: c,
                    redirect_uri: d,
                },
                Self::Code {
                    code: a2,
                    verifier: b2,
                    client_id: c2,
                    redirect_uri: d2,
                },
            ) => a.ct_eq(a2.expose()) && b.ct_eq(b2.expose()) && c == c2 && d == d2,
            (
                Self::Refresh {
                    client_id: c,
                    refresh_token: r,
                },
                Self::Refresh {
                    client_id: c2,
                    refresh_token: r2,
                },
            ) => c == c2 && r.ct_eq(r2.expose()),
            (
                Self::Revoke {
                    client_id: c,
                    refresh_token: r,
                },
                Self::Revoke {
                    client_id: c2,
                    refresh_token: r2,
                },
            ) => c == c2 && r.ct_eq(r2.expose()),
            (
                Self::Phone {
                    impu: i,
                    phone: p,
                    source: s,
                    check: c,
                },
                Self::Phone {
                    impu: i2,
                    phone: p2,
                    source: s2,
                    check: c2,
                },
            ) => i == i2 && p == p2 && s == s2 && c == c2,
            _ => false,
        }
    }
}

impl Eq for GrantAsk {}

/// What the WAF gave.
#[derive(Debug)]
pub struct Granted {
    pub access_token: AccessToken,
    /// None for a client without the refresh grant: the registration then ends with the token.
    pub refresh_token: Option<Secret>,
    /// For a phone's Digest sign-in: H(A1) of its password for the user name and algorithm it
    /// used (RFC 7616 §3.4.2), so the edge checks its later requests itself.
    pub digest_ha1: Option<Secret>,
}

/// Why the WAF gave nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantError {
    /// The grant is no good (RFC 6749 §5.2): the words say why.
    Refused(String),
    /// The WAF could not answer (its store failed, the driver's queue was full).
    Unavailable(String),
    /// Too many failed attempts (a phone's IMPU or address): refused without checking.
    Limited { why: String, retry_after: u64 },
}

/// Exchanges in flight at once, over all flows; more are answered 503 (the WAF's store is one
/// resource for everyone).
pub const MAX_IN_FLIGHT: usize = 256;
/// Of those, kept for refreshes of held grants: a flood of codes cannot make signed-in people
/// lose their registrations.
pub const FOR_REFRESH: usize = 64;
/// Exchanges in flight from one address (an IPv6 /64): one host cannot take every place.
pub const PER_SOURCE: usize = 4;
/// How long a REGISTER waits for the WAF's answer.
pub const WAIT: Duration = Duration::from_secs(10);
/// How long an answer that comes after its REGISTER was answered 503 is still taken: the WAF
/// did its work (a code spent, a family rotated), so what it gave must not be lost.
pub const LATE: Duration = Duration::from_secs(60);
/// `Retry-After` on the edge's 503s (RFC 3261 §21.5.4).
const RETRY_SECS: &str = "5";

/// A grant the edge holds for a flow.
pub(super) struct Held {
    client_id: String,
    refresh: Option<Secret>,
    /// The current access token's identity.
    pub(super) identity: Identity,
    /// Seconds the current access token was given for.
    lifetime: u64,
    /// The REGISTER as last sent upstream on this grant: the un-REGISTER is made from it.
    last_register: Option<Bytes>,
    /// SHA-256 of the code this grant came from.
    code_key: Option<[u8; 32]>,
    /// A Digest phone's H(A1), its user name and algorithm, and the last `nc` seen per nonce:
    /// every REGISTER and out-of-dialog request of a UDP phone must answer Digest (a UDP
    /// source address can be forged), checked here.
    digest: Option<Box<HeldDigest>>,
}

/// What the held H(A1) says of an answer.
enum HeldCheck {
    Good,
    /// Right, but this nonce and `nc` were answered already.
    Replayed,
    Wrong,
    /// Nothing to check with (no sign-in on this flow, another user name or algorithm).
    Unknown,
}

struct HeldDigest {
    ha1: Secret,
    username: String,
    algorithm: super::digest::Algorithm,
    /// The nonce last answered and its highest `nc`: an answer is good once (RFC 7616 §3.4).
    last: Option<(String, u32)>,
}

struct Pending {
    flow: FlowId,
    /// The REGISTER waiting for the answer.
    register: Bytes,
    /// When the REGISTER is answered 503 if the WAF has not answered; once answered, when
    /// the ask is forgotten.
    until: Instant,
    kind: AskKind,
    /// The client the ask is for: what it gives and nobody takes is revoked as this client.
    client_id: String,
    /// For a refresh: the jti of the held grant it refreshes.
    refreshes: Option<String>,
    /// The flow's address (an IPv6 address's /64), for the per-source share.
    source: std::net::IpAddr,
    /// The REGISTER was answered already (503 on time-out): what comes is installed, not
    /// resumed.
    answered: bool,
    /// Its top Via branch: a retransmission of it is absorbed.
    branch: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AskKind {
    Code,
    Refresh,
    Phone,
}

/// The edge's grant state.
#[derive(Default)]
pub(super) struct Grants {
    pending: HashMap<u64, Pending>,
    next_ticket: u64,
    /// Which flow holds the grant whose current access token has this jti.
    pub(super) by_jti: HashMap<String, FlowId>,
}

/// Counters for metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct GrantStats {
    pub codes_exchanged: u64,
    pub codes_refused: u64,
    pub refreshed: u64,
    pub refresh_refused: u64,
    /// Exchanges the WAF could not answer, or that were not asked for lack of room.
    pub unavailable: u64,
    /// Held grants ended because their token was revoked.
    pub revoked: u64,
    /// Phones signed in with Digest (a phone code or its app password), and refused.
    pub phone_signed_in: u64,
    pub phone_refused: u64,
}

/// What [`Edge::grant_step`] decided for a REGISTER.
pub(super) enum Step {
    /// Not a held grant's business: the usual Bearer checks decide.
    NotMine,
    /// Forward with this identity.
    Forward(Identity),
    /// Parked for the WAF, or answered: nothing more to do now.
    Done,
    /// A request that carries the flow's own code: decided as if it carried no credentials.
    Ride,
}

impl Grants {
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.until).min()
    }

    pub(super) fn held_count(&self) -> usize {
        self.by_jti.len()
    }

    /// Whether an exchange for `flow` is under way.
    pub(super) fn pending_for(&self, flow: FlowId) -> bool {
        self.pending.values().any(|p| p.flow == flow && !p.answered)
    }
}

impl Edge {
    /// A REGISTER from `flow`: a code to exchange, or no credentials on a flow holding a grant.
    pub(super) fn grant_step(
        &mut self,
        now: Instant,
        flow: FlowId,
        msg: &Message,
        view: &View,
    ) -> Step {
        if !self.auth.settings.required {
            return Step::NotMine;
        }
        // A UDP source address can be forged: a phone over UDP answers Digest on every
        // REGISTER and out-of-dialog request, checked here with the H(A1) its sign-in left.
        let udp_phone = self.digest_phone(flow) && self.flow_kind(flow).unreliable();
        if udp_phone
            && view.method != Some(Method::Register)
            && !matches!(view.method, Some(Method::Ack | Method::Cancel))
            && view.to.tag().is_none()
        {
            return self.udp_request_gate(flow, msg, view);
        }
        if view.method != Some(Method::Register) {
            // JsSIP puts one Authorization value on every request: a WIC that signed in with
            // its code sends that code on its INVITEs too. The flow's own code rides on the
            // flow's registration; any other code is no credential outside a REGISTER.
            let own = (self.flows.get(&flow).and_then(|f| f.grant.as_deref()))
                .and_then(|h| h.code_key)
                .is_some_and(|k| code_of(msg, view).is_some_and(|(_, c)| c == k));
            return if own { Step::Ride } else { Step::NotMine };
        }
        let mut creds = bearer_headers(msg, view);
        let first = creds.next();
        if let Some(h) = first {
            let text = std::str::from_utf8(msg.value(h)).unwrap_or("");
            let Ok(BearerCredentials::Code(c)) = parse_bearer_credentials(text) else {
                return Step::NotMine;
            };
            if creds.next().is_some() {
                return self.grant_refuse(flow, msg, view, Status::BAD_REQUEST, "two credentials");
            }
            // A UA that sends its code on every REGISTER (a header set once) rides on what the
            // code gave on this connection; exchanging it again would be a replay, which
            // revokes everything the code gave (RFC 6749 §4.1.2).
            let key = code_key(c.code);
            let same = (self.flows.get(&flow).and_then(|f| f.grant.as_deref()))
                .is_some_and(|h| h.code_key == Some(key));
            if same {
                return self.held_step(now, flow, msg, view);
            }
            let ask = GrantAsk::Code {
                code: Secret::new(c.code),
                verifier: Secret::new(c.code_verifier),
                client_id: c.client_id.to_string(),
                redirect_uri: c.redirect_uri.map(str::to_string),
            };
            return self.grant_ask(now, flow, msg, view, ask, AskKind::Code);
        }
        if self.digest_phone(flow) {
            if let Some(step) = self.digest_step(now, flow, msg, view) {
                return step;
            }
            // No credentials: a phone that holds nothing (or is over UDP) is offered Digest.
            if udp_phone || self.flows.get(&flow).is_some_and(|f| f.grant.is_none()) {
                self.stats.auth_refused += 1;
                self.phone_challenge(flow, msg, view, Status::UNAUTHORIZED, None, false, None);
                return Step::Done;
            }
        }
        self.held_step(now, flow, msg, view)
    }

    /// Whether `flow` is a phone that signs in with Digest (phone codes on, not a WebSocket).
    pub(super) fn digest_phone(&self, flow: FlowId) -> bool {
        self.auth.digest.is_some()
            && self
                .flows
                .get(&flow)
                .is_some_and(|f| f.kind != FlowKind::Ws)
    }

    /// A phone's REGISTER with Digest credentials: checked here as far as the edge can (realm,
    /// nonce, the user name naming the To AOR), then handed to the WAF. None when it carries
    /// none.
    fn digest_step(
        &mut self,
        now: Instant,
        flow: FlowId,
        msg: &Message,
        view: &View,
    ) -> Option<Step> {
        let digest = self.auth.digest.as_ref()?;
        let h = view.credentials.iter().find(|h| {
            msg.value(h)
                .get(..6)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"digest"))
        })?;
        let text = std::str::from_utf8(msg.value(h)).unwrap_or("");
        let check = match DigestCheck::parse(text, "REGISTER") {
            Ok(c) => c,
            Err(e) => {
                return Some(self.grant_refuse(flow, msg, view, Status::BAD_REQUEST, e.0));
            }
        };
        let unix = self.unix;
        if check.realm != digest.realm {
            let why = "the Digest realm is not this gateway's";
            self.phone_challenge(
                flow,
                msg,
                view,
                Status::UNAUTHORIZED,
                Some(why),
                false,
                None,
            );
            return Some(Step::Done);
        }
        match digest.check_nonce(flow, &check.nonce, unix) {
            Ok(true) => {}
            Ok(false) => {
                // RFC 7616 §3.3: the credentials may be good; answer a fresh nonce.
                self.phone_challenge(flow, msg, view, Status::UNAUTHORIZED, None, true, None);
                return Some(Step::Done);
            }
            Err(e) => {
                self.stats.auth_refused += 1;
                self.phone_challenge(
                    flow,
                    msg,
                    view,
                    Status::UNAUTHORIZED,
                    Some(e.0),
                    false,
                    None,
                );
                return Some(Step::Done);
            }
        }
        // The person types their IMPU as the user name, with or without `sip:`.
        let named = if check.username.contains(':') {
            check.username.clone()
        } else {
            format!("sip:{}", check.username)
        };
        let impu = match imsgw_sip::Impu::parse(&named) {
            Ok(i) if i.matches(&view.to.uri).unwrap_or(false) => i,
            _ => {
                self.stats.auth_refused += 1;
                let why = "the Digest user name is not the IMPU this REGISTER is for (To)";
                return Some(self.grant_refuse(flow, msg, view, Status::FORBIDDEN, why));
            }
        };
        // A phone that signed in on this flow is checked here, with the H(A1) it left: while
        // its token lasts, a re-REGISTER needs no trip to the WAF (whose attempt counts a
        // stranger can fill), and an answer seen before is refused.
        match self.held_digest(flow, &check) {
            HeldCheck::Good => {
                let unix = self.unix;
                let live = (self.flows.get(&flow).and_then(|f| f.grant.as_deref())).filter(|h| {
                    let left = h.identity.exp.saturating_sub(unix);
                    !self.auth.revoked.contains(&h.identity.jti)
                        && h.identity.names(&view.to.uri)
                        && left.saturating_mul(2) >= h.lifetime
                });
                if let Some(h) = live {
                    return Some(Step::Forward(h.identity.clone()));
                }
            }
            HeldCheck::Replayed => {
                let s = Status::UNAUTHORIZED;
                let why = "that Digest answer was already used";
                self.phone_challenge(flow, msg, view, s, Some(why), true, None);
                return Some(Step::Done);
            }
            HeldCheck::Wrong | HeldCheck::Unknown => {}
        }
        let source = self.flows.get(&flow).map(|f| f.remote.ip())?;
        let ask = GrantAsk::Phone {
            impu: impu.as_str().to_string(),
            phone: phone_of(view),
            source,
            check: Box::new(check),
        };
        Some(self.grant_ask(now, flow, msg, view, ask, AskKind::Phone))
    }

    /// Checks Digest credentials with the H(A1) the flow's sign-in left, recording the `nc`.
    fn held_digest(&mut self, flow: FlowId, c: &DigestCheck) -> HeldCheck {
        let Some(d) = (self.flows.get_mut(&flow))
            .and_then(|f| f.grant.as_deref_mut())
            .and_then(|h| h.digest.as_deref_mut())
        else {
            return HeldCheck::Unknown;
        };
        if d.username != c.username || d.algorithm != c.algorithm {
            return HeldCheck::Unknown;
        }
        if !d.ha1.expose_str().is_some_and(|ha1| c.matches_ha1(ha1)) {
            return HeldCheck::Wrong;
        }
        let Some(nc) = parse_nc(c) else {
            return HeldCheck::Wrong;
        };
        if let Some((nonce, last)) = &d.last
            && *nonce == c.nonce
            && nc <= *last
        {
            return HeldCheck::Replayed;
        }
        d.last = Some((c.nonce.clone(), nc));
        HeldCheck::Good
    }

    /// An out-of-dialog request from a phone over UDP: it must answer a Digest challenge
    /// (407, as a proxy asks, RFC 3261 §22.3) with the password its sign-in proved.
    fn udp_request_gate(&mut self, flow: FlowId, msg: &Message, view: &View) -> Step {
        // A request with a token of its own proves itself: the usual checks decide (it does
        // not ride the registration).
        if bearer_headers(msg, view).next().is_some() {
            return Step::NotMine;
        }
        let s = Status::PROXY_AUTH_REQUIRED;
        let method = view
            .method
            .as_ref()
            .map(|m| m.as_str().to_string())
            .unwrap_or_default();
        let Some(c) = digest_creds(msg, view, &method) else {
            self.stats.auth_refused += 1;
            self.phone_challenge(flow, msg, view, s, None, false, None);
            return Step::Done;
        };
        let unix = self.unix;
        let nonce = (self.auth.digest.as_ref())
            .map(|d| (d.realm == c.realm).then(|| d.check_nonce(flow, &c.nonce, unix)));
        match nonce {
            Some(Some(Ok(true))) => {}
            Some(Some(Ok(false))) => {
                self.phone_challenge(flow, msg, view, s, None, true, None);
                return Step::Done;
            }
            _ => {
                self.stats.auth_refused += 1;
                let why = "the Digest nonce or realm is not one this connection was given";
                self.phone_challenge(flow, msg, view, s, Some(why), false, None);
                return Step::Done;
            }
        }
        match self.held_digest(flow, &c) {
            HeldCheck::Good => Step::Ride,
            HeldCheck::Replayed => {
                self.phone_challenge(flow, msg, view, s, None, true, None);
                Step::Done
            }
            HeldCheck::Wrong | HeldCheck::Unknown => {
                self.stats.auth_refused += 1;
                let why = "wrong user name or password, or this phone has not signed in";
                self.phone_challenge(flow, msg, view, s, Some(why), false, None);
                Step::Done
            }
        }
    }

    /// `status` with the Digest challenges for `flow` (RFC 7235 §4.1: one header per
    /// challenge; `WWW-Authenticate` on 401, `Proxy-Authenticate` on 407), a `Warning` and a
    /// `Retry-After` if given.
    #[allow(clippy::too_many_arguments)]
    fn phone_challenge(
        &mut self,
        flow: FlowId,
        msg: &Message,
        view: &View,
        status: Status,
        why: Option<&str>,
        stale: bool,
        retry_after: Option<u64>,
    ) {
        let mut lines: Vec<(String, String)> = Vec::new();
        let header = if status == Status::PROXY_AUTH_REQUIRED {
            "Proxy-Authenticate"
        } else {
            "WWW-Authenticate"
        };
        if status == Status::UNAUTHORIZED || status == Status::PROXY_AUTH_REQUIRED {
            // Digest only: phones that know Digest often stop at the first challenge they do
            // not understand (a Bearer one included); one that signs in with a token or a code
            // sends it without being asked.
            if let Some(d) = &self.auth.digest {
                for c in d.challenges(flow, self.unix, stale) {
                    lines.push((header.into(), c));
                }
            }
        }
        if let Some(w) = why {
            lines.push(("Warning".into(), super::request::warning(w)));
        }
        if let Some(r) = retry_after {
            lines.push(("Retry-After".into(), r.to_string()));
        }
        let extra: Vec<(&str, &str)> = lines
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let tag = super::request::local_tag_for(view);
        let r = imsgw_sip::response_to(msg, status.code, status.reason, Some(&tag), &extra);
        self.push(Dest::Flow(flow), r, None);
    }

    /// A REGISTER on a flow that may hold a grant, riding on it.
    fn held_step(&mut self, now: Instant, flow: FlowId, msg: &Message, view: &View) -> Step {
        let Some(held) = self.flows.get(&flow).and_then(|f| f.grant.as_deref()) else {
            return Step::NotMine;
        };
        if self.auth.revoked.contains(&held.identity.jti) {
            self.drop_grant(flow);
            self.sign_in_ended(flow, msg, view, "it was revoked");
            return Step::Done;
        }
        if !held.identity.names(&view.to.uri) {
            let why = format!(
                "this connection signed in as {}, not as the To identity",
                held.identity.impu
            );
            return self.grant_refuse(flow, msg, view, Status::FORBIDDEN, &why);
        }
        let left = held.identity.exp.saturating_sub(self.unix);
        // A removal (RFC 3261 §10.2.2) needs no fresh token while the held one lasts: waiting
        // for the WAF would leave the binding behind whenever the WAF is slow or down.
        let removal = plan_expires(view, u64::MAX).unregister;
        if left.saturating_mul(2) < held.lifetime
            && !(removal && left > 0)
            && let Some(rt) = &held.refresh
        {
            let ask = GrantAsk::Refresh {
                client_id: held.client_id.clone(),
                refresh_token: Secret::new(rt.expose()),
            };
            return self.grant_ask(now, flow, msg, view, ask, AskKind::Refresh);
        }
        if left == 0 {
            // Expired, and nothing to refresh it with: the UA must sign in again.
            self.drop_grant(flow);
            self.sign_in_ended(flow, msg, view, "its token expired; sign in again");
            return Step::Done;
        }
        Step::Forward(held.identity.clone())
    }

    fn grant_ask(
        &mut self,
        now: Instant,
        flow: FlowId,
        msg: &Message,
        view: &View,
        ask: GrantAsk,
        kind: AskKind,
    ) -> Step {
        let branch = view.top_via().branch.clone();
        if let Some(p) = self.grants.pending.values().find(|p| p.flow == flow) {
            // The same REGISTER again (a UDP phone's Timer E): the same transaction, absorbed.
            if p.branch.is_some() && p.branch == branch {
                return Step::Done;
            }
            let why = "a sign-in is already under way on this connection";
            return self.grant_busy(flow, msg, view, why);
        }
        let Some(f) = self.flows.get(&flow) else {
            return Step::Done;
        };
        // One subscriber: an IPv4 address or an IPv6 /64, as the WAF counts them.
        let source = crate::waf::limits::subscriber(f.remote.ip()).0;
        let (client_id, refreshes) = match &ask {
            GrantAsk::Code { client_id, .. } => (client_id.clone(), None),
            GrantAsk::Refresh { client_id, .. } => (
                client_id.clone(),
                f.grant.as_deref().map(|h| h.identity.jti.clone()),
            ),
            GrantAsk::Phone { .. } | GrantAsk::Revoke { .. } => (String::new(), None),
        };
        let room = match kind {
            AskKind::Refresh => MAX_IN_FLIGHT,
            AskKind::Code | AskKind::Phone => MAX_IN_FLIGHT - FOR_REFRESH,
        };
        let from_source = (self.grants.pending.values())
            .filter(|p| p.source == source)
            .count();
        if self.grants.pending.len() >= room || from_source >= PER_SOURCE {
            self.grant_stats.unavailable += 1;
            let why = "too many sign-ins are under way; try again";
            return self.grant_busy(flow, msg, view, why);
        }
        let ticket = self.grants.next_ticket;
        self.grants.next_ticket += 1;
        self.grants.pending.insert(
            ticket,
            Pending {
                flow,
                register: msg.as_bytes().clone(),
                until: now + WAIT,
                kind,
                client_id,
                refreshes,
                source,
                answered: false,
                branch,
            },
        );
        self.out.push_back(Output::Grant { ticket, ask });
        Step::Done
    }

    /// 503 with `Retry-After` (RFC 3261 §21.5.4).
    fn grant_busy(&mut self, flow: FlowId, msg: &Message, view: &View, why: &str) -> Step {
        let w = super::request::warning(why);
        let extra = [("Retry-After", RETRY_SECS), ("Warning", w.as_str())];
        let tag = super::request::local_tag_for(view);
        let s = Status::SERVICE_UNAVAILABLE;
        let r = imsgw_sip::response_to(msg, s.code, s.reason, Some(&tag), &extra);
        self.push(Dest::Flow(flow), r, None);
        Step::Done
    }

    fn grant_refuse(
        &mut self,
        flow: FlowId,
        msg: &Message,
        view: &View,
        status: Status,
        why: &str,
    ) -> Step {
        super::request::reject(self, Dest::Flow(flow), msg, view, status, Some(why));
        Step::Done
    }

    /// The WAF's answer to [`Output::Grant`] `ticket`.
    pub fn granted(&mut self, now: Instant, ticket: u64, result: Result<Granted, GrantError>) {
        let Some(p) = self.grants.pending.remove(&ticket) else {
            // A revocation's answer, or an ask forgotten after LATE.
            if let Ok(g) = &result
                && g.refresh_token.is_some()
            {
                tracing::warn!(
                    ticket,
                    "tokens for an ask forgotten long ago; they lapse unused"
                );
            }
            return;
        };
        let open = self.flows.contains_key(&p.flow);
        let g = match result {
            Ok(g) => g,
            Err(e) => return self.grant_failed(&p, open, e),
        };
        // Is it still wanted? A refresh only by the grant it refreshes (revoked or replaced
        // meanwhile: the new tokens go too).
        let held_jti = (self.flows.get(&p.flow).and_then(|f| f.grant.as_deref()))
            .map(|h| h.identity.jti.clone());
        let wanted = open
            && match p.kind {
                AskKind::Refresh => held_jti.is_some() && held_jti == p.refreshes,
                AskKind::Code | AskKind::Phone => true,
            };
        let (Some((msg, view)), true) = (parked(&p.register), wanted) else {
            self.revoke_unwanted(&p, g);
            if open && !p.answered && p.kind == AskKind::Refresh {
                self.answer_ended(&p, "the sign-in was revoked");
            }
            return;
        };
        let unix = self.unix;
        let identity = match self.auth.identity_of(unix, &g.access_token) {
            Ok(id) => id,
            Err(why) => {
                tracing::warn!(%why, "a token the WAF gave the edge was not accepted");
                self.revoke_unwanted(&p, g);
                if p.kind == AskKind::Refresh {
                    self.drop_grant(p.flow);
                }
                if !p.answered {
                    self.answer_ended(&p, &why);
                }
                return;
            }
        };
        if !identity.names(&view.to.uri) {
            // Held only for a REGISTER it may make: the tokens are dropped unused.
            self.stats.auth_refused += 1;
            self.revoke_unwanted(&p, g);
            if p.kind == AskKind::Refresh {
                self.drop_grant(p.flow);
            }
            if !p.answered {
                let why = format!(
                    "the code is for {}, not for the To identity of this request",
                    identity.impu
                );
                self.grant_refuse(p.flow, &msg, &view, Status::FORBIDDEN, &why);
            }
            return;
        }
        match p.kind {
            AskKind::Refresh => self.grant_stats.refreshed += 1,
            AskKind::Code => {
                self.grant_stats.codes_exchanged += 1;
                info!(flow = %p.flow, impu = %identity.impu, "a code in REGISTER was exchanged");
            }
            AskKind::Phone => {
                self.grant_stats.phone_signed_in += 1;
                debug!(flow = %p.flow, impu = %identity.impu, "a phone signed in with Digest");
            }
        }
        self.install(&p, &msg, &view, g, &identity);
        if !p.answered {
            super::request::resume(self, now, p.flow, msg, identity);
        }
    }

    /// Holds `g` for the flow of `p`, in place of what it held.
    fn install(&mut self, p: &Pending, msg: &Message, view: &View, g: Granted, id: &Identity) {
        let Some(f) = self.flows.get_mut(&p.flow) else {
            return;
        };
        let old = f.grant.take();
        // The registration this flow already has speaks for the new token from now on.
        if f.identity.as_ref().is_some_and(|i| i.impu == id.impu) {
            f.identity = Some(id.clone());
        }
        let (code_key, client_id) = match p.kind {
            AskKind::Code => (code_of(msg, view).map(|(_, k)| k), p.client_id.clone()),
            AskKind::Refresh => (old.as_ref().and_then(|h| h.code_key), p.client_id.clone()),
            AskKind::Phone => (None, String::new()),
        };
        let mut refresh = g.refresh_token;
        let mut last_register = None;
        // A phone's H(A1), for the user name and algorithm its REGISTER answered with.
        let mut digest = match (p.kind, g.digest_ha1) {
            (AskKind::Phone, Some(ha1)) => digest_creds(msg, view, "REGISTER").map(|c| {
                Box::new(HeldDigest {
                    ha1,
                    username: c.username.clone(),
                    algorithm: c.algorithm,
                    last: parse_nc(&c).map(|nc| (c.nonce.clone(), nc)),
                })
            }),
            _ => None,
        };
        if let Some(h) = old {
            self.grants.by_jti.remove(&h.identity.jti);
            last_register = h.last_register;
            if p.kind == AskKind::Refresh {
                digest = h.digest;
            }
            match p.kind {
                // RFC 6749 §6: the refresh token may or may not be replaced.
                AskKind::Refresh => refresh = refresh.or(h.refresh),
                // Another sign-in on this flow: the grant it replaces is let go.
                AskKind::Code | AskKind::Phone => {
                    if let Some(rt) = h.refresh {
                        self.ask_revoke(h.client_id, rt);
                    }
                }
            }
        }
        self.grants.by_jti.insert(id.jti.clone(), p.flow);
        if let Some(f) = self.flows.get_mut(&p.flow) {
            f.grant = Some(Box::new(Held {
                client_id,
                refresh,
                lifetime: id.exp.saturating_sub(self.unix).max(1),
                identity: id.clone(),
                last_register,
                code_key,
                digest,
            }));
        }
    }

    /// The WAF refused or could not answer the ask `p`.
    fn grant_failed(&mut self, p: &Pending, open: bool, e: GrantError) {
        let refused = matches!(e, GrantError::Refused(_));
        if p.kind == AskKind::Refresh && refused {
            self.grant_stats.refresh_refused += 1;
            // The family is gone (expired or revoked): so is the sign-in, if it is still the
            // one that was refreshed.
            let same = (self.flows.get(&p.flow).and_then(|f| f.grant.as_deref()))
                .is_some_and(|h| Some(&h.identity.jti) == p.refreshes.as_ref());
            if same {
                self.drop_grant(p.flow);
            }
        }
        if !open || p.answered {
            return;
        }
        let Some((msg, view)) = parked(&p.register) else {
            return;
        };
        match e {
            GrantError::Unavailable(why) => {
                self.grant_stats.unavailable += 1;
                let why = format!("the authorization server could not answer: {why}");
                self.grant_busy(p.flow, &msg, &view, &why);
            }
            GrantError::Limited { why, retry_after } => {
                self.grant_stats.phone_refused += 1;
                self.stats.auth_refused += 1;
                let s = Status::FORBIDDEN;
                self.phone_challenge(p.flow, &msg, &view, s, Some(&why), false, Some(retry_after));
            }
            GrantError::Refused(why) if p.kind == AskKind::Phone => {
                // RFC 3261 §22.4: wrong credentials are challenged again.
                self.grant_stats.phone_refused += 1;
                self.stats.auth_refused += 1;
                let s = Status::UNAUTHORIZED;
                self.phone_challenge(p.flow, &msg, &view, s, Some(&why), false, None);
            }
            GrantError::Refused(why) if p.kind == AskKind::Refresh => {
                self.answer_ended(p, &why);
            }
            GrantError::Refused(why) => {
                self.grant_stats.codes_refused += 1;
                let mut r = self.auth.challenge(Some("invalid_token"));
                r.why = Some(format!("the code was refused: {why}"));
                self.stats.auth_refused += 1;
                super::request::reject_auth(self, Dest::Flow(p.flow), &msg, &view, r);
            }
        }
    }

    /// 401 `invalid_token`, "the sign-in has ended: …", to the REGISTER of `p`.
    fn answer_ended(&mut self, p: &Pending, why: &str) {
        if let Some((msg, view)) = parked(&p.register) {
            self.sign_in_ended(p.flow, &msg, &view, why);
        }
    }

    fn sign_in_ended(&mut self, flow: FlowId, msg: &Message, view: &View, why: &str) {
        if self.digest_phone(flow) {
            // A Digest phone knows no Bearer challenge: it is asked for its password again.
            self.stats.auth_refused += 1;
            let why = format!("the sign-in has ended: {why}");
            let s = Status::UNAUTHORIZED;
            return self.phone_challenge(flow, msg, view, s, Some(&why), false, None);
        }
        let mut r = self.auth.challenge(Some("invalid_token"));
        r.why = Some(format!("the sign-in has ended: {why}"));
        self.stats.auth_refused += 1;
        super::request::reject_auth(self, Dest::Flow(flow), msg, view, r);
    }

    /// Tokens the WAF gave that nobody will hold: their family is revoked, as the client they
    /// were given to (RFC 7009 §2.1: only that client may).
    fn revoke_unwanted(&mut self, p: &Pending, g: Granted) {
        if let Some(rt) = g.refresh_token {
            self.ask_revoke(p.client_id.clone(), rt);
        }
    }

    fn ask_revoke(&mut self, client_id: String, refresh_token: Secret) {
        let ticket = self.grants.next_ticket;
        self.grants.next_ticket += 1;
        let ask = GrantAsk::Revoke {
            client_id,
            refresh_token,
        };
        self.out.push_back(Output::Grant { ticket, ask });
    }

    /// REGISTERs that waited [`WAIT`] for the WAF are answered 503; the ask is kept [`LATE`]
    /// more for its answer.
    pub(super) fn grant_timeouts(&mut self, now: Instant) {
        let due: Vec<u64> = (self.grants.pending.iter())
            .filter(|(_, p)| p.until <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in due {
            let Some(p) = self.grants.pending.get_mut(&t) else {
                continue;
            };
            if p.answered {
                self.grants.pending.remove(&t);
                continue;
            }
            p.answered = true;
            p.until = now + LATE;
            let (flow, register) = (p.flow, p.register.clone());
            self.grant_stats.unavailable += 1;
            if let Some((msg, view)) = parked(&register)
                && self.flows.contains_key(&flow)
            {
                let why = "the authorization server did not answer in time";
                self.grant_busy(flow, &msg, &view, why);
            }
        }
    }

    /// The REGISTER `bytes` went upstream on `flow` for `identity`: keep it to end the
    /// registration with, if it was made on the flow's held grant (and is not itself a removal).
    pub(super) fn grant_registered(
        &mut self,
        flow: FlowId,
        identity: &Identity,
        bytes: &Bytes,
        unregister: bool,
    ) {
        if let Some(h) = self
            .flows
            .get_mut(&flow)
            .and_then(|f| f.grant.as_deref_mut())
            && h.identity.jti == identity.jti
        {
            h.last_register = (!unregister).then(|| bytes.clone());
        }
    }

    /// The WAF revoked token `jti`: a flow whose held grant it is loses its registration (an
    /// un-REGISTER of the edge's own) and is closed, which ends its calls.
    pub(super) fn grant_revoked(&mut self, now: Instant, jti: &str) {
        let Some(flow) = self.grants.by_jti.get(jti).copied() else {
            return;
        };
        let Some(held) = self.drop_grant(flow) else {
            return;
        };
        self.grant_stats.revoked += 1;
        info!(%flow, impu = %held.identity.impu, "sign-in revoked: its registration ends and its connection closes");
        if let Some(f) = self.flows.get_mut(&flow)
            && f.identity
                .as_ref()
                .is_some_and(|id| id.jti == held.identity.jti)
        {
            f.identity = None;
        }
        if let Some(reg) = &held.last_register {
            self.unregister(now, reg);
        }
        self.out.push_back(Output::CloseFlow {
            flow,
            code: 1008,
            reason: "the sign-in was revoked",
        });
    }

    /// `flow` closed: the grant it held is revoked at the WAF, since no one else can use it.
    pub(super) fn grant_flow_closed(&mut self, flow: FlowId) {
        let Some(held) = self.drop_grant(flow) else {
            return;
        };
        if let Some(rt) = held.refresh {
            self.ask_revoke(held.client_id, rt);
        }
    }

    fn drop_grant(&mut self, flow: FlowId) -> Option<Box<Held>> {
        let held = self.flows.get_mut(&flow)?.grant.take()?;
        self.grants.by_jti.remove(&held.identity.jti);
        Some(held)
    }

    /// Removes the bindings a REGISTER the edge sent made (RFC 3261 §10.2.2): the same request
    /// with `expires` 0 everywhere, the next CSeq and a Via of the edge's only. Its answer ends
    /// at the edge (a transaction with no origin).
    fn unregister(&mut self, now: Instant, register: &Bytes) {
        let Some((msg, view)) = parked(register) else {
            return;
        };
        let hash = super::txn::fnv(view.call_id.as_bytes());
        let (id, branch) = self.txns.new_branch(hash);
        let via = self.settings.local.via_ims(&branch);
        let mut s = Splice::new();
        let mut first_via = true;
        for h in msg.headers() {
            match h.name {
                HeaderName::Via if first_via => {
                    first_via = false;
                    s.replace(h.line.clone(), format!("Via: {via}\r\n"));
                }
                HeaderName::Via => s.delete(h.line.clone()),
                HeaderName::CSeq => {
                    let seq = view.cseq.seq.saturating_add(1);
                    s.replace(h.line.clone(), format!("CSeq: {seq} REGISTER\r\n"));
                }
                _ => {}
            }
        }
        let plan = plan_expires(&view, 0);
        for (range, text) in plan.replace {
            s.replace(range, text);
        }
        if plan.add_header.is_some() {
            s.insert(msg.headers_start(), "Expires: 0\r\n");
        }
        let Ok(bytes) = s.apply(msg.as_bytes()) else {
            return;
        };
        self.send_own(now, id, branch, bytes, Dest::Upstream);
    }
}

/// The Digest credentials of a request of `method` (Authorization, or Proxy-Authorization for
/// a 407), parsed; None when it carries none or they do not parse.
fn digest_creds(msg: &Message, view: &View, method: &str) -> Option<DigestCheck> {
    let h = view.credentials.iter().find(|h| {
        msg.value(h)
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"digest"))
    })?;
    DigestCheck::parse(std::str::from_utf8(msg.value(h)).ok()?, method).ok()
}

/// The `nc` of `qop=auth` credentials (RFC 7616 §3.4: hex), 0 without qop.
fn parse_nc(c: &DigestCheck) -> Option<u32> {
    match &c.qop {
        Some((nc, _)) => u32::from_str_radix(nc, 16).ok(),
        None => Some(0),
    }
}

/// A phone's identity as the WAF binds its app password to it: the `+sip.instance` of its
/// Contact (RFC 5626 §4.1), else the Contact URI's `user@host`.
fn phone_of(view: &View) -> String {
    let imsgw_sip::Contacts::List(list) = &view.contacts else {
        return String::new();
    };
    let Some(c) = list.first() else {
        return String::new();
    };
    if let Some(Some(i)) = c.param("+sip.instance") {
        return i.trim_matches('"').trim_matches(['<', '>']).to_string();
    }
    match &c.uri {
        imsgw_sip::Uri::Sip(u) => format!("{}@{}", u.user.as_deref().unwrap_or(""), u.host),
        imsgw_sip::Uri::Other(o) => o.clone(),
    }
}

/// A REGISTER the edge kept (parked for the WAF, or the last one sent on a grant), parsed
/// again: it was whole when kept, so None only if it is not.
fn parked(register: &Bytes) -> Option<(Message, View)> {
    let msg = Message::parse(register.clone()).ok()?;
    let view = msg.view().ok()?;
    Some((msg, view))
}

/// The client_id and code key of a REGISTER's code credentials.
fn code_of(msg: &Message, view: &View) -> Option<(String, [u8; 32])> {
    let h = bearer_headers(msg, view).next()?;
    let text = std::str::from_utf8(msg.value(h)).ok()?;
    match parse_bearer_credentials(text) {
        Ok(BearerCredentials::Code(c)) => Some((c.client_id.to_string(), code_key(c.code))),
        _ => None,
    }
}

fn code_key(code: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(code.as_bytes()).into()
}
