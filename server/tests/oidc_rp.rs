//! Interop: imsgw's OpenID Connect relying party (`imsgw::oidc`) against a real OpenID
//! provider, oidc-provider 9 on Node (`tests/oidc/provider.mjs`), on loopback.
//!
//! A person is played by a plain HTTP client with a cookie jar: it follows the authorization
//! URL, fills the provider's login form and stops at the redirect to imsgw's callback. Needs
//! `node` and `npm ci` in `server/tests/oidc`; without them each test says so and passes,
//! except under CI (`CI` set), where a missing prerequisite fails the test.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use imsgw::oidc::{Callback, Claims, OidcError, PendingLogin, ProviderConfig, Providers};
use openidconnect::url::Url;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// Registered at the provider for the test client; never fetched (the user agent stops there).
const REDIRECT_URI: &str = "http://127.0.0.1:9/oidc/callback";
const CLIENT_ID: &str = "imsgw-test";
const CLIENT_SECRET: &str = "imsgw-test-secret";

fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

/// `Some(reason)` when the provider cannot run here.
fn missing_prerequisite() -> Option<String> {
    let node = std::process::Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !node.is_ok_and(|s| s.success()) {
        return Some("`node` is not on PATH".into());
    }
    if !provider_dir().join("node_modules/oidc-provider").is_dir() {
        return Some(format!(
            "oidc-provider is not installed: run `npm ci` in {}",
            provider_dir().display()
        ));
    }
    None
}

/// True when the test should go on; prints why not, or fails under CI.
fn can_run(test: &str) -> bool {
    match missing_prerequisite() {
        None => true,
        Some(why) if std::env::var_os("CI").is_some() => {
            panic!("{test}: {why} (CI must install it: tests/run-all.sh)")
        }
        Some(why) => {
            eprintln!("SKIPPED {test}: {why}");
            false
        }
    }
}

/// A running oidc-provider.
struct Op {
    child: Child,
    issuer: String,
    port: u16,
}

impl Op {
    /// Starts the provider on `port` (0: any) signing with key id `kid`.
    async fn start(port: u16, kid: &str) -> Op {
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .args(["--port", &port.to_string()])
            .args(["--redirect-uri", REDIRECT_URI])
            .args(["--key-id", kid])
            .current_dir(provider_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(issuer) = line.strip_prefix("READY ") {
                    return Some(issuer.to_owned());
                }
            }
            None
        })
        .await;
        let Ok(Some(issuer)) = ready else {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), e.read_to_string(&mut err)).await;
            }
            panic!("oidc-provider did not start: {err}");
        };
        // Keep draining both pipes so the provider never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(async move {
                let mut l = BufReader::new(stderr).lines();
                while let Ok(Some(_)) = l.next_line().await {}
            });
        }
        let port = Url::parse(&issuer)
            .ok()
            .and_then(|u| u.port())
            .expect("issuer has a port");
        Op {
            child,
            issuer,
            port,
        }
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }
}

fn config(name: &str, issuer: &str) -> ProviderConfig {
    toml::from_str(&format!(
        "name = \"{name}\"\ndisplay_name = \"Test OP\"\nissuer = \"{issuer}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret_env = \"OP_SECRET\"\n"
    ))
    .expect("valid provider entry")
}

fn providers(issuer: &str) -> Providers {
    Providers::new_with_env(
        vec![config("testop", issuer)],
        |p| p.to_path_buf(),
        |v| (v == "OP_SECRET").then(|| CLIENT_SECRET.to_string()),
    )
    .expect("valid config")
}

