//! The WAF's sections of the configuration: `[waf]` (tokens, keys, the store, clients, external
//! issuers, limits) and `[identity]` (from a web account to an IMS identity), typed where the
//! values are a closed set (grants, signature algorithms), with the checks that need nothing
//! else. `crate::config` loads the file and reports errors; what the keys mean lives here.
//!
//! Owns: the WAF's config types, their defaults and their own checks. Must not touch: files,
//! the environment.

use std::path::PathBuf;

use serde::Deserialize;

use crate::secret::Secret;

/// `[waf]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WafConfig {
    /// `waf.issuer`: the gateway's public base URL, the `iss` of its tokens and the
    /// `authz_server` in challenges, e.g. `https://webrtc.operator.example`. Default
    /// `http://<http.listen>`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// `waf.audience`: the `aud` of tokens for the SIP service. Default `sip:<sip.domain>`.
    #[serde(default)]
    pub audience: Option<String>,
    /// `waf.scope`: the scope a token needs to register. Default `sip`.
    #[serde(default = "default_scope")]
    pub scope: String,
    /// `waf.token_ttl_secs`: lifetime of access tokens. Default 600 (10 minutes).
    #[serde(default = "default_token_ttl")]
    pub token_ttl_secs: u64,
    /// `waf.max_token_ttl_secs`: the longest lifetime `imsgw token mint --ttl` may ask for;
    /// signing keys are retired this long after they stop signing. Default 3600.
    #[serde(default = "default_max_token_ttl")]
    pub max_token_ttl_secs: u64,
    /// `waf.key_dir`: directory of ES256 signing keys (created 0700, keys 0600, a first key made
    /// on first start; `imsgw keys rotate` adds one). Default `keys` beside the config file.
    #[serde(default)]
    pub key_dir: Option<PathBuf>,
    /// `waf.store`: where the WAF keeps its state (sign-in sessions, codes, device codes,
    /// refresh-token families, revocations): `durable`, one SQLite file in `waf.state_dir`, so a
    /// restart forgets nothing; or `memory`, which a restart forgets (everyone signs in again,
    /// refresh tokens stop working, revoked tokens are accepted until they expire): for tests
    /// and throw-away gateways. Default `durable`.
    #[serde(default)]
    pub store: StoreKind,
    /// `waf.state_dir`: the durable store's directory; it holds `waf.sqlite3` (mode 0600) and,
    /// while the gateway runs, SQLite's log beside it. Created with mode 0700; a directory group
    /// or others may write into, or a state file they may read, is refused. One gateway per
    /// directory. Default `state` beside the config file.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// `waf.key_files`: operator-managed PEM keys instead of `key_dir`; the last one signs, the
    /// file name (without `.pem`) is the `kid`. Default none.
    #[serde(default)]
    pub key_files: Vec<PathBuf>,
    /// `waf.hmac_secret_file`: a shared secret (at least 32 bytes) that also accepts HS256
    /// tokens; mode 0600 or stricter, relative paths beside the config file. Only for
    /// deployments that must; never needed otherwise. Default none.
    #[serde(default)]
    pub hmac_secret_file: Option<PathBuf>,
    /// `waf.hmac_secret_env`: an environment variable holding that secret instead. Default none.
    #[serde(default)]
    pub hmac_secret_env: Option<String>,
    /// `waf.hmac_secret`: that secret written inline (prefer the file). Default none.
    #[serde(default)]
    pub hmac_secret: Option<Secret>,
    /// `waf.refresh_ttl_secs`: lifetime of a refresh-token family. Default 2592000 (30 days).
    #[serde(default = "default_refresh_ttl")]
    pub refresh_ttl_secs: u64,
    /// `waf.device_code_ttl_secs`: how long a device code may wait for approval (RFC 8628).
    /// Default 600.
    #[serde(default = "default_device_ttl")]
    pub device_code_ttl_secs: u64,
    /// `waf.device_poll_secs`: the polling interval given to devices. Default 5.
    #[serde(default = "default_device_poll")]
    pub device_poll_secs: u64,
    /// `waf.key_reload_secs`: how often the key directory is re-read (to pick up
    /// `imsgw keys rotate` and retire old keys). Default 30.
    #[serde(default = "default_key_reload")]
    pub key_reload_secs: u64,
    /// `waf.clients`: OAuth clients (introspection, revocation; later the sign-in flows).
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    /// `waf.external_issuers`: other authorization servers whose tokens the edge accepts.
    #[serde(default)]
    pub external_issuers: Vec<ExternalIssuerConfig>,
    /// `[waf.limits]`: how much state the WAF keeps, and what anonymous clients may create.
    #[serde(default)]
    pub limits: WafLimits,
    /// `[waf.phone_code]`: numeric codes shown on `/phone-code` that a SIP phone knowing only
    /// Digest uses as its password. Absent (the default): the feature is off, `/phone-code`
    /// answers 404 and the edge's redemptions are refused.
    #[serde(default)]
    pub phone_code: Option<PhoneCodeConfig>,
}

