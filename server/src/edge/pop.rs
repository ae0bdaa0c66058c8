//! Proof of possession at the edge (issue 13 §3; RFC 9449's DPoP carried over to SIP): a Bearer
//! token bound to a key (`"cnf": {"jkt": …}`, RFC 7800 §3.1, RFC 9449 §6.1) is accepted on a
//! flow only once that flow has shown it holds the key, so a token copied off a browser is no
//! use on another connection.
//!
//! - A request carrying a bound token on a flow that has not proven the token's key must carry
//!   `Proof: <compact JWS>`: an `imsgw_token::pop` SIP proof (`sip-pop+jwt`) over its method,
//!   Request-URI, Call-ID, CSeq and token, with an `iat` within [`IatWindow::default`] (±60 s)
//!   and a nonce this edge gave this flow. Its key must be the token's ([`Jkt::binds`]), and
//!   its `jti` must not have been seen on this flow.
//! - Once a proof passes, the flow remembers the key: later requests on it with tokens bound to
//!   the same key need no proof (the connection is the same holder). A proof sent anyway is
//!   checked like the first, so a stale or replayed one is refused whenever it comes.
//! - Nonces ([`NONCE_SECS`], `nonce`) are stateless and bound to the flow: the edge hands one
//!   out in `Proof-Nonce` on every refusal, a UA signs it into its next proof, and a nonce from
//!   another connection fails here, so a proof seen on one connection cannot be replayed on
//!   another even within its `iat` window.
//!
//! Requests riding a flow's registration (no token) and unbound tokens are not looked at here.
//!
//! Owns: per-flow proof state (the key proven, the `jti`s seen), proof nonces, why a proof is
//! refused. Must not touch: token verification and the SIP answer (`auth`), clocks.

use std::collections::VecDeque;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use imsgw_sip::{HeaderName, Message, View};
use imsgw_token::pop::{
    Expected, IatWindow, Jkt, MAX_PROOF_BYTES, PopError, SIP_PROOF_HEADER, SipRequest, verify_proof,
};

use super::FlowId;
use super::nonce::{FlowNonces, NonceError};

/// How long a `Proof-Nonce` is good for: long enough for a UA to sign and send (and for a
/// slow one to retry), short enough that a nonce seen on the wire soon stops mattering; the
/// same as Digest nonces (`digest::NONCE_SECS`).
pub const NONCE_SECS: u64 = 300;
/// `jti`s remembered per flow. A proof is needed once per connection and key, so a UA sends a
/// handful; a flow that has this many proofs within their `iat` window is refused (503) until
/// the oldest is forgotten, never made to forget one early (that would let it be replayed).
pub const PROOFS_PER_FLOW: usize = 16;

/// `error` for a request that needs a proof signed with a fresh nonce: none was sent, or its
/// nonce is missing, stale or another connection's. A UA that signs the `Proof-Nonce` of the
/// same answer and sends again succeeds. RFC 9449 §8 names this `use_dpop_nonce` for DPoP; the
/// challenge here stays `Bearer` (RFC 8898 §2.2), whose `error` values RFC 6750 §3 lets grow,
/// and a distinct value keeps it apart from `invalid_token`, which tells a UA to get a new
/// token (no use here: the token is good, the proof is what is missing).
pub const USE_PROOF_NONCE: &str = "use_proof_nonce";
/// `error` for a proof that is there but no good: another key than the token's, replayed,
/// stale, for another request or token, malformed (RFC 9449 §7.1's `invalid_dpop_proof`). A
/// new token would not help either; a new proof by the right key would.
pub const INVALID_PROOF: &str = "invalid_proof";

/// The edge's proof settings: its nonces and the `iat` window.
#[derive(Debug, Clone)]
pub struct ProofSettings {
    nonces: FlowNonces,
    /// How far a proof's `iat` may be from now.
    pub window: IatWindow,
}

impl Default for ProofSettings {
    fn default() -> Self {
        Self {
            nonces: FlowNonces::new(NONCE_SECS),
            window: IatWindow::default(),
        }
    }
}

/// What one flow has proven.
#[derive(Debug, Default)]
pub struct FlowProofs {
    /// The key of the last proof that passed on this flow.
    proven: Option<Jkt>,
    /// `jti`s of proofs that passed, with the last second they could still be replayed (their
    /// `iat` plus the window), oldest first; at most [`PROOFS_PER_FLOW`].
    seen: VecDeque<(String, u64)>,
}

impl FlowProofs {
    /// Whether this flow proved it holds the key a token is bound to.
    pub fn has_proven(&self, cnf_jkt: &str) -> bool {
        self.proven.as_ref().is_some_and(|k| k.binds(Some(cnf_jkt)))
    }

    /// Forgets `jti`s that could no longer pass the `iat` check.
    fn forget_old(&mut self, now: u64) {
        self.seen.retain(|(_, until)| *until >= now);
    }
}