/// The person at the browser: follows the authorization URL, signs in on the provider's form
/// and returns the callback query imsgw would receive.
async fn sign_in(auth_url: &str, user: &str, password: &str) -> Callback {
    let ua = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("user agent builds");
    let mut url = Url::parse(auth_url).expect("authorization URL parses");
    for _ in 0..10 {
        let resp = ua.get(url.clone()).send().await.expect("provider answers");
        if resp.status().is_redirection() {
            let location = resp
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .expect("redirect has a Location");
            let next = url.join(location).expect("Location resolves");
            if next.as_str().starts_with(REDIRECT_URI) {
                return callback_from(&next);
            }
            url = next;
            continue;
        }
        assert_eq!(resp.status(), 200, "unexpected page at {url}");
        let page = resp.text().await.expect("login page body");
        let action = page
            .split("action=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the login page has a form");
        let post_to = url.join(action).expect("form action resolves");
        let resp = ua
            .post(post_to)
            .form(&[("username", user), ("password", password)])
            .send()
            .await
            .expect("form post answered");
        assert!(
            resp.status().is_redirection(),
            "login refused for {user}: {}",
            resp.status()
        );
        let location = resp
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .expect("login redirects");
        url = url.join(location).expect("Location resolves");
    }
    panic!("too many redirects before the callback");
}

fn callback_from(url: &Url) -> Callback {
    let map: serde_json::Map<String, serde_json::Value> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
        .collect();
    serde_json::from_value(serde_json::Value::Object(map)).expect("callback query deserializes")
}

/// `begin` then the person signs in; returns what the WAF would hold at its callback.
async fn login(p: &Providers, user: &str, password: &str) -> (PendingLogin, Callback) {
    let (url, pending) = p.begin("testop", REDIRECT_URI).await.expect("begin");
    let cb = sign_in(&url, user, password).await;
    (pending, cb)
}

fn assert_alice(c: &Claims, issuer: &str) {
    assert_eq!(c.provider(), "testop");
    assert_eq!(c.issuer(), issuer);
    assert_eq!(c.subject(), "alice-0001");
    assert_eq!(c.get_str("preferred_username"), Some("alice"));
    assert_eq!(c.get_str("email"), Some("alice@example.org"));
    assert_eq!(
        c.get("email_verified"),
        Some(&serde_json::Value::Bool(true))
    );
    assert_eq!(c.get_str("name"), Some("Alice Liddell"));
}

