//! The WWSF (WebRTC Web Server Function, TS 24.371): serves the built web client (the WIC) at
//! `/` and its runtime configuration at `/wic/config.json`, so one build serves any deployment.
//!
//! Owns: static assets and the client's config document. Must not touch: SIP, tokens.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::json;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::config::Config;

/// What the client is told about this deployment.
pub struct WwsfState {
    config: serde_json::Value,
}

/// Where the built client is, if it is built: `None` with the reason otherwise.
pub fn assets(config: &Config) -> Result<PathBuf, String> {
    let Some(dir) = config.wwsf.assets_dir.clone() else {
        return Err("wwsf.assets_dir is not set".into());
    };
    let dir = config.beside_config(dir);
    if dir.join("index.html").is_file() {
        Ok(dir)
    } else {
        Err(format!(
            "{} has no index.html: build the web client with `npm ci && npm run build` in web/",
            dir.display()
        ))
    }
}

/// The routes of the WWSF: `/wic/config.json` and the client itself (or a page saying how to
/// build it).
pub fn router(config: &Config) -> Router {
    let issuer = config.issuer();
    let ws = issuer
        .replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1);
    let state = Arc::new(WwsfState {
        config: json!({
            "websocket_url": format!("{ws}/sip"),
            "sip_domain": config.sip.domain,
            "client_id": config.wwsf.client_id,
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/oauth/authorize"),
            "token_endpoint": format!("{issuer}/oauth/token"),
            "revocation_endpoint": format!("{issuer}/oauth/revoke"),
            "logout_endpoint": format!("{issuer}/auth/logout"),
            "scope": config.waf.scope,
            "redirect_uri": format!("{issuer}/"),
            "sign_in": match config.wwsf.sign_in {
                crate::config::WicSignIn::Token => "token",
                crate::config::WicSignIn::CodeInRegister => "code_in_register",
            },
            "me_endpoint": format!("{issuer}/auth/me"),
            "proof_of_possession": config.wwsf.proof_of_possession,
        }),
    });
    let api = Router::new()
        .route("/wic/config.json", get(client_config))
        .with_state(state);
    let csp = format!(
        "default-src 'self'; connect-src 'self' {ws}; img-src 'self' data:; style-src 'self'; \
         script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    );
    let csp = HeaderValue::from_str(&csp)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'"));
    match assets(config) {
        Ok(dir) => {
            let index = dir.join("index.html");
            let files = ServeDir::new(dir).fallback(ServeFile::new(index));
            api.fallback_service(files)
                .layer(SetResponseHeaderLayer::overriding(
                    header::CONTENT_SECURITY_POLICY,
                    csp,
                ))
                .layer(SetResponseHeaderLayer::overriding(
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                ))
        }
        Err(why) => {
            let why = Arc::new(why);
            api.route(
                "/",
                get(move || {
                    let why = why.clone();
                    async move { not_built(&why) }
                }),
            )
        }
    }
}

async fn client_config(State(s): State<Arc<WwsfState>>) -> Response {
    let mut r = Json(s.config.clone()).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn not_built(why: &str) -> Response {
    crate::waf::pages::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "The web client is not installed",
        &format!("{why}. Then set wwsf.assets_dir to web/dist and restart imsgw."),
    )
}
