/**
 * The WIC as an OAuth 2.0 public client of the WAF: authorization code with PKCE S256
 * (RFC 6749 §4.1, RFC 7636), refresh (RFC 6749 §6), revocation (RFC 7009).
 *
 * The `state` and the code verifier live in sessionStorage only for the redirect round trip
 * and are removed when the browser comes back. Tokens are never stored anywhere but memory.
 */
import type { PopKey } from './pop';
import type { WicConfig } from './config';
import { randomVerifier, s256Challenge } from './pkce';

const PENDING_KEY = 'wic.oauth.pending';

export interface Tokens {
  access_token: string;
  refresh_token: string | null;
  expires_in: number;
  scope: string | null;
}

/** An error from the token endpoint (RFC 6749 §5.2) or the network. */
export class TokenError extends Error {
  constructor(
    /** `invalid_grant`, `invalid_client`, … or `network` when no answer came. */
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'TokenError';
  }
}

/** Builds the authorization request URL and remembers state + verifier for the return. */
export async function beginSignIn(cfg: WicConfig): Promise<string> {
  const verifier = randomVerifier();
  const state = randomVerifier();
  const challenge = await s256Challenge(verifier);
  sessionStorage.setItem(PENDING_KEY, JSON.stringify({ state, verifier }));
  return authorizeUrl(cfg, state, challenge);
}

export function authorizeUrl(cfg: WicConfig, state: string, challenge: string): string {
  const u = new URL(cfg.authorization_endpoint);
  u.searchParams.set('response_type', 'code');
  u.searchParams.set('client_id', cfg.client_id);
  u.searchParams.set('redirect_uri', cfg.redirect_uri);
  u.searchParams.set('state', state);
  u.searchParams.set('code_challenge', challenge);
  u.searchParams.set('code_challenge_method', 'S256');
  u.searchParams.set('scope', cfg.scope);
  return u.toString();
}

export type Callback =
  | { kind: 'none' }
  | { kind: 'code'; code: string; verifier: string }
  | { kind: 'error'; message: string };

/**
 * Reads the authorization response from the page's query, checks it, and forgets the pending
 * state whatever the outcome. Pure except for sessionStorage (passed in for tests).
 */
export function readCallback(
  search: string,
  cfg: WicConfig,
  storage: Pick<Storage, 'getItem' | 'removeItem'>,
): Callback {
  const q = new URLSearchParams(search);
  const code = q.get('code');
  const error = q.get('error');
  if (code === null && error === null) return { kind: 'none' };
  const raw = storage.getItem(PENDING_KEY);
  storage.removeItem(PENDING_KEY);
  let pending: { state?: unknown; verifier?: unknown } | null = null;
  try {
    pending = raw ? JSON.parse(raw) : null;
  } catch {
    pending = null;
  }
  // RFC 9207 §2.4: an `iss` that is not our authorization server's means a mix-up attack.
  const iss = q.get('iss');
  if (iss !== null && iss !== cfg.issuer) {
    return { kind: 'error', message: 'Sign-in failed: the answer came from an unexpected server. Please sign in again.' };
  }
  if (!pending || typeof pending.state !== 'string' || typeof pending.verifier !== 'string') {
    return { kind: 'error', message: 'Sign-in could not be completed in this tab. Please sign in again.' };
  }
  // RFC 6749 §10.12: the state binds the answer to the request this tab made.
  if (q.get('state') !== pending.state) {
    return { kind: 'error', message: 'Sign-in failed: the answer does not match this tab’s request. Please sign in again.' };
  }
  if (error !== null) {
    const why = q.get('error_description');
    const what = error === 'access_denied' ? 'Sign-in was cancelled or refused' : 'Sign-in failed';
    return { kind: 'error', message: why ? `${what}: ${why}` : `${what}.` };
  }
  return { kind: 'code', code: code as string, verifier: pending.verifier };
}

/** RFC 6749 §4.1.3 with RFC 7636 §4.5; with `pop`, a DPoP proof binds the tokens (RFC 9449 §5). */
export function exchangeCode(cfg: WicConfig, code: string, verifier: string, pop?: PopKey): Promise<Tokens> {
  return tokenRequest(cfg, pop, {
    grant_type: 'authorization_code',
    code,
    redirect_uri: cfg.redirect_uri,
    client_id: cfg.client_id,
    code_verifier: verifier,
  });
}

/** RFC 6749 §6. The answer's refresh token replaces the old one (rotation). A bound family is
 * refreshed only with a proof by its key (RFC 9449 §5.8). */
export function refresh(cfg: WicConfig, refreshToken: string, pop?: PopKey): Promise<Tokens> {
  return tokenRequest(cfg, pop, {
    grant_type: 'refresh_token',
    refresh_token: refreshToken,
    client_id: cfg.client_id,
  });
}

/** RFC 7009 §2.1; best effort: failures are ignored (the token expires anyway). */
export async function revoke(cfg: WicConfig, token: string, hint: 'access_token' | 'refresh_token'): Promise<void> {
  try {
    await fetch(cfg.revocation_endpoint, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token, token_type_hint: hint, client_id: cfg.client_id }),
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch {
    // The gateway is unreachable: nothing more can be done from here.
  }
}

/** Ends the WAF's sign-in session (its HttpOnly cookie). Best effort. */
export async function endWafSession(cfg: WicConfig): Promise<void> {
  try {
    await fetch(cfg.logout_endpoint, { method: 'POST', credentials: 'same-origin', cache: 'no-store' });
  } catch {
    // As above.
  }
}

async function tokenRequest(cfg: WicConfig, pop: PopKey | undefined, form: Record<string, string>): Promise<Tokens> {
  let res: Response;
  const headers: Record<string, string> = { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' };
  if (pop) headers.DPoP = await pop.dpop('POST', cfg.token_endpoint);
  try {
    res = await fetch(cfg.token_endpoint, {
      method: 'POST',
      headers,
      body: new URLSearchParams(form),
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch {
    throw new TokenError('network', 'The sign-in service cannot be reached.');
  }
  let body: Record<string, unknown> = {};
  try {
    body = (await res.json()) as Record<string, unknown>;
  } catch {
    body = {};
  }
  if (!res.ok) {
    const code = typeof body.error === 'string' ? body.error : res.status >= 500 ? 'server_error' : 'invalid_request';
    const desc = typeof body.error_description === 'string' ? body.error_description : `HTTP ${res.status}`;
    throw new TokenError(code, desc);
  }
  return parseTokens(body);
}

export function parseTokens(body: Record<string, unknown>): Tokens {
  if (typeof body.access_token !== 'string' || body.access_token === '') {
    throw new TokenError('invalid_response', 'the token endpoint sent no access token');
  }
  const expires = Number(body.expires_in);
  return {
    access_token: body.access_token,
    refresh_token: typeof body.refresh_token === 'string' && body.refresh_token !== '' ? body.refresh_token : null,
    expires_in: Number.isFinite(expires) && expires > 0 ? expires : 300,
    scope: typeof body.scope === 'string' ? body.scope : null,
  };
}
