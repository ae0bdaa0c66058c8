//! DPoP (RFC 9449) at the WAF, through its router in memory like `tests_router` (whose
//! fixtures these are): bound tokens from a code, refresh of a bound family, replayed and bad
//! proofs, `dpop_jkt` codes, and what metadata and introspection say. Proofs are made with
//! `imsgw_token::pop::ProofKey` keys generated here.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use imsgw_token::pop::{DPOP_TYP, ProofKey};
use serde_json::{Value, json};

use super::store::Caps;
use super::tests_router::{Answer, CB, CHALLENGE, T, VERIFIER, waf};
use super::unix_now;

const TOKEN_URL: &str = "http://gw.test/oauth/token";

fn key() -> ProofKey {
    ProofKey::generate().unwrap_or_else(|e| panic!("{e}"))
}

/// A fresh proof by `key` for `POST` to the token endpoint.
fn proof(key: &ProofKey) -> String {
    proof_for(key, "POST", TOKEN_URL)
}

fn proof_for(key: &ProofKey, htm: &str, htu: &str) -> String {
    let claims = json!({"jti": imsgw_token::new_jti(), "htm": htm, "htu": htu, "iat": unix_now()});
    key.sign(DPOP_TYP, &claims)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The JSON payload of a JWT (not verified: the WAF's own checks are tested elsewhere).
fn payload(jwt: &str) -> Value {
    let p = jwt.split('.').nth(1).unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(p)
        .unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

fn str_of<'a>(a: &'a Answer, name: &str) -> &'a str {
    a.json[name].as_str().unwrap_or_default()
}

impl T {
    /// `POST /oauth/token` with the form and these `DPoP` headers.
    async fn token_with(&self, form: &[(&str, &str)], dpop: &[&str]) -> Answer {
        let body = openidconnect::url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut b = Request::post("/oauth/token")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        for p in dpop {
            b = b.header("DPoP", *p);
        }
        self.send(b.body(Body::from(body)).unwrap_or_else(|e| panic!("{e}")))
            .await
    }

    async fn exchange_with(&self, code: &str, dpop: &[&str]) -> Answer {
        self.token_with(
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "wic"),
                ("code", code),
                ("redirect_uri", CB),
                ("code_verifier", VERIFIER),
            ],
            dpop,
        )
        .await
    }

    async fn refresh_with(&self, rt: &str, dpop: &[&str]) -> Answer {
        self.token_with(
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "wic"),
                ("refresh_token", rt),
            ],
            dpop,
        )
        .await
    }

    async fn introspect(&self, token: &str) -> Value {
        self.post(
            "/oauth/introspect",
            &[("token", token)],
            Some(("rs", "rs-secret")),
        )
        .await
        .json
    }

    /// A code for `user` asked for with `dpop_jkt`.
    async fn code_bound_to(&self, user: &str, jkt: &str) -> Answer {
        let cookie = self.session(user);
        self.get(
            &format!("/oauth/authorize?response_type=code&client_id=wic&redirect_uri={CB}&state=s1&code_challenge={CHALLENGE}&code_challenge_method=S256&dpop_jkt={jkt}"),
            Some(&cookie),
        )
        .await
    }
}

fn query(a: &Answer, name: &str) -> Option<String> {
    a.location()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn rfc9449_5_a_code_exchanged_with_a_proof_gives_a_bound_dpop_token() {
    let t = waf(Caps::unlimited());
    let k = key();
    let code = t.code_for("alice").await;
    let r = t.exchange_with(&code, &[&proof(&k)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["token_type"], "DPoP");
    let access = str_of(&r, "access_token");
    assert_eq!(payload(access)["cnf"], json!({"jkt": k.jkt().as_str()}));
    // RFC 9449 §6.2: introspection names the key.
    let i = t.introspect(access).await;
    assert_eq!(i["active"], true);
    assert_eq!(i["cnf"]["jkt"], k.jkt().as_str());
    assert_eq!(i["token_type"], "DPoP");
    // The WAF's verifier takes a bound token (the edge decides what to require of it).
    let claims = t
        .waf
        .check(unix_now(), access)
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("inactive"));
    assert!(k.jkt().binds(claims.cnf_jkt.as_deref()));
}

#[tokio::test]
async fn without_a_proof_nothing_changes_bearer_and_no_cnf() {
    let t = waf(Caps::unlimited());
    let code = t.code_for("bob").await;
    let r = t.exchange_with(&code, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["token_type"], "Bearer");
    let access = str_of(&r, "access_token");
    assert!(payload(access).get("cnf").is_none());
    let i = t.introspect(access).await;
    assert!(i.get("cnf").is_none());
    assert_eq!(i["token_type"], "Bearer");
    let again = t.refresh_with(str_of(&r, "refresh_token"), &[]).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.json["token_type"], "Bearer");
}

