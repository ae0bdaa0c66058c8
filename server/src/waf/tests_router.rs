//! The WAF's router in memory (`tower::ServiceExt::oneshot`): every grant end to end and every
//! RFC 6749 §5.2 / RFC 8628 §3.5 error it answers, with the store and the token checks real.
//! People are put in the store as signed-in sessions directly; the sign-in through a real
//! OpenID provider is tested in `tests/interop` (files 20-23, 30). The fixtures here are shared
//! with `tests_dpop`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::identity::Person;
use super::store::{Caps, MemoryStore, StoreExt, key_of};
use super::{Waf, unix_now};
use crate::config::Config;

pub(super) const DEVICE: &str = "urn:ietf:params:oauth:grant-type:device_code";
pub(super) const CB: &str = "http://127.0.0.1:9/cb";
pub(super) const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub(super) const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// What [`config`] needs for phone codes: the section, its client, and a provider for the
/// sign-in page (never contacted).
pub(super) const PHONE: &str = r#"
[waf.phone_code]
[[waf.clients]]
id = "sip-phone"
grants = ["refresh_token"]
[[oidc.providers]]
name = "demo"
issuer = "https://op.example"
client_id = "gw"
"#;

/// The test config, with `extra` appended (more sections or clients).
pub(super) fn config(extra: &str) -> Config {
    let text = format!(
        r#"
[sip]
domain = "ims.example"
upstream = "sip:127.0.0.1:5060"
[waf]
issuer = "http://gw.test"
[metrics]
listen = "127.0.0.1:9"
[[waf.clients]]
id = "wic"
first_party = true
code_in_register = true
redirect_uris = ["{CB}"]
grants = ["authorization_code", "refresh_token", "{DEVICE}"]
[[waf.clients]]
id = "svc"
secret = "svc-secret"
first_party = true
redirect_uris = ["{CB}"]
grants = ["authorization_code"]
[[waf.clients]]
id = "phone"
grants = ["{DEVICE}"]
[[waf.clients]]
id = "rs"
secret = "rs-secret"
introspect = true
{extra}"#
    );
    Config::from_sources(std::path::Path::new("test.toml"), &text, Vec::new())
        .unwrap_or_else(|e| panic!("{e}"))
}

pub(super) struct T {
    pub(super) waf: Arc<Waf>,
    _keys: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) fn waf(caps: Caps) -> T {
    waf_with(caps, "")
}

/// A WAF of [`config`]`(extra)` on a memory store with `caps`.
pub(super) fn waf_with(caps: Caps, extra: &str) -> T {
    let dir = std::env::temp_dir().join(format!("imsgw-waf-{}", super::signin::random_secret()));
    let ring =
        imsgw_token::KeyRing::load_or_create(&dir, unix_now()).unwrap_or_else(|e| panic!("{e}"));
    let store = Arc::new(MemoryStore::with_caps(caps));
    let waf = Waf::new(&config(extra), ring, store).unwrap_or_else(|e| panic!("{e}"));
    T {
        waf: Arc::new(waf),
        _keys: TempDir(dir),
    }
}

pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) headers: axum::http::HeaderMap,
    pub(super) json: serde_json::Value,
    pub(super) text: String,
}

impl Answer {
    pub(super) fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or("")
    }

    pub(super) fn location(&self) -> openidconnect::url::Url {
        let l = self.headers[header::LOCATION]
            .to_str()
            .unwrap_or_else(|e| panic!("{e}"));
        openidconnect::url::Url::parse(l).unwrap_or_else(|e| panic!("{l}: {e}"))
    }
}

impl T {
    pub(super) async fn send(&self, req: Request<Body>) -> Answer {
        let r = super::http::router(self.waf.clone())
            .oneshot(req)
            .await
            .unwrap_or_else(|e| match e {});
        let status = r.status();
        let headers = r.headers().clone();
        let bytes = r
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        Answer {
            status,
            headers,
            json,
            text,
        }
    }