#[tokio::test]
async fn oidc_core_3_1_code_flow_with_pkce_yields_verified_claims() {
    if !can_run("oidc_core_3_1_code_flow_with_pkce_yields_verified_claims") {
        return;
    }
    let op = Op::start(0, "k1").await;
    let p = providers(&op.issuer);
    assert_eq!(p.list(), [("testop".to_string(), "Test OP".to_string())]);

    let (url, pending) = p.begin("testop", REDIRECT_URI).await.expect("begin");
    let u = Url::parse(&url).expect("URL");
    let q: std::collections::HashMap<String, String> = u.query_pairs().into_owned().collect();
    assert_eq!(q.get("response_type").map(String::as_str), Some("code"));
    assert_eq!(q.get("client_id").map(String::as_str), Some(CLIENT_ID));
    assert_eq!(
        q.get("code_challenge_method").map(String::as_str),
        Some("S256")
    );
    assert_eq!(
        q.get("scope").map(String::as_str),
        Some("openid profile email")
    );
    assert!(q.contains_key("state") && q.contains_key("nonce") && q.contains_key("code_challenge"));
    let dbg = format!("{pending:?}");
    for secret in ["state", "nonce"] {
        assert!(
            !dbg.contains(&q[secret]),
            "Debug of PendingLogin shows the {secret}"
        );
    }

    // The login form checks the password.
    let ua = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .expect("user agent");
    let page = ua.get(&url).send().await.expect("login page");
    let page_url = page.url().clone();
    let body = page.text().await.expect("body");
    let action = body
        .split("action=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("form");
    let refused = ua
        .post(page_url.join(action).expect("action"))
        .form(&[("username", "alice"), ("password", "not-her-password")])
        .send()
        .await
        .expect("answered");
    assert_eq!(refused.status(), 401);

    let cb = sign_in(&url, "alice", "wonderland").await;
    assert_eq!(cb.iss.as_deref(), Some(op.issuer.as_str()), "RFC 9207 iss");
    let claims = p.finish_callback(&pending, &cb).await.expect("finish");
    assert_alice(&claims, &op.issuer);
    assert!(claims.get("aud").is_some() && claims.get("exp").is_some());

    // RFC 6749 §4.1.2: a code is single-use.
    let again = p.finish_callback(&pending, &cb).await;
    assert!(
        matches!(&again, Err(OidcError::ProviderError { error, .. }) if error == "invalid_grant"),
        "{again:?}"
    );
    op.stop().await;
}

#[tokio::test]
async fn finish_with_code_and_state_also_works_and_carries_userinfo() {
    if !can_run("finish_with_code_and_state_also_works_and_carries_userinfo") {
        return;
    }
    let op = Op::start(0, "k1").await;
    let p = providers(&op.issuer);
    let (pending, cb) = login(&p, "bob", "builder").await;
    let code = cb.code.as_ref().and_then(|c| c.expose_str()).expect("code");
    let state = cb
        .state
        .as_ref()
        .and_then(|s| s.expose_str())
        .expect("state");
    let claims = p
        .finish(&pending, code, state, REDIRECT_URI)
        .await
        .expect("finish");
    assert_eq!(claims.subject(), "bob-0002");
    assert_eq!(claims.get_str("preferred_username"), Some("bob"));
    assert_eq!(
        claims.get("email_verified"),
        Some(&serde_json::Value::Bool(false))
    );
    op.stop().await;
}

#[tokio::test]
async fn rfc6749_10_12_callback_with_another_state_is_refused_before_the_code_is_spent() {
    if !can_run("rfc6749_10_12_callback_with_another_state_is_refused_before_the_code_is_spent") {
        return;
    }
    let op = Op::start(0, "k1").await;
    let p = providers(&op.issuer);
    let (pending, cb) = login(&p, "alice", "wonderland").await;

    let mut forged = cb.clone();
    forged.state = Some(imsgw::oidc::Secret::new("not-the-state"));
    assert_eq!(
        p.finish_callback(&pending, &forged).await,
        Err(OidcError::StateMismatch)
    );
    let mut none = cb.clone();
    none.state = None;
    assert_eq!(
        p.finish_callback(&pending, &none).await,
        Err(OidcError::StateMismatch)
    );
    // An error response with the wrong state is a forgery too, not a provider error.
    let mut err = forged.clone();
    err.error = Some("access_denied".into());
    assert_eq!(
        p.finish_callback(&pending, &err).await,
        Err(OidcError::StateMismatch)
    );

    // The code was not spent: the genuine callback still works.
    let claims = p.finish_callback(&pending, &cb).await.expect("finish");
    assert_alice(&claims, &op.issuer);
    op.stop().await;
}

#[tokio::test]
async fn oidc_core_3_1_3_7_tampered_nonce_is_rejected() {
    if !can_run("oidc_core_3_1_3_7_tampered_nonce_is_rejected") {
        return;
    }
    let op = Op::start(0, "k1").await;
    let p = providers(&op.issuer);
    let (pending, cb) = login(&p, "alice", "wonderland").await;
    // Edit the pending login as it sits in the WAF's store.
    let mut stored = serde_json::to_value(&pending).expect("serializes");
    stored["nonce"] = serde_json::Value::String("another-nonce".into());
    let tampered: PendingLogin = serde_json::from_value(stored).expect("deserializes");
    let r = p.finish_callback(&tampered, &cb).await;
    assert!(
        matches!(&r, Err(OidcError::IdToken(m)) if m.starts_with("nonce:")),
        "{r:?}"
    );
    op.stop().await;
}

#[tokio::test]
async fn rfc9207_callback_from_another_issuer_or_without_iss_is_refused() {
    if !can_run("rfc9207_callback_from_another_issuer_or_without_iss_is_refused") {
        return;
    }
    let op = Op::start(0, "k1").await;
    let p = providers(&op.issuer);
    let (pending, cb) = login(&p, "alice", "wonderland").await;
    let mut other = cb.clone();
    other.iss = Some("https://evil.example".into());
    assert!(matches!(
        p.finish_callback(&pending, &other).await,
        Err(OidcError::IssuerMismatch(_))
    ));
    let mut missing = cb.clone();
    missing.iss = None;
    assert!(matches!(
        p.finish_callback(&pending, &missing).await,
        Err(OidcError::IssuerMismatch(_))
    ));
    // Error responses are reported as the provider's, once state and iss check out.
    let mut denied = cb.clone();
    denied.code = None;
    denied.error = Some("access_denied".into());
    denied.error_description = Some("the user said no".into());
    let r = p.finish_callback(&pending, &denied).await;
    assert_eq!(
        r,
        Err(OidcError::ProviderError {
            error: "access_denied".into(),
            description: Some("the user said no".into()),
        })
    );
    assert!(
        r.expect_err("error")
            .user_message()
            .contains("cancelled or refused")
    );
    op.stop().await;
}

#[tokio::test]
async fn stopped_provider_is_unavailable_and_does_not_stop_start_up() {
    if !can_run("stopped_provider_is_unavailable_and_does_not_stop_start_up") {
        return;
    }
    let op = Op::start(0, "k1").await;
    let issuer = op.issuer.clone();
    let p = providers(&issuer);
    let (pending, cb) = login(&p, "alice", "wonderland").await;
    op.stop().await;

    // Metadata is cached, so the failure is at the token endpoint.
    let r = p.finish_callback(&pending, &cb).await;
    assert!(
        matches!(&r, Err(OidcError::Unavailable { provider, reason })
            if provider == "testop" && reason.starts_with("token endpoint")),
        "{r:?}"
    );
    eprintln!("{}", r.as_ref().expect_err("error"));
    assert!(
        r.expect_err("error")
            .user_message()
            .contains("not reachable")
    );

    // A gateway started while the provider is down starts (lazy discovery); logins fail
    // cleanly until it is back.
    let cold = providers(&issuer);
    let r = cold.begin("testop", REDIRECT_URI).await;
    assert!(matches!(r, Err(OidcError::Unavailable { .. })), "{r:?}");
}

#[tokio::test]
async fn oidc_core_10_1_1_rotated_signing_key_is_fetched_on_unknown_kid() {
    if !can_run("oidc_core_10_1_1_rotated_signing_key_is_fetched_on_unknown_kid") {
        return;
    }
    let op = Op::start(0, "k1").await;
    let p = providers(&op.issuer);
    // Caches discovery and the JWK Set holding k1.
    let _ = p.begin("testop", REDIRECT_URI).await.expect("begin");
    let port = op.port;
    op.stop().await;
    // The same issuer comes back signing with k2.
    let op = Op::start(port, "k2").await;
    let (pending, cb) = login(&p, "alice", "wonderland").await;
    let claims = p
        .finish_callback(&pending, &cb)
        .await
        .expect("finish after JWKS refetch");
    assert_alice(&claims, &op.issuer);
    op.stop().await;
}

#[tokio::test]
async fn unknown_provider_is_refused() {
    // No provider process needed: the name is checked before any request.
    let p = providers("http://127.0.0.1:9");
    let r = p.begin("nope", REDIRECT_URI).await;
    assert_eq!(r.err(), Some(OidcError::UnknownProvider("nope".into())));

    // A pending login naming a provider that was removed from the config since.
    let pending: PendingLogin = serde_json::from_value(serde_json::json!({
        "provider": "removed", "state": "s", "nonce": "n", "pkce_verifier": "v",
        "redirect_uri": REDIRECT_URI, "created": 0
    }))
    .expect("pending");
    let cb = Callback {
        code: Some(imsgw::oidc::Secret::new("c")),
        state: Some(imsgw::oidc::Secret::new("s")),
        ..Callback::default()
    };
    assert_eq!(
        p.finish_callback(&pending, &cb).await,
        Err(OidcError::UnknownProvider("removed".into()))
    );
}

#[test]
fn begin_and_finish_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    let p = providers("http://127.0.0.1:9");
    let pending: PendingLogin = serde_json::from_value(serde_json::json!({
        "provider": "testop", "state": "s", "nonce": "n", "pkce_verifier": "v",
        "redirect_uri": REDIRECT_URI, "created": 0
    }))
    .expect("pending");
    let cb = Callback::default();
    send(&p.begin("testop", REDIRECT_URI));
    send(&p.finish_callback(&pending, &cb));
    send(&p.finish(&pending, "c", "s", REDIRECT_URI));
}