#[tokio::test]
async fn rfc9449_5_8_a_bound_family_is_refreshed_only_with_a_proof_by_its_key() {
    let t = waf(Caps::unlimited());
    let (k, other) = (key(), key());
    let code = t.code_for("carol").await;
    let first = t.exchange_with(&code, &[&proof(&k)]).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let rt = str_of(&first, "refresh_token").to_string();

    let none = t.refresh_with(&rt, &[]).await;
    assert_eq!(
        (none.status, none.error()),
        (StatusCode::BAD_REQUEST, "invalid_dpop_proof"),
        "{}",
        none.text
    );
    let wrong = t.refresh_with(&rt, &[&proof(&other)]).await;
    assert_eq!(wrong.error(), "invalid_dpop_proof", "{}", wrong.text);
    // Neither refusal spent the refresh token nor harmed the family.
    assert!(t.active(str_of(&first, "access_token")).await);

    let ok = t.refresh_with(&rt, &[&proof(&k)]).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.json["token_type"], "DPoP");
    let access = str_of(&ok, "access_token");
    assert_eq!(payload(access)["cnf"]["jkt"], k.jkt().as_str());
    assert_ne!(str_of(&ok, "refresh_token"), rt, "rotated as ever");
    // Still bound after the rotation.
    let next = str_of(&ok, "refresh_token");
    assert_eq!(
        t.refresh_with(next, &[]).await.error(),
        "invalid_dpop_proof"
    );
    let ok2 = t.refresh_with(next, &[&proof(&k)]).await;
    assert_eq!(ok2.status, StatusCode::OK, "{}", ok2.text);
}

#[tokio::test]
async fn rfc9449_11_1_a_proof_is_used_once() {
    let t = waf(Caps::unlimited());
    let k = key();
    let code = t.code_for("dave").await;
    let p = proof(&k);
    let first = t.exchange_with(&code, &[&p]).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let rt = str_of(&first, "refresh_token").to_string();
    let replay = t.refresh_with(&rt, &[&p]).await;
    assert_eq!(
        (replay.status, replay.error()),
        (StatusCode::BAD_REQUEST, "invalid_dpop_proof"),
        "{}",
        replay.text
    );
    assert!(replay.text.contains("already used"), "{}", replay.text);
    // The family is unharmed: a fresh proof by the same key refreshes it.
    let ok = t.refresh_with(&rt, &[&proof(&k)]).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
}

#[tokio::test]
async fn rfc9449_4_3_a_bad_dpop_header_is_invalid_dpop_proof() {
    let t = waf(Caps::unlimited());
    let k = key();
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("not a JWS", vec!["garbage".into()]),
        ("two headers", vec![proof(&k), proof(&k)]),
        (
            "another endpoint",
            vec![proof_for(&k, "POST", "http://gw.test/oauth/revoke")],
        ),
        ("another method", vec![proof_for(&k, "GET", TOKEN_URL)]),
        (
            "another type",
            vec![
                k.sign(
                    "sip-pop+jwt",
                    &json!({"jti":"j","htm":"POST","htu":TOKEN_URL,"iat":unix_now()}),
                )
                .unwrap_or_default(),
            ],
        ),
        (
            "too old",
            vec![
                k.sign(
                    DPOP_TYP,
                    &json!({"jti":"j","htm":"POST","htu":TOKEN_URL,"iat":unix_now() - 600}),
                )
                .unwrap_or_default(),
            ],
        ),
    ];
    for (what, headers) in cases {
        // A code each time: the code is spent by the first exchange, whatever its outcome.
        let code = t.code_for("erin").await;
        let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
        let r = t.exchange_with(&code, &refs).await;
        assert_eq!(
            (r.status, r.error()),
            (StatusCode::BAD_REQUEST, "invalid_dpop_proof"),
            "{what}: {}",
            r.text
        );
        assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    }
}