/// Why a request with a bound token was refused. The words (its `Display`) go in the
/// `Warning`; none carries a proof, a nonce, a token or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofRefusal {
    /// No `Proof` on a flow that has not proven the token's key.
    #[error(
        "the token is bound to a key this connection has not proven: send a Proof signed by that key over this request and the Proof-Nonce given"
    )]
    Missing,
    /// More than one `Proof` header.
    #[error("more than one Proof header")]
    Repeated,
    /// The proof has no `nonce`.
    #[error("the proof carries no nonce: sign the Proof-Nonce given")]
    NoNonce,
    /// The nonce is ours, for this flow, but older than [`NONCE_SECS`].
    #[error("the proof's nonce is stale: sign the new Proof-Nonce")]
    StaleNonce,
    /// The nonce was not given to this flow: another connection's (a replayed proof), or not
    /// this gateway's at all.
    #[error("the proof's nonce was not given to this connection (a replayed proof?): {0}")]
    OtherNonce(NonceError),
    /// `iat` outside the window.
    #[error("the proof is stale: {0}")]
    Stale(PopError),
    /// Signed over another method, Request-URI, Call-ID or CSeq.
    #[error("the proof is for another request: {0}")]
    OtherRequest(PopError),
    /// Signed over another access token (`ath`).
    #[error("the proof is for another access token (ath)")]
    OtherToken,
    /// A good proof by another key than the one the token is bound to: a copied token with
    /// the copier's own key.
    #[error("the proof is signed by another key than the one the token is bound to (cnf.jkt)")]
    WrongKey,
    /// Its `jti` passed on this flow before.
    #[error("the proof was used before on this connection (jti)")]
    Replayed,
    /// Not a proof: size, shape, `typ`, `alg`, key or signature.
    #[error("the proof was refused: {0}")]
    Invalid(PopError),
    /// [`PROOFS_PER_FLOW`] proofs within their window on this flow.
    #[error("too many proofs on this connection; once its key is proven none is needed")]
    Busy {
        /// Seconds until the oldest is forgotten.
        retry_after: u64,
    },
}

impl ProofRefusal {
    /// The challenge's `error` (see [`USE_PROOF_NONCE`], [`INVALID_PROOF`]); `None` for
    /// [`ProofRefusal::Busy`], which is no challenge but a 503.
    pub fn error(&self) -> Option<&'static str> {
        match self {
            Self::Missing | Self::NoNonce | Self::StaleNonce | Self::OtherNonce(_) => {
                Some(USE_PROOF_NONCE)
            }
            Self::Busy { .. } => None,
            _ => Some(INVALID_PROOF),
        }
    }

    fn from_pop(e: PopError) -> Self {
        match e {
            PopError::MissingClaim("nonce") => Self::NoNonce,
            PopError::TooOld | PopError::IssuedInFuture => Self::Stale(e),
            PopError::WrongMethod
            | PopError::WrongRuri
            | PopError::WrongCallId
            | PopError::WrongCseq => Self::OtherRequest(e),
            PopError::WrongAth => Self::OtherToken,
            e => Self::Invalid(e),
        }
    }
}

impl ProofSettings {
    /// A fresh `Proof-Nonce` for `flow` at `now` (Unix seconds).
    pub fn nonce(&self, flow: FlowId, now: u64) -> String {
        self.nonces.issue(flow, now)
    }

    /// Whether the request in `msg` may use `access_token`, which is bound to `cnf_jkt`, on
    /// `flow` at `now`: the flow proved that key before and sends no proof, or the request's
    /// proof passes every check (module docs). A proof that passes is remembered.
    #[allow(clippy::too_many_arguments)]
    pub fn check(
        &self,
        now: u64,
        flow: FlowId,
        proofs: &mut FlowProofs,
        msg: &Message,
        view: &View,
        access_token: &str,
        cnf_jkt: &str,
    ) -> Result<(), ProofRefusal> {
        let name = HeaderName::new(SIP_PROOF_HEADER);
        let mut headers = msg.headers().iter().filter(|h| h.name == name);
        let Some(header) = headers.next() else {
            return if proofs.has_proven(cnf_jkt) {
                Ok(())
            } else {
                Err(ProofRefusal::Missing)
            };
        };
        if headers.next().is_some() {
            return Err(ProofRefusal::Repeated);
        }
        // STYLE.md §14: the cap is counted before the signature is checked.
        proofs.forget_old(now);
        if proofs.seen.len() >= PROOFS_PER_FLOW {
            let oldest = proofs.seen.front().map_or(now, |(_, until)| *until);
            return Err(ProofRefusal::Busy {
                retry_after: oldest.saturating_sub(now).saturating_add(1),
            });
        }
        // A value that is not UTF-8 is no JWS: checked as "", it fails as malformed.
        let proof = std::str::from_utf8(msg.value(header)).unwrap_or("").trim();
        // The nonce is stateless: the proof says which one it signed, `verify_proof` checks
        // that the signed payload says so, and the nonce itself is checked after that.
        let nonce = claimed_nonce(proof).unwrap_or_default();
        let expected = Expected::Sip(SipRequest {
            method: view.method.as_ref().map_or("", |m| m.as_str()),
            // RFC 3261 §8.1.1.1 leaves its spelling to the UA: compared exactly as sent.
            ruri: msg.request_uri().unwrap_or(""),
            call_id: &view.call_id,
            cseq: view.cseq.seq,
            nonce: &nonce,
            access_token,
        });
        let good =
            verify_proof(proof, &expected, self.window, now).map_err(ProofRefusal::from_pop)?;
        match self.nonces.check(flow, &nonce, now) {
            Ok(true) => {}
            Ok(false) => return Err(ProofRefusal::StaleNonce),
            Err(e) => return Err(ProofRefusal::OtherNonce(e)),
        }
        if !good.jkt.binds(Some(cnf_jkt)) {
            return Err(ProofRefusal::WrongKey);
        }
        if proofs.seen.iter().any(|(jti, _)| *jti == good.jti) {
            return Err(ProofRefusal::Replayed);
        }
        let until = good.replayable_until(self.window);
        proofs.seen.push_back((good.jti, until));
        proofs.proven = Some(good.jkt);
        Ok(())
    }
}

/// The `nonce` claim of a proof, read before its signature is checked (only to know which
/// nonce to check it against); `None` if there is none to read.
fn claimed_nonce(proof: &str) -> Option<String> {
    if proof.len() > MAX_PROOF_BYTES {
        return None;
    }
    let payload = proof.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.as_bytes()).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("nonce")?.as_str().map(str::to_owned)
}