    pub(super) async fn post(
        &self,
        path: &str,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Answer {
        let body = openidconnect::url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut b =
            Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some((id, secret)) = basic {
            let c = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
            b = b.header(header::AUTHORIZATION, format!("Basic {c}"));
        }
        self.send(b.body(Body::from(body)).unwrap_or_else(|e| panic!("{e}")))
            .await
    }

    pub(super) async fn get(&self, path: &str, cookie: Option<&str>) -> Answer {
        let mut b = Request::get(path);
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        self.send(b.body(Body::empty()).unwrap_or_else(|e| panic!("{e}")))
            .await
    }

    /// A signed-in session for `user`; the cookie to send.
    pub(super) fn session(&self, user: &str) -> String {
        let sid = super::signin::random_secret();
        let now = unix_now();
        let person = person(user);
        self.waf
            .store
            .put("session", &key_of(&sid), now, &person, now + 600)
            .unwrap_or_else(|e| panic!("{e}"));
        format!("{}={sid}", super::signin::SESSION_COOKIE)
    }

    /// The session's store key and CSRF token, from its cookie.
    pub(super) fn csrf(cookie: &str) -> (String, String) {
        let skey = key_of(cookie.split_once('=').map(|(_, v)| v).unwrap_or_default());
        let csrf = super::signin::csrf_of(&skey);
        (skey, csrf)
    }

    /// Posts a form to a page as the holder of `cookie`.
    pub(super) async fn post_page(&self, path: &str, cookie: &str, body: String) -> Answer {
        self.send(
            Request::post(path)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::COOKIE, cookie)
                .body(Body::from(body))
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .await
    }

    /// Code grant as `user` through `/oauth/authorize`, exchanged by `wic`.
    pub(super) async fn code_for(&self, user: &str) -> String {
        let cookie = self.session(user);
        let a = self
            .get(
                &format!("/oauth/authorize?response_type=code&client_id=wic&redirect_uri={CB}&state=s1&code_challenge={CHALLENGE}&code_challenge_method=S256"),
                Some(&cookie),
            )
            .await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text);
        let loc = a.location();
        let q: std::collections::HashMap<_, _> = loc.query_pairs().into_owned().collect();
        assert_eq!(q.get("state").map(String::as_str), Some("s1"));
        assert_eq!(q.get("iss").map(String::as_str), Some("http://gw.test"));
        q.get("code")
            .cloned()
            .unwrap_or_else(|| panic!("no code: {loc}"))
    }

    pub(super) async fn exchange(&self, code: &str) -> Answer {
        self.post(
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "wic"),
                ("code", code),
                ("redirect_uri", CB),
                ("code_verifier", VERIFIER),
            ],
            None,
        )
        .await
    }

    pub(super) async fn active(&self, token: &str) -> bool {
        let r = self
            .post(
                "/oauth/introspect",
                &[("token", token)],
                Some(("rs", "rs-secret")),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.json["active"] == true
    }
}

/// The person `user` signs in as: `sip:<user>@ims.example`.
pub(super) fn person(user: &str) -> Person {
    Person {
        provider: "demo".into(),
        sub: format!("sub-{user}"),
        impu: imsgw_sip::Impu::parse(&format!("sip:{user}@ims.example"))
            .unwrap_or_else(|e| panic!("{e}")),
        impi: format!("{user}@ims.example"),
        display: user.into(),
    }
}