#[tokio::test]
async fn an_unbound_family_is_bound_by_its_first_refresh_with_a_proof() {
    let t = waf(Caps::unlimited());
    let k = key();
    let code = t.code_for("frank").await;
    let first = t.exchange_with(&code, &[]).await;
    let rt = str_of(&first, "refresh_token").to_string();
    let bound = t.refresh_with(&rt, &[&proof(&k)]).await;
    assert_eq!(bound.status, StatusCode::OK, "{}", bound.text);
    assert_eq!(bound.json["token_type"], "DPoP");
    let next = str_of(&bound, "refresh_token");
    assert_eq!(
        t.refresh_with(next, &[]).await.error(),
        "invalid_dpop_proof"
    );
}

#[tokio::test]
async fn rfc9449_10_a_code_asked_for_with_dpop_jkt_needs_a_proof_by_that_key() {
    let t = waf(Caps::unlimited());
    let (k, other) = (key(), key());
    let code_of = |a: &Answer| query(a, "code").unwrap_or_else(|| panic!("no code: {}", a.text));
    for (what, dpop) in [("no proof", None), ("another key", Some(&other))] {
        let a = t.code_bound_to("gina", k.jkt().as_str()).await;
        let p = dpop.map(proof);
        let r = t.exchange_with(&code_of(&a), p.as_deref().as_slice()).await;
        assert_eq!(r.error(), "invalid_dpop_proof", "{what}: {}", r.text);
    }
    let a = t.code_bound_to("gina", k.jkt().as_str()).await;
    let r = t.exchange_with(&code_of(&a), &[&proof(&k)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        payload(str_of(&r, "access_token"))["cnf"]["jkt"],
        k.jkt().as_str()
    );
    // A dpop_jkt that is no thumbprint goes back to the client as invalid_request.
    let a = t.code_bound_to("gina", "not-a-thumbprint").await;
    assert_eq!(query(&a, "error").as_deref(), Some("invalid_request"));
    assert_eq!(query(&a, "code"), None);
}

#[tokio::test]
async fn the_edge_holds_no_dpop_key_so_bound_grants_are_refused_there() {
    use super::edge_grant::answer;
    use crate::edge::{GrantAsk, GrantError};
    let t = waf(Caps::unlimited());
    let k = key();
    let now = unix_now();
    let a = t.code_bound_to("hank", k.jkt().as_str()).await;
    let code = query(&a, "code").unwrap_or_default();
    let ask = GrantAsk::Code {
        code: imsgw_token::Secret::new(code),
        verifier: imsgw_token::Secret::new(VERIFIER),
        client_id: "wic".into(),
        redirect_uri: Some(CB.into()),
    };
    let r = answer(&t.waf, &ask, now);
    assert!(
        matches!(&r, Err(GrantError::Refused(w)) if w.contains("DPoP")),
        "{r:?}"
    );
    // A family bound over HTTP is not refreshed by the edge either.
    let code = t.code_for("hank").await;
    let first = t.exchange_with(&code, &[&proof(&k)]).await;
    let ask = GrantAsk::Refresh {
        client_id: "wic".into(),
        refresh_token: imsgw_token::Secret::new(str_of(&first, "refresh_token")),
    };
    let r = answer(&t.waf, &ask, now);
    assert!(
        matches!(&r, Err(GrantError::Refused(w)) if w.contains("DPoP")),
        "{r:?}"
    );
}

#[tokio::test]
async fn rfc9449_5_1_metadata_names_es256_for_dpop() {
    let t = waf(Caps::unlimited());
    let m = t.get("/.well-known/oauth-authorization-server", None).await;
    assert_eq!(
        m.json["dpop_signing_alg_values_supported"],
        json!(["ES256"])
    );
}

#[tokio::test]
async fn remembered_proofs_are_capped_and_a_full_cap_spares_unbound_flows() {
    let mut per_kind = std::collections::HashMap::new();
    per_kind.insert(super::dpop::SEEN, 1);
    let t = waf(Caps {
        per_kind,
        other: usize::MAX,
    });
    let k = key();
    let code = t.code_for("ivan").await;
    assert_eq!(
        t.exchange_with(&code, &[&proof(&k)]).await.status,
        StatusCode::OK
    );
    // The one place is taken for the proof's window: the next proof cannot be remembered.
    let code = t.code_for("ivan").await;
    let full = t.exchange_with(&code, &[&proof(&k)]).await;
    assert_eq!(
        (full.status, full.error()),
        (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable"),
        "{}",
        full.text
    );
    assert!(full.headers.contains_key(header::RETRY_AFTER));
    let code = t.code_for("ivan").await;
    assert_eq!(t.exchange_with(&code, &[]).await.status, StatusCode::OK);
}