/// `[waf.phone_code]`: every key is optional; the section alone turns the feature on.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PhoneCodeConfig {
    /// `client_id`: the `[[waf.clients]]` entry that phones signed in by a code get tokens
    /// as; it must allow the `refresh_token` grant (each phone gets a refresh-token family,
    /// which is what revoking it revokes). Default `sip-phone`.
    pub client_id: String,
    /// `digits`: length of a code, 6 to 12. Default 8.
    pub digits: u32,
    /// `ttl_secs`: how long a code waits for its first use by a phone. Default 600.
    pub ttl_secs: u64,
    /// `per_person`: the most codes and app passwords (used codes) one IMPU holds at once;
    /// past it the page asks to revoke one first. 1 to 20. Default 5.
    pub per_person: usize,
    /// `max_failures`: wrong passwords allowed per IMPU per `failure_window_secs`, whatever
    /// phone or address they come from; past it every attempt for that IMPU is refused until
    /// the window ends. Default 5.
    pub max_failures: u32,
    /// `failure_window_secs`: the window of both failure counts, from its first attempt.
    /// Default 600.
    pub failure_window_secs: u64,
    /// `max_failures_per_source`: wrong passwords allowed per source address (an IPv4
    /// address, an IPv6 /64) per window, whatever IMPU they name. Default 20.
    pub max_failures_per_source: u32,
}

impl Default for PhoneCodeConfig {
    fn default() -> Self {
        Self {
            client_id: "sip-phone".into(),
            digits: 8,
            ttl_secs: 600,
            per_person: 5,
            max_failures: 5,
            failure_window_secs: 600,
            max_failures_per_source: 20,
        }
    }
}

impl PhoneCodeConfig {
    /// What is wrong with `[waf.phone_code]` given the clients, as (key, message).
    fn check(&self, clients: &[ClientConfig]) -> Result<(), (String, String)> {
        let err = |k: &str, m: String| Err((format!("waf.phone_code.{k}"), m));
        if !(6..=12).contains(&self.digits) {
            return err("digits", "must be between 6 and 12".into());
        }
        if self.ttl_secs == 0 {
            return err("ttl_secs", "must be at least 1".into());
        }
        if !(1..=20).contains(&self.per_person) {
            return err("per_person", "must be between 1 and 20".into());
        }
        if self.max_failures == 0 {
            return err("max_failures", "must be at least 1".into());
        }
        if self.max_failures_per_source == 0 {
            return err("max_failures_per_source", "must be at least 1".into());
        }
        if self.failure_window_secs == 0 {
            return err("failure_window_secs", "must be at least 1".into());
        }
        match clients.iter().find(|c| c.id == self.client_id) {
            None => err(
                "client_id",
                format!(
                    "`{}` names no [[waf.clients]] entry; add one with grants = [\"refresh_token\"]",
                    self.client_id
                ),
            ),
            Some(c) if !c.grants.contains(&crate::waf::Grant::RefreshToken) => err(
                "client_id",
                format!(
                    "client `{}` must allow the refresh_token grant (add \"refresh_token\" to its grants): a phone's app password is a refresh-token family",
                    self.client_id
                ),
            ),
            Some(_) => Ok(()),
        }
    }
}