#[tokio::test]
async fn rfc6749_4_1_code_grant_then_a_replay_revokes_what_it_gave() {
    let t = waf(Caps::unlimited());
    let code = t.code_for("alice").await;
    let r = t.exchange(&code).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(r.json["token_type"], "Bearer");
    let access = r.json["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(t.active(&access).await);
    let again = t.exchange(&code).await;
    assert_eq!(
        (again.status, again.error()),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    assert!(
        !t.active(&access).await,
        "a replayed code revokes its token"
    );
}

#[tokio::test]
async fn rfc9700_4_14_refresh_rotates_and_reuse_revokes_the_family() {
    let t = waf(Caps::unlimited());
    let code = t.code_for("bob").await;
    let first = t.exchange(&code).await;
    let rt1 = first.json["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let refresh = |rt: String| {
        let t = &t;
        async move {
            t.post(
                "/oauth/token",
                &[
                    ("grant_type", "refresh_token"),
                    ("client_id", "wic"),
                    ("refresh_token", &rt),
                ],
                None,
            )
            .await
        }
    };
    let second = refresh(rt1.clone()).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text);
    let rt2 = second.json["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let access2 = second.json["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_ne!(rt1, rt2);
    let reuse = refresh(rt1).await;
    assert_eq!(reuse.error(), "invalid_grant");
    assert!(
        !t.active(&access2).await,
        "the family's access tokens are revoked"
    );
    assert_eq!(
        refresh(rt2).await.error(),
        "invalid_grant",
        "and its newest refresh token"
    );
    assert_eq!(refresh("garbage".into()).await.error(), "invalid_grant");
}

#[tokio::test]
async fn rfc8628_device_grant_pending_slow_down_approved() {
    let t = waf(Caps::unlimited());
    let d = t
        .post(
            "/oauth/device_authorization",
            &[("client_id", "phone"), ("scope", "sip")],
            None,
        )
        .await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.text);
    let dc = d.json["device_code"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let uc = d.json["user_code"]
        .as_str()
        .unwrap_or_default()
        .replace('-', "");
    let form = [
        ("grant_type", DEVICE),
        ("client_id", "phone"),
        ("device_code", dc.as_str()),
    ];
    let poll = || t.post("/oauth/token", &form, None);
    assert_eq!(poll().await.error(), "authorization_pending");
    let record = || {
        t.waf
            .store
            .get::<serde_json::Value>("device", &key_of(&dc), unix_now())
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let before = record();
    assert_eq!(poll().await.error(), "slow_down");
    for _ in 0..5 {
        assert_eq!(poll().await.error(), "slow_down");
    }
    // Polling writes nothing: how fast the phone polls is kept in the process.
    assert_eq!(record(), before);
    let cookie = t.session("carol");
    let skey = key_of(cookie.split_once('=').map(|(_, v)| v).unwrap_or_default());
    let csrf = super::signin::csrf_of(&skey);
    let body = format!("user_code={uc}&action=approve&csrf={csrf}");
    let page = t
        .send(
            Request::post("/device")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::COOKIE, &cookie)
                .body(Body::from(body))
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let done = poll().await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    let claims = t.waf.check(
        unix_now(),
        done.json["access_token"].as_str().unwrap_or_default(),
    );
    let claims = claims
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("inactive"));
    assert_eq!(claims.impu.as_str(), "sip:carol@ims.example");
    assert_eq!(
        poll().await.error(),
        "expired_token",
        "a device code is single use"
    );
}

#[tokio::test]
async fn rfc6749_5_2_every_error_of_the_token_endpoint() {
    let t = waf(Caps::unlimited());
    type Case<'a> = (
        &'a [(&'a str, &'a str)],
        Option<(&'a str, &'a str)>,
        StatusCode,
        &'a str,
    );
    let cases: &[Case] = &[
        (
            &[("client_id", "wic")],
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            &[("grant_type", "password"), ("client_id", "wic")],
            None,
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            &[("grant_type", DEVICE), ("client_id", "svc")],
            Some(("svc", "svc-secret")),
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
        ),
        (
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "nobody"),
            ],
            None,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            &[("grant_type", "authorization_code"), ("client_id", "svc")],
            None,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            &[("grant_type", "authorization_code")],
            Some(("svc", "wrong")),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            &[("grant_type", "authorization_code"), ("client_id", "wic")],
            Some(("svc", "svc-secret")),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            &[("grant_type", "authorization_code"), ("client_id", "wic")],
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "wic"),
                ("code", "nope"),
                ("code_verifier", VERIFIER),
            ],
            None,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            &[
                ("grant_type", DEVICE),
                ("client_id", "wic"),
                ("device_code", "nope"),
            ],
            None,
            StatusCode::BAD_REQUEST,
            "expired_token",
        ),
        (
            &[("grant_type", "refresh_token"), ("client_id", "wic")],
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (form, basic, status, error) in cases {
        let r = t.post("/oauth/token", form, *basic).await;
        assert_eq!(
            (r.status, r.error()),
            (*status, *error),
            "{form:?} {basic:?}: {}",
            r.text
        );
        assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
        if r.status == StatusCode::UNAUTHORIZED {
            assert!(r.headers.contains_key(header::WWW_AUTHENTICATE));
        }
    }
    let long = "c".repeat(200);
    let r = t
        .post(
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "wic"),
                ("code", &long),
            ],
            None,
        )
        .await;
    assert_eq!(r.error(), "invalid_request");
    let code = t.code_for("dave").await;
    let wrong = t
        .post(
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "wic"),
                ("code", &code),
                ("code_verifier", &"x".repeat(43)),
            ],
            None,
        )
        .await;
    assert_eq!(wrong.error(), "invalid_grant");
    let scope = t
        .post(
            "/oauth/device_authorization",
            &[("client_id", "phone"), ("scope", "admin")],
            None,
        )
        .await;
    assert_eq!(scope.error(), "invalid_scope");
}

