//! Fetches external issuers' JWK Sets (RFC 7517) for the edge: at start, every
//! `refresh_secs`, and when the edge meets an unknown `kid` (it rate-limits those asks).
//!
//! Owns: HTTP GETs of `jwks_uri`. Must not touch: token checks (the edge's verifier does them).

use std::collections::HashMap;
use std::time::Duration;

use imsgw_token::JwkSet;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::ExternalIssuerConfig;
use crate::hub::HubInput;

/// Runs until shutdown: fetches on request (`asks` carries issuer names) and periodically.
pub async fn fetch_loop(
    issuers: Vec<ExternalIssuerConfig>,
    mut asks: mpsc::Receiver<String>,
    hub: mpsc::Sender<HubInput>,
    shutdown: CancellationToken,
) {
    if issuers.is_empty() {
        // Nothing to fetch: keep the channel open so asks never fail, until shutdown.
        shutdown.cancelled().await;
        return;
    }
    let client = match client() {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "cannot build the HTTP client for external JWKS");
            return;
        }
    };
    let by_issuer: HashMap<String, ExternalIssuerConfig> = issuers
        .iter()
        .map(|i| (i.issuer.clone(), i.clone()))
        .collect();
    // The first fetch happened before serving (`initial`).
    let every = issuers
        .iter()
        .map(|i| i.refresh_secs.max(10))
        .min()
        .unwrap_or(3600);
    let mut tick = tokio::time::interval(Duration::from_secs(every));
    tick.reset();
    loop {
        tokio::select! {
            ask = asks.recv() => match ask {
                // The hub is gone: nothing left to fetch for.
                None => return,
                Some(a) => if let Some(i) = by_issuer.get(&a) {
                    fetch(&client, i, &hub).await;
                },
            },
            _ = tick.tick() => {
                for i in &issuers {
                    fetch(&client, i, &hub).await;
                }
            }
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Fetches every issuer's keys once, before the gateway serves, so the first tokens do not
/// race the fetch (and use up the issuer's refetch allowance). Failures are logged; those
/// issuers are fetched again on their first unknown `kid`.
pub async fn initial(issuers: &[ExternalIssuerConfig]) -> Vec<(String, JwkSet)> {
    let Ok(client) = client() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for i in issuers {
        if let Some(jwks) = get_logged(&client, i).await {
            tracing::info!(issuer = %i.issuer, keys = jwks.keys.len(), "fetched external JWKS");
            out.push((i.issuer.clone(), jwks));
        }
    }
    out
}

fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
}

async fn get(client: &reqwest::Client, i: &ExternalIssuerConfig) -> reqwest::Result<JwkSet> {
    let resp = client.get(&i.jwks_uri).send().await?.error_for_status()?;
    resp.json::<JwkSet>().await
}

async fn fetch(client: &reqwest::Client, i: &ExternalIssuerConfig, hub: &mpsc::Sender<HubInput>) {
    if let Some(jwks) = get_logged(client, i).await {
        debug!(issuer = %i.issuer, keys = jwks.keys.len(), "fetched external JWKS");
        let _ = hub
            .send(HubInput::ExternalJwks {
                issuer: i.issuer.clone(),
                jwks: Box::new(jwks),
            })
            .await;
    }
}

/// One fetch; a failure is logged (the issuer's keys stay as they were).
async fn get_logged(client: &reqwest::Client, i: &ExternalIssuerConfig) -> Option<JwkSet> {
    get(client, i)
        .await
        .inspect_err(|e| {
            warn!(issuer = %i.issuer, uri = %i.jwks_uri, error = %e, "cannot fetch external JWKS")
        })
        .ok()
}