/// `waf.store`
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// One SQLite file in `waf.state_dir`: survives restarts.
    #[default]
    Durable,
    /// In memory: forgotten on restart.
    Memory,
}

/// `[waf.limits]`: the most live records of each kind the WAF keeps (a new one past the cap
/// gets `temporarily_unavailable` or a "try again shortly" page, and nothing already held is
/// touched), and the budget of each client address (`http.trusted_proxies`) for the records
/// it may create without authenticating: public clients' device codes. (A sign-in in progress
/// is kept in a sealed cookie, not in the WAF.)
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct WafLimits {
    /// `sessions`: signed-in browser sessions. Default 100000.
    pub sessions: usize,
    /// `codes`: authorization codes (kept 10 minutes to catch replays). Default 20000.
    pub codes: usize,
    /// `device_codes`: device codes waiting for approval; at most 9000 (user codes are nine
    /// digits, the first four unique among pending ones). Default 5000.
    pub device_codes: usize,
    /// `refresh_families`: refresh-token families (one per signed-in app or phone, kept for
    /// `waf.refresh_ttl_secs`; a revoked one only until its access tokens expire). The same
    /// number caps the DPoP proofs remembered against replay (one per grant exchanged with a
    /// proof, two minutes each). Default 200000.
    pub refresh_families: usize,
    /// `consents`: people's consents to third-party clients. Default 1000000.
    pub consents: usize,
    /// `anonymous_per_minute`: records one client address may create per minute without
    /// authenticating, after `anonymous_burst`. 0 turns the budget off. Default 10.
    pub anonymous_per_minute: u32,
    /// `anonymous_burst`: how many it may create at once. Default 30.
    pub anonymous_burst: u32,
    /// `person_per_minute`: records one signed-in person may make the WAF keep per minute
    /// (sessions, authorization codes, approved devices), after `person_burst`. 0 turns it
    /// off. Default 10.
    pub person_per_minute: u32,
    /// `person_burst`: how many at once. Default 30.
    pub person_burst: u32,
    /// `tracked_addresses`: the most client addresses (and, apart, people) whose budget is
    /// remembered. Default 100000.
    pub tracked_addresses: usize,
    /// `phone_codes`: IMPUs holding phone codes or app passwords (`[waf.phone_code]`; one
    /// record each, however many codes). Default 100000.
    pub phone_codes: usize,
}

impl Default for WafLimits {
    fn default() -> Self {
        Self {
            sessions: 100_000,
            codes: 20_000,
            device_codes: 5_000,
            refresh_families: 200_000,
            consents: 1_000_000,
            anonymous_per_minute: 10,
            anonymous_burst: 30,
            person_per_minute: 10,
            person_burst: 30,
            tracked_addresses: 100_000,
            phone_codes: 100_000,
        }
    }
}

impl WafLimits {
    /// The store's caps per record kind.
    pub fn caps(&self) -> imsgw_store::Caps {
        let per_kind = [
            ("session", self.sessions),
            ("code", self.codes),
            ("device", self.device_codes),
            ("usercode", self.device_codes),
            ("family", self.refresh_families),
            // DPoP proofs seen (RFC 9449 §11.1): one per grant exchanged with a proof, kept two
            // minutes; as many as the families that could be refreshed meanwhile.
            (crate::waf::dpop::SEEN, self.refresh_families),
            ("consent", self.consents),
            // Wrong-code counters are per signed-in person.
            ("devfail", self.sessions),
            ("phonecode", self.phone_codes),
            // Per IMPU, kept only for IMPUs that hold phone codes.
            ("phonefail", self.phone_codes),
            // Per source address of a phone.
            ("phonesrc", self.tracked_addresses),
        ]
        .into_iter()
        .collect();
        imsgw_store::Caps {
            per_kind,
            other: 10_000,
        }
    }
}

