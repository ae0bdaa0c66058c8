//! The WAF (WebRTC Authorisation Function, TS 24.371): an OAuth 2.0 authorization server that
//! issues short-lived tokens for IMS identities. Its keys, metadata (RFC 8414), JWKS (RFC 7517),
//! introspection (RFC 7662) and revocation (RFC 7009) are in `http`; sign-in at OpenID
//! providers in `signin`; the grants in `authorize`, `token` and `device`, with DPoP (RFC 9449)
//! in `dpop`; codes for SIP phones that only know Digest in `phone_code`; what a client may make
//! it keep in `limits` and the store's caps; the state in `store` (durable by default).
//!
//! Owns: the WAF's state and its HTTP endpoints. Must not touch: SIP (the edge reads tokens
//! through `imsgw-token`, and hears of revocations through the sink set with
//! [`Waf::set_revocation_sink`]: an input to the edge, never a look-up in this store).

pub mod authorize;
pub mod client;
pub mod config;
pub mod device;
pub mod dpop;
pub mod edge_grant;
pub mod error;
pub mod http;
pub mod identity;
pub mod jwks;
pub mod keys;
pub mod limits;
pub mod pages;
pub mod phone_code;
pub mod sealed;
pub mod signin;
pub mod store;
#[cfg(test)]
mod tests_dpop;
#[cfg(test)]
mod tests_router;
pub mod token;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use imsgw_token::{KeyRing, Minter, MinterConfig, Verifier, VerifierConfig};

use crate::config::Config;
pub use client::{Client, Grant};
use store::{Store, StoreError};