#[tokio::test]
async fn introspection_and_revocation_are_for_authenticated_clients() {
    let t = waf(Caps::unlimited());
    let public = t
        .post(
            "/oauth/introspect",
            &[("token", "x"), ("client_id", "wic")],
            None,
        )
        .await;
    assert_eq!(
        (public.status, public.error()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );
    let none = t.post("/oauth/revoke", &[("token", "x")], None).await;
    assert_eq!(
        (none.status, none.error()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );
    let missing = t
        .post("/oauth/introspect", &[], Some(("rs", "rs-secret")))
        .await;
    assert_eq!(missing.error(), "invalid_request");
    assert!(!t.active("garbage").await);
    let code = t.code_for("erin").await;
    let access = t.exchange(&code).await.json["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let rev = t
        .post(
            "/oauth/revoke",
            &[("token", &access), ("client_id", "wic")],
            None,
        )
        .await;
    assert_eq!(rev.status, StatusCode::OK);
    assert!(!t.active(&access).await);
}

#[tokio::test]
async fn a_full_store_kind_is_temporarily_unavailable_and_sessions_go_on() {
    let mut per_kind = std::collections::HashMap::new();
    per_kind.insert("code", 1);
    per_kind.insert("device", 0);
    let t = waf(Caps {
        per_kind,
        other: usize::MAX,
    });
    let first = t.code_for("alice").await;
    assert!(!first.is_empty());
    // A second code while the first is held: back to the client with temporarily_unavailable.
    let cookie = t.session("bob");
    let a = t
        .get(
            &format!("/oauth/authorize?response_type=code&client_id=wic&redirect_uri={CB}&state=s2&code_challenge={CHALLENGE}&code_challenge_method=S256"),
            Some(&cookie),
        )
        .await;
    let q: std::collections::HashMap<_, _> = a.location().query_pairs().into_owned().collect();
    assert_eq!(
        q.get("error").map(String::as_str),
        Some("temporarily_unavailable")
    );
    assert_eq!(q.get("state").map(String::as_str), Some("s2"));
    assert!(!q.contains_key("code"));
    // The code already given still works.
    assert_eq!(t.exchange(&first).await.status, StatusCode::OK);
    let d = t
        .post(
            "/oauth/device_authorization",
            &[("client_id", "phone"), ("scope", "sip")],
            None,
        )
        .await;
    assert_eq!(
        (d.status, d.error()),
        (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
    );
    assert!(d.headers.contains_key(header::RETRY_AFTER));
}

// ---- codes the SIP edge exchanges (issue 13 §1) -------------------------------------------

fn edge_code(code: &str, verifier: &str, client: &str) -> crate::edge::GrantAsk {
    crate::edge::GrantAsk::Code {
        code: imsgw_token::Secret::new(code),
        verifier: imsgw_token::Secret::new(verifier),
        client_id: client.into(),
        redirect_uri: Some(CB.into()),
    }
}

#[tokio::test]
async fn a_code_the_edge_exchanges_is_single_use_pkce_bound_and_refreshable() {
    use super::edge_grant::answer;
    use crate::edge::{GrantAsk, GrantError};
    let t = waf(Caps::unlimited());
    let now = unix_now();
    // Wrong verifier: refused, and (single use whatever the outcome) the code is spent.
    let code = t.code_for("alice").await;
    let wrong = "x".repeat(43);
    let r = answer(&t.waf, &edge_code(&code, &wrong, "wic"), now);
    assert!(
        matches!(&r, Err(GrantError::Refused(w)) if w.contains("code_verifier")),
        "{r:?}"
    );
    // Another client than the code's: refused.
    let code = t.code_for("alice").await;
    let r = answer(&t.waf, &edge_code(&code, VERIFIER, "phone"), now);
    assert!(matches!(&r, Err(GrantError::Refused(_))), "{r:?}");
    // The right one.
    let code = t.code_for("alice").await;
    let g = answer(&t.waf, &edge_code(&code, VERIFIER, "wic"), now).expect("granted");
    let access = g.access_token.expose().to_string();
    assert!(t.active(&access).await);
    let claims = t.waf.check(now, &access).expect("store").expect("valid");
    assert_eq!(claims.impu.as_str(), "sip:alice@ims.example");
    // A replay (from anywhere: the HTTP endpoint here) is refused and revokes what it gave.
    let again = t.exchange(&code).await;
    assert_eq!(again.error(), "invalid_grant");
    assert!(
        !t.active(&access).await,
        "a replayed code revokes its token"
    );

    // Refresh: rotated; reusing the old one revokes the family.
    let code = t.code_for("alice").await;
    let g = answer(&t.waf, &edge_code(&code, VERIFIER, "wic"), now).expect("granted");
    let rt1 = g.refresh_token.expect("a refresh token");
    let ask = GrantAsk::Refresh {
        client_id: "wic".into(),
        refresh_token: rt1.clone(),
    };
    let g2 = answer(&t.waf, &ask, now).expect("refreshed");
    assert!(t.active(g2.access_token.expose()).await);
    let r = answer(&t.waf, &ask, now);
    assert!(matches!(&r, Err(GrantError::Refused(_))), "{r:?}");
    assert!(
        !t.active(g2.access_token.expose()).await,
        "reuse revokes the family"
    );

    // The edge's connection closed: the grant it held is revoked.
    let code = t.code_for("alice").await;
    let g = answer(&t.waf, &edge_code(&code, VERIFIER, "wic"), now).expect("granted");
    assert!(t.active(g.access_token.expose()).await);
    let rt = g.refresh_token.expect("a refresh token");
    let gone = GrantAsk::Revoke {
        client_id: "wic".into(),
        refresh_token: rt.clone(),
    };
    let _ = answer(&t.waf, &gone, now);
    assert!(
        !t.active(g.access_token.expose()).await,
        "revoked with its connection"
    );
    let again = GrantAsk::Refresh {
        client_id: "wic".into(),
        refresh_token: rt,
    };
    assert!(answer(&t.waf, &again, now).is_err());
}

#[tokio::test]
async fn only_a_public_client_that_opted_in_has_its_codes_exchanged_by_the_edge() {
    use super::edge_grant::answer;
    use crate::edge::GrantError;
    let t = waf(Caps::unlimited());
    let now = unix_now();
    // `svc` is confidential: its code is refused at the edge (and left unspent).
    let cookie = t.session("alice");
    let a = t
        .get(
            &format!("/oauth/authorize?response_type=code&client_id=svc&redirect_uri={CB}&state=s1&code_challenge={CHALLENGE}&code_challenge_method=S256"),
            Some(&cookie),
        )
        .await;
    let loc = a.location();
    let code = loc
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no code: {loc}"));
    let r = answer(&t.waf, &edge_code(&code, VERIFIER, "svc"), now);
    assert!(
        matches!(&r, Err(GrantError::Refused(w)) if w.contains("may not")),
        "{r:?}"
    );
    let r = answer(&t.waf, &edge_code("nothing", VERIFIER, "nobody"), now);
    assert!(
        matches!(&r, Err(GrantError::Refused(w)) if w.contains("unknown")),
        "{r:?}"
    );
    // The config refuses the flag on a confidential client.
    let text = format!(
        "[sip]\ndomain = \"ims.example\"\nupstream = \"sip:127.0.0.1:5060\"\n[waf]\nissuer = \"http://gw.test\"\n[metrics]\nlisten = \"127.0.0.1:9\"\n[[waf.clients]]\nid = \"c\"\nsecret = \"s\"\ncode_in_register = true\nredirect_uris = [\"{CB}\"]\ngrants = [\"authorization_code\"]\n"
    );
    let config = Config::from_sources(std::path::Path::new("t.toml"), &text, Vec::new())
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = std::env::temp_dir().join(format!("imsgw-waf-{}", super::signin::random_secret()));
    let _keys = TempDir(dir.clone());
    let ring = imsgw_token::KeyRing::load_or_create(&dir, now).unwrap_or_else(|e| panic!("{e}"));
    let e = Waf::new(&config, ring, Arc::new(MemoryStore::new()))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("code_in_register: only for a public client"),
        "{e}"
    );
}

#[tokio::test]
async fn auth_me_names_the_signed_in_person_only_and_is_never_cached() {
    let t = waf(Caps::unlimited());
    let r = t.get("/auth/me", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.json["impu"].is_null(), "{}", r.text);
    let r = t.get("/auth/me", Some("imsgw_session=forged")).await;
    assert!(r.json["impu"].is_null(), "{}", r.text);
    let cookie = t.session("alice");
    let r = t.get("/auth/me", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["impu"], "sip:alice@ims.example");
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    assert!(r.headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
}

/// The phone code a `/phone-code` page shows, without its spaces.
fn shown_code(page: &str) -> Option<String> {
    let at = page.find("Your phone code:")?;
    let rest = &page[at..];
    let start = rest.find("<strong>")? + "<strong>".len();
    let end = start + rest[start..].find("</strong>")?;
    let code: String = rest[start..end].chars().filter(|c| *c != ' ').collect();
    code.bytes().all(|b| b.is_ascii_digit()).then_some(code)
}

/// A phone of `user` signing in with `password`, as the edge would.
fn phone_signs_in(
    t: &T,
    user: &str,
    phone: &str,
    password: &str,
) -> Result<super::phone_code::PhoneGrant, super::phone_code::PhoneCodeError> {
    let impu = person(user).impu;
    let req = super::phone_code::PhoneSignIn {
        impu: &impu,
        phone,
        source: std::net::IpAddr::from([192, 0, 2, 1]),
    };
    super::phone_code::sign_in(&t.waf, &req, unix_now(), &|c| c == password)
}

#[tokio::test]
async fn the_phone_code_page_asks_to_sign_in_then_shows_a_new_code_once() {
    let t = waf_with(Caps::unlimited(), PHONE);
    let out = t.get("/phone-code", None).await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.text);
    assert!(
        out.text.contains("return=%2Fphone-code"),
        "back to /phone-code after sign-in: {}",
        out.text
    );
    let cookie = t.session("quinn");
    let (_, csrf) = T::csrf(&cookie);
    let page = t.get("/phone-code", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("sip:quinn@ims.example"), "{}", page.text);
    assert!(page.text.contains(&csrf), "{}", page.text);
    assert!(
        page.text.contains("You have no phone codes."),
        "{}",
        page.text
    );
    let made = t
        .post_page("/phone-code", &cookie, format!("action=new&csrf={csrf}"))
        .await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.text);
    let code = shown_code(&made.text).unwrap_or_else(|| panic!("no code: {}", made.text));
    assert_eq!(code.len(), 8);
    assert!(
        made.text
            .contains(&format!("{} {}", &code[..4], &code[4..]))
    );
    assert!(
        made.text.contains("A code waiting for a phone"),
        "{}",
        made.text
    );
    let g = phone_signs_in(&t, "quinn", "desk", &code).unwrap_or_else(|e| panic!("{e}"));
    assert!(g.first_use);
    // Shown once: the page lists it as the phone's password, never the code again.
    let again = t.get("/phone-code", Some(&cookie)).await;
    assert!(shown_code(&again.text).is_none());
    assert!(!again.text.contains(&code));
    assert!(
        again.text.contains("The password of phone desk"),
        "{}",
        again.text
    );
}

#[tokio::test]
async fn phone_code_forms_need_the_sessions_csrf_token() {
    let t = waf_with(Caps::unlimited(), PHONE);
    let cookie = t.session("rita");
    let other = t.session("sam");
    let (_, not_hers) = T::csrf(&other);
    for body in [
        "action=new".to_string(),
        "action=new&csrf=".to_string(),
        format!("action=new&csrf={not_hers}"),
    ] {
        let r = t.post_page("/phone-code", &cookie, body.clone()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{body}: {}", r.text);
        assert!(shown_code(&r.text).is_none());
    }
    let page = t.get("/phone-code", Some(&cookie)).await;
    assert!(
        page.text.contains("You have no phone codes."),
        "{}",
        page.text
    );
    // Signed out, a POST makes nothing and asks to sign in.
    let r = t
        .send(
            Request::post("/phone-code")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from("action=new"))
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .await;
    assert!(r.text.contains("return=%2Fphone-code"), "{}", r.text);
}

#[tokio::test]
async fn the_revoke_button_revokes_a_phones_app_password() {
    let t = waf_with(Caps::unlimited(), PHONE);
    let cookie = t.session("tess");
    let (_, csrf) = T::csrf(&cookie);
    let made = t
        .post_page("/phone-code", &cookie, format!("action=new&csrf={csrf}"))
        .await;
    let code = shown_code(&made.text).unwrap_or_else(|| panic!("no code: {}", made.text));
    let g = phone_signs_in(&t, "tess", "desk", &code).unwrap_or_else(|e| panic!("{e}"));
    let page = t.get("/phone-code", Some(&cookie)).await;
    let marker = "name=\"id\" value=\"";
    let at = page
        .text
        .find(marker)
        .unwrap_or_else(|| panic!("no revoke button: {}", page.text))
        + marker.len();
    let id: String = page.text[at..].chars().take_while(|c| *c != '"').collect();
    let no_csrf = t
        .post_page("/phone-code", &cookie, format!("action=revoke&id={id}"))
        .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    assert!(phone_signs_in(&t, "tess", "desk", &code).is_ok());
    let r = t
        .post_page(
            "/phone-code",
            &cookie,
            format!("action=revoke&id={id}&csrf={csrf}"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("Revoked."), "{}", r.text);
    assert!(!t.active(g.access_token.expose()).await);
    assert!(matches!(
        phone_signs_in(&t, "tess", "desk", &code),
        Err(super::phone_code::PhoneCodeError::Revoked)
    ));
    let twice = t
        .post_page(
            "/phone-code",
            &cookie,
            format!("action=revoke&id={id}&csrf={csrf}"),
        )
        .await;
    assert_eq!(twice.status, StatusCode::NOT_FOUND, "{}", twice.text);
}

#[tokio::test]
async fn signing_out_revokes_the_phone_codes_the_session_made() {
    let t = waf_with(Caps::unlimited(), PHONE);
    let cookie = t.session("uma");
    let (_, csrf) = T::csrf(&cookie);
    let made = t
        .post_page("/phone-code", &cookie, format!("action=new&csrf={csrf}"))
        .await;
    let code = shown_code(&made.text).unwrap_or_else(|| panic!("no code: {}", made.text));
    let g = phone_signs_in(&t, "uma", "desk", &code).unwrap_or_else(|e| panic!("{e}"));
    let out = t
        .post_page("/auth/logout", &cookie, format!("csrf={csrf}"))
        .await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.text);
    assert!(!t.active(g.access_token.expose()).await);
    assert!(matches!(
        phone_signs_in(&t, "uma", "desk", &code),
        Err(super::phone_code::PhoneCodeError::Revoked)
    ));
}

#[tokio::test]
async fn without_waf_phone_code_the_page_is_not_there() {
    let t = waf(Caps::unlimited());
    let cookie = t.session("vic");
    let (_, csrf) = T::csrf(&cookie);
    assert_eq!(
        t.get("/phone-code", Some(&cookie)).await.status,
        StatusCode::NOT_FOUND
    );
    let r = t
        .post_page("/phone-code", &cookie, format!("action=new&csrf={csrf}"))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
#[tokio::test]
async fn review13_auth_me_names_the_session_and_its_401_carries_a_challenge() {
    let t = waf(Caps::unlimited());
    let cookie = t.session("alice");
    let r = t.get("/auth/me", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["impu"], "sip:alice@ims.example");
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    assert!(!r.headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    let r = t.get("/auth/me", None).await;
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    // RFC 9110 §15.5.2: "The server generating a 401 response MUST send a WWW-Authenticate
    // header field"; a cookie session has no scheme to name, so 401 is the wrong answer here.
    if r.status == StatusCode::UNAUTHORIZED {
        assert!(
            r.headers.contains_key(header::WWW_AUTHENTICATE),
            "401 without WWW-Authenticate: {}",
            r.text
        );
    }
}