impl Default for WafConfig {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            scope: default_scope(),
            token_ttl_secs: default_token_ttl(),
            max_token_ttl_secs: default_max_token_ttl(),
            key_dir: None,
            store: StoreKind::default(),
            state_dir: None,
            key_files: Vec::new(),
            hmac_secret_file: None,
            hmac_secret_env: None,
            hmac_secret: None,
            key_reload_secs: default_key_reload(),
            refresh_ttl_secs: default_refresh_ttl(),
            device_code_ttl_secs: default_device_ttl(),
            device_poll_secs: default_device_poll(),
            clients: Vec::new(),
            external_issuers: Vec::new(),
            limits: WafLimits::default(),
            phone_code: None,
        }
    }
}

/// `[[waf.clients]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// `id`: the client_id.
    pub id: String,
    /// `secret`: the client secret, inline. Prefer `secret_file` or `secret_env`. `Debug`
    /// never shows it.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// `secret_file`: a file holding the client secret; mode 0600 or stricter, relative paths
    /// beside the config file.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// `secret_env`: an environment variable holding the client secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// `introspect`: may call the introspection endpoint (RFC 7662). Default false.
    #[serde(default)]
    pub introspect: bool,
    /// `redirect_uris`: where `/oauth/authorize` may send the person back; compared exactly
    /// (RFC 6749 §3.1.2.3). Default none.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// `grants`: what the client may use at `/oauth/token`: `authorization_code`,
    /// `refresh_token`, `urn:ietf:params:oauth:grant-type:device_code`. Default none.
    #[serde(default)]
    pub grants: Vec<crate::waf::Grant>,
    /// `scopes`: scopes the client may ask for. Default `[waf.scope]`.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `first_party`: the operator's own application (the web client): people are not asked
    /// to consent before it gets a code. Default false: a consent page, once per person.
    #[serde(default)]
    pub first_party: bool,
    /// `code_in_register`: a UA of this client may put its authorization code in its REGISTER
    /// (`Bearer code="…", code_verifier="…", client_id="…"`) for the edge to exchange. Only
    /// for a public client with the `authorization_code` grant (the edge cannot authenticate
    /// as a confidential one; PKCE binds the code to the UA). Default false.
    #[serde(default)]
    pub code_in_register: bool,
}

/// `[identity]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// `identity.impu`: template for the IMPU: `{provider}` is the provider's name, `{sub}` its
    /// subject identifier (escaped: letters, digits, `-`, `_`, `.` as they are, any other byte
    /// as `=XX`), `{sip.domain}` the home domain, any other `{claim}` that claim's value as it
    /// is. Default `sip:{provider}.{sub}@{sip.domain}`: provider and `sub` are the only stable
    /// key (OpenID Connect Core §5.7). Another claim is allowed only for providers marked
    /// `identity.providers.<name>.controls_usernames`, and two providers' templates must never
    /// give one IMPU to two accounts; start-up refuses configs that break either rule.
    #[serde(default = "default_impu_template")]
    pub impu: crate::waf::identity::Template,
    /// `identity.impi`: template for the IMPI, same rules. Default `{provider}.{sub}@{sip.domain}`.
    #[serde(default = "default_impi_template")]
    pub impi: crate::waf::identity::Template,
    /// `identity.required_claims`: claims that must have exactly these values, e.g.
    /// `{ email_verified = true }`. Default none.
    #[serde(default)]
    pub required_claims: std::collections::BTreeMap<String, toml::Value>,
    /// `identity.static`: overrides per account, keyed `"<provider>:<sub>"`, each
    /// `{ impu = "...", impi = "..." }`. Default none.
    #[serde(default, rename = "static")]
    pub static_map: std::collections::BTreeMap<String, StaticIdentity>,
    /// `identity.providers.<name>`: per-provider settings, keyed by an `[[oidc.providers]]`
    /// name. Default none (every provider uses `identity.impu` / `identity.impi` and no name
    /// claim).
    #[serde(default)]
    pub providers: std::collections::BTreeMap<String, ProviderIdentity>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            impu: default_impu_template(),
            impi: default_impi_template(),
            required_claims: Default::default(),
            static_map: Default::default(),
            providers: Default::default(),
        }
    }
}