/// Why the WAF could not be set up; names the key.
#[derive(Debug, thiserror::Error)]
pub enum WafError {
    #[error("waf keys: {0}")]
    Keys(#[from] imsgw_token::KeyError),
    #[error("waf token settings: {0}")]
    Verifier(#[from] imsgw_token::ConfigError),
    #[error("waf.clients `{id}`: {message}")]
    Client { id: String, message: String },
    #[error("{0}")]
    Oidc(String),
    #[error("the WAF's store: {0}")]
    Store(String),
}

/// The `client_id` of tokens an operator mints with `imsgw token mint` (RFC 9068 §2.2 wants
/// one in every access token). Only a client registered under this id, with a secret, may
/// revoke them at `/oauth/revoke` (RFC 7009 §2.1).
pub const OPERATOR_CLIENT_ID: &str = "imsgw-operator";

/// Settings of the sign-in flows.
pub struct FlowSettings {
    pub domain: String,
    pub identity: crate::config::IdentityConfig,
    pub session_ttl: u64,
    pub refresh_ttl: u64,
    pub device_ttl: u64,
    pub device_poll: u64,
    /// Cookies get `Secure` when the gateway is served over https.
    pub secure_cookies: bool,
}

/// The WAF's state, shared by its HTTP handlers.
pub struct Waf {
    pub issuer: String,
    pub audience: String,
    /// The longest an access token of ours lives (`waf.max_token_ttl_secs`).
    pub max_token_ttl: u64,
    pub scope: String,
    keys: RwLock<Arc<KeyRing>>,
    minter: RwLock<Minter>,
    /// Checks our own tokens for introspection and revocation.
    verifier: Mutex<Verifier>,
    pub store: Arc<dyn Store>,
    /// Where revocations go besides the store: the SIP edge's input (`jti`, `exp`).
    revocation_sink: Option<tokio::sync::mpsc::UnboundedSender<(String, u64)>>,
    pub clients: HashMap<String, Client>,
    /// The OpenID providers people sign in with.
    pub providers: crate::oidc::Providers,
    pub flows: FlowSettings,
    /// What each client address may make the WAF keep without authenticating.
    pub anonymous: limits::PerAddress,
    /// What each signed-in person may make the WAF keep: sessions, codes, approved devices.
    pub per_person: limits::Budget<String>,
    /// State handed to browsers instead of kept (a sign-in in progress).
    pub sealer: sealed::Sealer,
    /// How fast phones poll their device codes (kept here, so polls do not write).
    pub polls: device::PollClock,
    /// `[waf.phone_code]`; `None`: phone codes are off.
    pub phone_code: Option<crate::config::PhoneCodeConfig>,
}

impl Waf {
    /// Revocations are also sent here (the SIP edge). Unbounded: each entry is one revoked
    /// token, made at the pace of HTTP requests that each needed a valid token or code.
    pub fn set_revocation_sink(&mut self, tx: tokio::sync::mpsc::UnboundedSender<(String, u64)>) {
        self.revocation_sink = Some(tx);
    }

    /// Revokes the token `jti` (valid until `exp`): stored, and the edge told at once.
    pub fn revoke_token(&self, jti: &str, exp: u64, now: u64) -> Result<(), StoreError> {
        // The edge first: a token must stop working there even if the store cannot keep it.
        if let Some(tx) = &self.revocation_sink {
            // The hub is gone only while shutting down, when nothing registers any more.
            let _ = tx.send((jti.to_string(), exp));
        }
        self.store.revoke(jti, exp, now)
    }

    pub fn new(config: &Config, ring: KeyRing, store: Arc<dyn Store>) -> Result<Self, WafError> {
        let issuer = config.issuer();
        let audience = config.audience();
        let mut mc = MinterConfig::new(issuer.clone(), audience.clone());
        mc.default_ttl = config.waf.token_ttl_secs;
        mc.max_ttl = config.waf.max_token_ttl_secs;
        let minter = Minter::new(mc, &ring);
        let verifier = Verifier::new(verifier_config(config, false)?, &ring)?;
        let mut clients = HashMap::new();
        // A missing entry must not make a confidential client public: refuse, do not guess.
        if config.secrets.clients.len() != config.waf.clients.len() {
            return Err(WafError::Client {
                id: "*".into(),
                message: "the client secrets were not read (load the config with Config::load)"
                    .into(),
            });
        }
        for (c, secret) in config.waf.clients.iter().zip(&config.secrets.clients) {
            let secret = secret.clone();
            if c.id == OPERATOR_CLIENT_ID && secret.is_none() {
                // It may revoke every operator-minted token; a public client is anyone.
                return Err(WafError::Client {
                    id: c.id.clone(),
                    message: "needs a secret: this client may revoke operator-minted tokens".into(),
                });
            }
            let client =
                Client::new(c, secret, &config.waf.scope).map_err(|message| WafError::Client {
                    id: c.id.clone(),
                    message,
                })?;
            clients.insert(c.id.clone(), client);
        }
        let providers = crate::oidc::Providers::new(
            config.oidc.providers.clone(),
            config.secrets.providers.clone(),
        )
        .map_err(|e| WafError::Oidc(e.to_string()))?;
        let flows = FlowSettings {
            domain: config.sip.domain.clone(),
            identity: config.identity.clone(),
            session_ttl: config.oidc.session_ttl_secs,
            refresh_ttl: config.waf.refresh_ttl_secs,
            device_ttl: config.waf.device_code_ttl_secs,
            device_poll: config.waf.device_poll_secs,
            secure_cookies: issuer.starts_with("https://"),
        };
        let sealer = sealed::Sealer::from_store(&*store, unix_now())
            .map_err(|e| WafError::Store(e.to_string()))?;
        Ok(Self {
            max_token_ttl: config.waf.max_token_ttl_secs,
            sealer,
            polls: device::PollClock::default(),
            phone_code: config.waf.phone_code.clone(),
            issuer,
            audience,
            scope: config.waf.scope.clone(),
            keys: RwLock::new(Arc::new(ring)),
            minter: RwLock::new(minter),
            verifier: Mutex::new(verifier),
            revocation_sink: None,
            store,
            clients,
            providers,
            flows,
            per_person: limits::Budget::new(
                config.waf.limits.person_per_minute,
                config.waf.limits.person_burst,
                config.waf.limits.tracked_addresses,
            ),
            anonymous: limits::PerAddress::new(
                config.waf.limits.anonymous_per_minute,
                config.waf.limits.anonymous_burst,
                config.waf.limits.tracked_addresses,
            ),
        })
    }

    /// Takes one from `person`'s budget (a session, a code, an approved device): `Err(seconds)`
    /// to wait when it is spent. Counted as `imsgw_waf_refused_total{reason="person_budget"}`.
    pub fn person_budget(&self, person: &identity::Person) -> Result<(), u64> {
        self.per_person
            .take(&[(person.store_key(), 1)], limits::now_ms())
            .inspect_err(|_| error::count_refusal("person_budget"))
    }

    /// The current keys.
    pub fn keys(&self) -> Arc<KeyRing> {
        self.keys
            .read()
            .map(|k| k.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Installs a reloaded key set; true if it differs from the current one.
    pub fn replace_keys(&self, ring: &KeyRing) -> bool {
        let current = self.keys();
        let same = current.signing_kid() == ring.signing_kid()
            && current.kids().collect::<Vec<_>>() == ring.kids().collect::<Vec<_>>();
        if same {
            return false;
        }
        if let Ok(mut m) = self.minter.write() {
            m.set_keys(ring);
        }
        if let Ok(mut v) = self.verifier.lock() {
            v.set_our_keys(ring);
        }
        if let Ok(mut k) = self.keys.write() {
            *k = Arc::new(ring.clone());
        }
        true
    }

    /// Mints an access token (the `imsgw token mint` command and, later, the token endpoint).
    pub fn mint(
        &self,
        now: u64,
        req: imsgw_token::MintRequest,
    ) -> Result<(imsgw_token::AccessToken, imsgw_token::Claims), imsgw_token::MintError> {
        self.mint_with_jti(now, req, imsgw_token::new_jti())
    }

    /// Mints with a `jti` chosen beforehand (see [`imsgw_token::Minter::mint_with_jti`]).
    pub fn mint_with_jti(
        &self,
        now: u64,
        req: imsgw_token::MintRequest,
        jti: String,
    ) -> Result<(imsgw_token::AccessToken, imsgw_token::Claims), imsgw_token::MintError> {
        self.mint_bound(now, req, jti, None)
    }

    /// Mints with a chosen `jti`, bound to the DPoP key `cnf_jkt` if given (RFC 9449 §6.1; see
    /// [`imsgw_token::Minter::mint_bound`]).
    pub fn mint_bound(
        &self,
        now: u64,
        req: imsgw_token::MintRequest,
        jti: String,
        cnf_jkt: Option<&imsgw_token::pop::Jkt>,
    ) -> Result<(imsgw_token::AccessToken, imsgw_token::Claims), imsgw_token::MintError> {
        let m = self.minter.read().unwrap_or_else(|p| p.into_inner());
        m.mint_bound(now, req, jti, cnf_jkt)
    }

    /// Checks one of our tokens, including revocation.
    pub fn check(&self, now: u64, token: &str) -> Result<Option<imsgw_token::Claims>, StoreError> {
        let claims = {
            let mut v = self.verifier.lock().unwrap_or_else(|p| p.into_inner());
            match v.verify(now, token) {
                Ok(v) => v.claims,
                Err(_) => return Ok(None),
            }
        };
        if self.store.is_revoked(&claims.jti, now)? {
            return Ok(None);
        }
        Ok(Some(claims))
    }

    /// Checks a token's signature and issuer, whatever its expiry (revocation of an expired
    /// token is a no-op, not an error: RFC 7009 §2.2).
    pub fn check_for_revocation(&self, now: u64, token: &str) -> Option<imsgw_token::Claims> {
        let mut v = self.verifier.lock().unwrap_or_else(|p| p.into_inner());
        v.verify(now, token).ok().map(|v| v.claims)
    }
}

/// The verifier settings for tokens at the edge (`external` true) or at the WAF itself.
pub fn verifier_config(config: &Config, external: bool) -> Result<VerifierConfig, WafError> {
    let mut vc = VerifierConfig::new(config.issuer(), config.audience());
    vc.required_scope = Some(config.waf.scope.clone());
    vc.hmac_secret = config.secrets.hmac.clone();
    if external {
        for e in &config.waf.external_issuers {
            let mut x = imsgw_token::ExternalIssuer::new(e.issuer.clone(), e.audience.clone());
            x.require_typ = e.require_typ.clone();
            if !e.algorithms.is_empty() {
                x.algorithms = e.algorithms.iter().map(|a| a.to_jwt()).collect();
            }
            vc.external.push(x);
        }
    }
    Ok(vc)
}

/// Wall-clock seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
