//! The WAF's side of the grants the SIP edge holds for UAs (see `edge::grant`): a code a UA put
//! in its REGISTER, exchanged as the token endpoint would (single use, PKCE, bound to its
//! client, a replay revoking what it gave: the same `token::exchange_code`), and the refresh of
//! what it gave (`token::refresh`, rotated, reuse detected).
//!
//! The edge's task never waits on the store: the hub hands each ask to [`serve`], which runs
//! it on a task of its own (the store is called directly, as the HTTP handlers do) and sends
//! the answer back as [`HubInput::Granted`]. At most [`CONCURRENT`] run at once.
//!
//! Owns: what the edge may be given. Must not touch: SIP, the edge's state.

use std::sync::Arc;

use imsgw_token::{AccessToken, Secret};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::client::Grant;
use super::error::{ErrorCode, OAuthError};
use super::token::{TokenForm, exchange_code, refresh, revoke_refresh_token};
use super::{Waf, unix_now};
use crate::edge::digest::DigestCheck;
use crate::edge::{GrantAsk, GrantError, Granted};
use crate::hub::HubInput;

/// Asks carried out at once; the rest wait in the channel (the edge bounds them too).
pub const CONCURRENT: usize = 8;

/// Carries out the edge's asks until the hub is gone or the gateway stops.
pub async fn serve(
    waf: Arc<Waf>,
    mut asks: mpsc::Receiver<(u64, GrantAsk)>,
    hub: mpsc::Sender<HubInput>,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(CONCURRENT));
    loop {
        let (ticket, ask) = tokio::select! {
            a = asks.recv() => match a {
                Some(a) => a,
                None => return,
            },
            _ = shutdown.cancelled() => return,
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (waf, hub) = (waf.clone(), hub.clone());
        tokio::spawn(async move {
            let result = answer(&waf, &ask, unix_now());
            drop(permit);
            let _ = hub.send(HubInput::Granted { ticket, result }).await;
        });
    }
}

/// One ask, answered.
pub fn answer(waf: &Waf, ask: &GrantAsk, now: u64) -> Result<Granted, GrantError> {
    if let GrantAsk::Phone {
        impu,
        phone,
        source,
        check,
    } = ask
    {
        return phone_sign_in(waf, impu, phone, *source, check, now);
    }
    let (client_id, form, code) = match ask {
        GrantAsk::Code {
            code,
            verifier,
            client_id,
            redirect_uri,
        } => {
            let form = TokenForm {
                code: code.expose_str().map(str::to_string),
                code_verifier: verifier.expose_str().map(str::to_string),
                redirect_uri: redirect_uri.clone(),
                ..TokenForm::default()
            };
            (client_id, form, true)
        }
        GrantAsk::Phone { .. } => {
            return Err(GrantError::Unavailable("answered above".into()));
        }
        GrantAsk::Revoke {
            client_id,
            refresh_token,
        } => {
            let Some(rt) = refresh_token.expose_str() else {
                return Err(GrantError::Refused("not a refresh token".into()));
            };
            revoke_refresh_token(waf, client_id, rt, now)
                .map_err(|e| GrantError::Unavailable(e.to_string()))?;
            return Err(GrantError::Refused("revoked".into()));
        }
        GrantAsk::Refresh {
            client_id,
            refresh_token,
        } => {
            let form = TokenForm {
                refresh_token: refresh_token.expose_str().map(str::to_string),
                ..TokenForm::default()
            };
            (client_id, form, false)
        }
    };
    let refused = |why: &str| GrantError::Refused(why.to_string());
    let Some(client) = waf.clients.get(client_id.as_str()) else {
        return Err(refused("the client is unknown"));
    };
    let body = if code {
        if !client.code_in_register || !client.is_public() {
            return Err(refused(
                "this client may not have its codes exchanged from a REGISTER",
            ));
        }
        // The edge holds no DPoP key: a code or family bound to one is refused (RFC 9449 §10).
        exchange_code(waf, client, client_id, now, &form, None)
    } else {
        if !client.allows(Grant::RefreshToken) {
            return Err(refused("this client may not refresh"));
        }
        refresh(waf, client, client_id, now, &form, None)
    }
    .map_err(from_oauth)?;
    let access_token = body["access_token"]
        .as_str()
        .map(|t| AccessToken::new(t.to_string()))
        .ok_or_else(|| GrantError::Unavailable("no access token was made".into()))?;
    let refresh_token = body["refresh_token"].as_str().map(Secret::new);
    Ok(Granted {
        access_token,
        refresh_token,
        digest_ha1: None,
    })
}

/// A phone's Digest answer tried on the IMPU's phone codes and app passwords.
fn phone_sign_in(
    waf: &Waf,
    impu: &str,
    phone: &str,
    source: std::net::IpAddr,
    check: &DigestCheck,
    now: u64,
) -> Result<Granted, GrantError> {
    use super::phone_code::{PhoneCodeError as E, PhoneSignIn, sign_in};
    let Ok(impu) = imsgw_sip::Impu::parse(impu) else {
        return Err(GrantError::Refused("wrong user name or password".into()));
    };
    let req = PhoneSignIn {
        impu: &impu,
        phone,
        source,
    };
    // The H(A1) of the password that matched goes to the edge, which checks the phone's later
    // requests with it (never the password itself).
    let ha1 = std::cell::RefCell::new(None);
    let matched = |password: &str| {
        let ok = check.matches(password);
        if ok {
            *ha1.borrow_mut() = Some(Secret::new(check.ha1(password)));
        }
        ok
    };
    match sign_in(waf, &req, now, &matched) {
        Ok(g) => Ok(Granted {
            access_token: g.access_token,
            refresh_token: None,
            digest_ha1: ha1.into_inner(),
        }),
        Err(E::TooManyAttempts { retry_after }) => Err(GrantError::Limited {
            why: "too many wrong passwords; wait before trying again".into(),
            retry_after,
        }),
        Err(e @ (E::Store(_) | E::Unavailable(_))) => Err(GrantError::Unavailable(e.to_string())),
        Err(e @ (E::BadCredentials | E::Revoked | E::Disabled)) => {
            Err(GrantError::Refused(e.to_string()))
        }
    }
}

/// A refusal stays a refusal (RFC 6749 §5.2); the WAF failing to answer is not one.
fn from_oauth(e: OAuthError) -> GrantError {
    match e.code {
        ErrorCode::ServerError | ErrorCode::TemporarilyUnavailable => {
            GrantError::Unavailable(e.description.into_owned())
        }
        _ => GrantError::Refused(e.description.into_owned()),
    }
}