/// `[identity.providers.<name>]`: how one provider's accounts map.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderIdentity {
    /// `controls_usernames`: the provider is the operator's own directory, whose names
    /// (`preferred_username`, `email`, ...) are unique and never reassigned, so templates may
    /// read them for its accounts. Never set it for a provider where people choose their own
    /// names: anyone could then take a name and become its owner's IMPU. Default false.
    #[serde(default)]
    pub controls_usernames: bool,
    /// `impu`: this provider's IMPU template instead of `identity.impu`. Default none.
    #[serde(default)]
    pub impu: Option<crate::waf::identity::Template>,
    /// `impi`: this provider's IMPI template instead of `identity.impi`. Default none.
    #[serde(default)]
    pub impi: Option<crate::waf::identity::Template>,
}

impl IdentityConfig {
    /// The templates `provider` maps with, and the keys they come from.
    pub fn for_provider<'a>(
        &'a self,
        provider: &'a str,
    ) -> crate::waf::identity::template::ProviderTemplates<'a> {
        let own = self.providers.get(provider);
        let pick = |mine: Option<&'a crate::waf::identity::Template>,
                    global: &'a crate::waf::identity::Template,
                    key: &'static str| match mine {
            Some(t) => (t, format!("identity.providers.{provider}.{key}")),
            None => (global, format!("identity.{key}")),
        };
        let (impu, impu_key) = pick(own.and_then(|o| o.impu.as_ref()), &self.impu, "impu");
        let (impi, impi_key) = pick(own.and_then(|o| o.impi.as_ref()), &self.impi, "impi");
        crate::waf::identity::template::ProviderTemplates {
            provider,
            controls_usernames: own.is_some_and(|o| o.controls_usernames),
            impu,
            impu_key,
            impi,
            impi_key,
        }
    }
}

/// One `identity.static` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticIdentity {
    /// `impu`: the IMPU, a `sip:user@host` or `tel:+number` URI without password, parameters,
    /// headers or port (see `imsgw_sip::Impu`); anything else fails start-up naming this key.
    /// Stored in canonical form (host lowercased, escapes normalised). Required.
    pub impu: imsgw_sip::Impu,
    /// `impi`: the IMPI, e.g. `alice@ims.example`. Required.
    pub impi: String,
}

/// `[[waf.external_issuers]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalIssuerConfig {
    /// `issuer`: the `iss` its tokens carry.
    pub issuer: String,
    /// `jwks_uri`: where its keys are published (fetched at start, every `refresh_secs`, and
    /// on an unknown `kid`, at most once per 30 s). `https://` only; `http://` is accepted for a
    /// loopback host (127.0.0.0/8, `[::1]`, `localhost`), where no network can change the keys.
    pub jwks_uri: String,
    /// `audience`: the `aud` its tokens must carry for us.
    pub audience: String,
    /// `algorithms`: accepted signature algorithms, asymmetric only: `ES256`, `ES384`,
    /// `RS256`, `RS384`, `RS512`, `PS256`, `PS384`, `PS512`, `EdDSA`. Default
    /// `["ES256", "RS256"]`.
    #[serde(default)]
    pub algorithms: Vec<SignatureAlgorithm>,
    /// `refresh_secs`: periodic JWKS refresh. Default 3600.
    #[serde(default = "default_jwks_refresh")]
    pub refresh_secs: u64,
    /// `require_typ`: the JOSE `typ` its tokens must carry (RFC 8725 §3.11), e.g. `"at+jwt"`
    /// (RFC 9068 §2.1), so that an ID token or any other JWT it signs is never taken for an
    /// access token. Default none (any `typ`).
    #[serde(default)]
    pub require_typ: Option<String>,
}

fn default_scope() -> String {
    "sip".into()
}

fn default_token_ttl() -> u64 {
    600
}

fn default_max_token_ttl() -> u64 {
    3600
}

fn default_refresh_ttl() -> u64 {
    2_592_000
}

fn default_device_ttl() -> u64 {
    600
}

fn default_device_poll() -> u64 {
    5
}

fn default_key_reload() -> u64 {
    30
}

fn default_jwks_refresh() -> u64 {
    3600
}

fn default_impu_template() -> crate::waf::identity::Template {
    // A constant that parses (template tests check it): this cannot fail.
    crate::waf::identity::Template::parse(crate::waf::identity::template::DEFAULT_IMPU)
        .expect("the default IMPU template parses")
}

fn default_impi_template() -> crate::waf::identity::Template {
    // A constant that parses (template tests check it): this cannot fail.
    crate::waf::identity::Template::parse(crate::waf::identity::template::DEFAULT_IMPI)
        .expect("the default IMPI template parses")
}

/// An asymmetric JWS algorithm an external issuer may sign with (RFC 7518 §3.1, RFC 8037):
/// symmetric ones (`HS256`…) and `none` cannot be named at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SignatureAlgorithm {
    ES256,
    ES384,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    EdDSA,
}

impl SignatureAlgorithm {
    pub fn to_jwt(self) -> imsgw_token::Algorithm {
        use imsgw_token::Algorithm as A;
        match self {
            Self::ES256 => A::ES256,
            Self::ES384 => A::ES384,
            Self::RS256 => A::RS256,
            Self::RS384 => A::RS384,
            Self::RS512 => A::RS512,
            Self::PS256 => A::PS256,
            Self::PS384 => A::PS384,
            Self::PS512 => A::PS512,
            Self::EdDSA => A::EdDSA,
        }
    }
}

impl WafConfig {
    /// What is wrong with `[waf]` on its own, as (key, message).
    pub fn check(&self) -> Result<(), (String, String)> {
        let err = |k: &str, m: &str| Err((k.to_string(), m.to_string()));
        if let Some(issuer) = &self.issuer
            && (!(issuer.starts_with("https://") || issuer.starts_with("http://"))
                || issuer.ends_with('/'))
        {
            return err(
                "waf.issuer",
                "must be the gateway's base URL, http(s)://host[:port][/path], without a trailing slash",
            );
        }
        if self.token_ttl_secs == 0 || self.token_ttl_secs > self.max_token_ttl_secs {
            return err(
                "waf.token_ttl_secs",
                "must be at least 1 and at most waf.max_token_ttl_secs",
            );
        }
        if self.scope.is_empty() || self.scope.contains(|c: char| c.is_whitespace() || c == '"') {
            return err("waf.scope", "must be one scope token such as `sip`");
        }
        let mut ids = std::collections::BTreeSet::new();
        for (i, c) in self.clients.iter().enumerate() {
            if c.id.is_empty() {
                return err(&format!("waf.clients[{i}].id"), "must not be empty");
            }
            if !ids.insert(c.id.as_str()) {
                // The later one would silently replace the first, perhaps without its secret.
                return err(
                    &format!("waf.clients[{i}].id"),
                    &format!("`{}` names two clients", c.id),
                );
            }
            crate::waf::Client::check(c)
                .map_err(|m| ("waf.clients".to_string(), format!("client `{}`: {m}", c.id)))?;
        }
        for (i, e) in self.external_issuers.iter().enumerate() {
            if !(e.jwks_uri.starts_with("https://") || crate::config::is_loopback_http(&e.jwks_uri))
            {
                return err(
                    &format!("waf.external_issuers[{i}].jwks_uri"),
                    "must be an https:// URL (http:// only for a loopback host): anyone on the path could otherwise hand us keys",
                );
            }
        }
        if let Some(p) = &self.phone_code {
            p.check(&self.clients)?;
        }
        if self.limits.device_codes > crate::waf::device::MAX_PENDING {
            return err(
                "waf.limits.device_codes",
                &format!(
                    "at most {} (user codes are nine digits, the first four unique among pending ones)",
                    crate::waf::device::MAX_PENDING
                ),
            );
        }
        Ok(())
    }
}
