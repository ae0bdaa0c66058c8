'use strict';
// The WAF as an auditor's OAuth 2.0 client sees it: oauth4webapi (panva; a widely used,
// strictly conformant client library) drives every flow against a real imsgw and the real
// OpenID provider of lib/idp.js, with the library's own checks, not ours:
//   RFC 8414 discovery, authorization code + PKCE with the RFC 9207 `iss` check, the token
//   exchange, the RFC 8628 device grant (the person approves on /device), refresh rotation and
//   reuse detection, RFC 7662 introspection, RFC 7009 revocation, and RFC 9068 validation of
//   every kind of access token the WAF issues (validateJwtAccessToken: typ at+jwt, iss, aud,
//   and the claims RFC 9068 §2.2 requires, client_id among them).
// Where it matters the IMS side is asked too: a token revoked through the library is refused
// by the SIP edge on REGISTER and never reaches Kamailio; a revocation attempt by another
// client revokes nothing (the token still registers, Kamailio sees the REGISTER).
// Sign-out (POST /auth/logout) needs the session's CSRF token or the gateway's own Origin: a
// cross-site (or same-site, other-port) POST gets 403 and the session stays.
const { test, before } = require('node:test');
const assert = require('node:assert/strict');
const { signinLab, describe, sleep, stripTags } = require('../lib/signin');
const { forms } = require('../lib/browserless');
const A = require('../lib/auth');

const L = signinLab({
  name: 'oauth4webapi', block: 34, waf: { device_poll_secs: 1 },
  kamailio: { defines: ['FR_TIMER=3000', 'LOG_AUTH', 'LOG_MSG'] },
});

let oauth; // the library (ESM)
let as; // the authorization server metadata, as the library read it
let opts; // plain http on loopback is allowed here, nothing else is relaxed
let alice; // { browser, tokens } from the code flow

before(async () => {
  oauth = await import('oauth4webapi');
  opts = { [oauth.allowInsecureRequests]: true };
});

const wic = { client_id: 'wic' };
const phone = { client_id: 'phone' };
const svc = { client_id: 'svc' };
const rs = { client_id: 'rs' };

/** Authorization code + PKCE for `client` driven by the library; the browser signs in as `user`. */
async function codeFlow(browser, user, client = wic, auth = oauth.None(), redirect = L.cb) {
  const verifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  const u = new URL(as.authorization_endpoint);
  u.searchParams.set('response_type', 'code');
  u.searchParams.set('client_id', client.client_id);
  u.searchParams.set('redirect_uri', redirect);
  u.searchParams.set('scope', 'sip');
  u.searchParams.set('state', state);
  u.searchParams.set('code_challenge', await oauth.calculatePKCECodeChallenge(verifier));
  u.searchParams.set('code_challenge_method', 'S256');
  const first = await browser.get(u.href, { stopAt: (x) => x.startsWith(redirect) });
  const page = await L.drive(browser, first, { user });
  assert.ok(page.stoppedAt, `back at the client's redirect_uri${describe(page)}\n${L.gwLogTail()}`);
  const back = new URL(page.stoppedAt);
  // RFC 9207 §2.4: the library refuses a response without `iss` or with another one, since the
  // metadata says authorization_response_iss_parameter_supported
  const params = oauth.validateAuthResponse(as, client, back, state);
  const res = await oauth.authorizationCodeGrantRequest(as, client, auth, params, redirect, verifier, opts);
  const tokens = await oauth.processAuthorizationCodeResponse(as, client, res);
  return { tokens, back, state };
}

/** RFC 9068 §4 as the library does it, for a token presented to a resource server. */
function validateAt(token) {
  const req = new Request('http://sip-resource.invalid/', { headers: { authorization: `Bearer ${token}` } });
  return oauth.validateJwtAccessToken(as, req, L.gw.audience, opts);
}

/** Expects `p` to reject with the library's ResponseBodyError carrying `error`; returns it. */
async function rejectsWith(p, error, what) {
  let err;
  try { await p; } catch (e) { err = e; }
  assert.ok(err, `${what}: expected an OAuth error ${error}, got success`);
  assert.ok(err instanceof oauth.ResponseBodyError, `${what}: expected ResponseBodyError ${error}, got ${err && err.name}: ${err && err.message}`);
  assert.equal(err.error, error, `${what}: ${JSON.stringify(err.cause)}`);
  return err;
}

const introspect = async (token) => oauth.processIntrospectionResponse(as, rs,
  await oauth.introspectionRequest(as, rs, oauth.ClientSecretBasic('rs-secret'), token, opts));

/** REGISTER as `user` with `token` over a fresh WebSocket: 200, and Kamailio received it; then un-REGISTER. */
async function assertRegisters(token, user, what) {
  const c = await L.raw();
  const { res, callId } = await A.register(c, user, { auth: `Bearer ${token}`, expires: 60 });
  assert.equal(res.status, 200, `${what}: ${res.start}\n${L.gwLogTail()}`);
  await A.waitKamRequest(L, callId, 'REGISTER');
  await A.register(c, user, { auth: `Bearer ${token}`, expires: 0, cseq: 2, callId });
  await c.close();
}

/** REGISTER as `user` with a revoked `token`: 401 invalid_token at the edge, nothing reaches Kamailio. */
async function assertRefusedAtEdge(token, user, what) {
  const c = await L.raw();
  const { res, callId } = await A.register(c, user, { auth: `Bearer ${token}`, expires: 60 });
  A.assertRefusal(L.gw, res, { code: 401, error: 'invalid_token', warning: /revoked/i, what });
  await A.assertNothingUpstream(L, callId);
  await c.close();
}

test('RFC 8414: oauth4webapi discovers the WAF at /.well-known/oauth-authorization-server; the issuer matches', L.track(async () => {
  const issuer = new URL(L.gw.issuer);
  const res = await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...opts });
  as = await oauth.processDiscoveryResponse(issuer, res);
  assert.equal(as.issuer, L.gw.issuer);
  for (const [k, path] of [['authorization_endpoint', '/oauth/authorize'], ['token_endpoint', '/oauth/token'],
    ['device_authorization_endpoint', '/oauth/device_authorization'], ['introspection_endpoint', '/oauth/introspect'],
    ['revocation_endpoint', '/oauth/revoke'], ['jwks_uri', '/oauth/jwks']]) {
    assert.equal(as[k], `${L.gw.issuer}${path}`, k);
  }
  assert.equal(as.authorization_response_iss_parameter_supported, true, 'RFC 9207 §3');
  assert.deepEqual(as.code_challenge_methods_supported, ['S256']);
}));

test('RFC 6749 §4.1 + RFC 7636 + RFC 9207: code with PKCE driven by oauth4webapi; the response carries the issuer; the exchange gives Bearer tokens', L.track(async () => {
  assert.ok(as, 'needs discovery');
  const b = L.browser('alice');
  const { tokens, back, state } = await codeFlow(b, 'alice');
  assert.equal(back.searchParams.get('iss'), L.gw.issuer, 'RFC 9207 §2: iss in the authorization response');
  // the library's mix-up defence is live: the same response naming another issuer is refused
  const forged = new URL(back);
  forged.searchParams.set('iss', 'https://mix-up.example');
  assert.throws(() => oauth.validateAuthResponse(as, wic, forged, state), /iss/);
  assert.equal(tokens.token_type, 'bearer'); // the library lower-cases it (RFC 6749 §7.1: case-insensitive)
  assert.ok(tokens.access_token && tokens.refresh_token && tokens.expires_in > 0, JSON.stringify(Object.keys(tokens)));
  assert.equal(tokens.scope, 'sip');
  alice = { browser: b, tokens };
}));

test('RFC 9207 §2: an error response from /oauth/authorize carries iss too; the library reports the error, not a mix-up', L.track(async () => {
  assert.ok(alice, 'needs the sign-in');
  const state = oauth.generateRandomState();
  const u = new URL(as.authorization_endpoint);
  for (const [k, v] of Object.entries({ response_type: 'code', client_id: 'wic', redirect_uri: L.cb, scope: 'admin', state,
    code_challenge: await oauth.calculatePKCECodeChallenge(oauth.generateRandomCodeVerifier()), code_challenge_method: 'S256' })) u.searchParams.set(k, v);
  const r = await alice.browser.get(u.href, { stopAt: (x) => x.startsWith(L.cb) });
  assert.ok(r.stoppedAt, `an error redirect${describe(r)}`);
  let err;
  try { oauth.validateAuthResponse(as, wic, new URL(r.stoppedAt), state); } catch (e) { err = e; }
  assert.ok(err instanceof oauth.AuthorizationResponseError, `expected AuthorizationResponseError, got ${err && err.name}: ${err && err.message}`);
  assert.equal(err.error, 'invalid_scope');
}));

test('RFC 9068: the code flow\'s access token passes validateJwtAccessToken (typ at+jwt, iss, aud, exp, iat, sub, jti, client_id = wic) and registers', L.track(async () => {
  assert.ok(alice, 'needs the sign-in');
  const c = await validateAt(alice.tokens.access_token);
  assert.equal(c.client_id, 'wic', 'RFC 9068 §2.2: client_id of the grant\'s client');
  assert.equal(c.iss, L.gw.issuer);
  assert.equal(c.impu, 'sip:alice@ims.example');
  await assertRegisters(alice.tokens.access_token, 'alice', 'the code flow\'s token');
}));

test('RFC 6749 §2.3.1: the confidential client svc through the library (client_secret_basic, secret form-encoded as svc%2Dsecret): code exchange; its token names client_id svc', L.track(async () => {
  assert.ok(alice, 'needs the sign-in');
  const { tokens } = await codeFlow(alice.browser, 'alice', svc, oauth.ClientSecretBasic('svc-secret'), L.svcCb);
  assert.equal((await validateAt(tokens.access_token)).client_id, 'svc');
  assert.equal((await introspect(tokens.access_token)).client_id, 'svc');
}));

test('RFC 9068 §2.2: a token minted by the operator (imsgw token mint) carries client_id imsgw-operator and validates', L.track(async () => {
  assert.ok(as, 'needs discovery');
  const c = await validateAt(await L.mint('opminted'));
  assert.equal(c.client_id, 'imsgw-operator');
  assert.equal(c.impu, 'sip:opminted@ims.example');
}));

test('RFC 7662 §2.2: introspection by oauth4webapi (rs, client_secret_basic) -> active, with client_id; a wrong secret -> 401 with a Basic challenge', L.track(async () => {
  assert.ok(alice, 'needs the sign-in');
  const i = await introspect(alice.tokens.access_token);
  assert.equal(i.active, true);
  assert.equal(i.client_id, 'wic', 'RFC 7662 §2.2 client_id');
  assert.equal(i.token_type, 'Bearer');
  assert.equal(i.impu, 'sip:alice@ims.example');
  const res = await oauth.introspectionRequest(as, rs, oauth.ClientSecretBasic('wrong'), alice.tokens.access_token, opts);
  let err;
  try { await oauth.processIntrospectionResponse(as, rs, res); } catch (e) { err = e; }
  assert.ok(err instanceof oauth.WWWAuthenticateChallengeError, `expected a challenge, got ${err && err.name}: ${err && err.message}`);
  assert.equal(err.status, 401);
  assert.equal(err.cause[0].scheme, 'basic', JSON.stringify(err.cause));
  assert.deepEqual(await introspect('not-a-token'), { active: false });
}));

test('RFC 8628: device grant driven by oauth4webapi: pending, the person approves on /device, the phone\'s token (client_id phone) validates and registers', L.track(async () => {
  assert.ok(as, 'needs discovery');
  const dres = await oauth.deviceAuthorizationRequest(as, phone, oauth.None(), new URLSearchParams({ scope: 'sip' }), opts);
  const d = await oauth.processDeviceAuthorizationResponse(as, phone, dres);
  assert.equal(d.verification_uri, `${L.gw.issuer}/device`);
  assert.equal(d.interval, 1);
  const poll = async () => oauth.processDeviceCodeResponse(as, phone, await oauth.deviceCodeGrantRequest(as, phone, oauth.None(), d.device_code, opts));
  await rejectsWith(poll(), 'authorization_pending', 'before approval');
  const done = await L.decideDevice(L.browser('bob'), d, 'bob', 'approve');
  assert.ok(done.status < 400, `approve: ${done.status}${describe(done)}`);
  await sleep(1100);
  const t = await poll();
  assert.equal(t.token_type, 'bearer');
  assert.ok(t.refresh_token, 'phone has the refresh grant');
  const c = await validateAt(t.access_token);
  assert.equal(c.client_id, 'phone');
  assert.equal(c.impu, 'sip:bob@ims.example');
  const i = await introspect(t.access_token);
  assert.equal(i.client_id, 'phone');
  await assertRegisters(t.access_token, 'bob', 'the device grant\'s token');
}));

test('RFC 6749 §6 + RFC 9700 §4.14.2: refresh by oauth4webapi rotates (client_id kept); reusing the old refresh token -> invalid_grant and the family is revoked (introspection, REGISTER)', L.track(async () => {
  assert.ok(alice, 'needs the sign-in');
  const { tokens } = await codeFlow(alice.browser, 'alice');
  const refresh = async (rt) => oauth.processRefreshTokenResponse(as, wic, await oauth.refreshTokenGrantRequest(as, wic, oauth.None(), rt, opts));
  const t2 = await refresh(tokens.refresh_token);
  assert.notEqual(t2.refresh_token, tokens.refresh_token, 'rotated');
  assert.equal((await validateAt(t2.access_token)).client_id, 'wic', 'a refreshed token names the client too');
  await rejectsWith(refresh(tokens.refresh_token), 'invalid_grant', 'reuse of the rotated refresh token');
  await rejectsWith(refresh(t2.refresh_token), 'invalid_grant', 'the newest refresh token after the reuse');
  for (const [what, at] of [['first', tokens.access_token], ['refreshed', t2.access_token]]) {
    assert.deepEqual(await introspect(at), { active: false }, `${what} access token of the revoked family`);
  }
  await assertRefusedAtEdge(t2.access_token, 'alice', 'the revoked family\'s newest access token');
}));

test('RFC 7009 §2.1: only the client a token was issued to revokes it; another public client -> 200, nothing revoked; another confidential client -> unauthorized_client; the token still registers', L.track(async () => {
  assert.ok(alice, 'needs the sign-in');
  const { tokens } = await codeFlow(alice.browser, 'alice');
  const revoke = async (client, auth, token) => oauth.processRevocationResponse(await oauth.revocationRequest(as, client, auth, token, opts));
  // phone names itself (public): RFC 7009 §2.2 200, but the wic token is not phone's to revoke
  await revoke(phone, oauth.None(), tokens.access_token);
  await revoke(phone, oauth.None(), tokens.refresh_token);
  assert.equal((await introspect(tokens.access_token)).active, true, 'still active after phone tried');
  await assertRegisters(tokens.access_token, 'alice', 'after revocation attempts by phone');
  // svc proves who it is (confidential): refused (§2.1, error per RFC 6749 §5.2)
  await rejectsWith(revoke(svc, oauth.ClientSecretBasic('svc-secret'), tokens.access_token), 'unauthorized_client', 'svc revoking wic\'s access token');
  await rejectsWith(revoke(svc, oauth.ClientSecretBasic('svc-secret'), tokens.refresh_token), 'unauthorized_client', 'svc revoking wic\'s refresh token');
  assert.equal((await introspect(tokens.access_token)).active, true, 'still active after svc tried');
  await assertRegisters(tokens.access_token, 'alice', 'after revocation attempts by svc');
  // the refresh token still works too (and rotates)
  const t2 = await oauth.processRefreshTokenResponse(as, wic, await oauth.refreshTokenGrantRequest(as, wic, oauth.None(), tokens.refresh_token, opts));
  // the owner revokes the access token: the edge refuses it at once, Kamailio never sees it
  await revoke(wic, oauth.None(), tokens.access_token);
  assert.deepEqual(await introspect(tokens.access_token), { active: false });
  await assertRefusedAtEdge(tokens.access_token, 'alice', 'a token revoked by its client through oauth4webapi');
  // and its refresh token: the family goes, with the refreshed access token
  await revoke(wic, oauth.None(), t2.refresh_token);
  assert.deepEqual(await introspect(t2.access_token), { active: false });
  await assertRefusedAtEdge(t2.access_token, 'alice', 'an access token of a family revoked through oauth4webapi');
}));

test('sign-out needs the CSRF token or the gateway\'s Origin: cross-site and other-port POSTs -> 403, the session stays; the signed-in page\'s form signs out', L.track(async () => {
  assert.ok(alice, 'needs the sign-in');
  const b = alice.browser;
  const signedIn = async () => {
    const p = await b.get(`${L.gw.httpUrl}/auth/signed-in`);
    return p.status === 200 && /you are signed in as/i.test(stripTags(p.body));
  };
  assert.ok(await signedIn(), 'signed in before');
  // SameSite=Lax sends the cookie along with a same-site POST: another port of the same host is
  // same-site, so only Origin or a token can tell the gateway's own page from another one
  for (const [what, headers] of [
    ['Origin https://evil.example', { origin: 'https://evil.example' }],
    [`Origin http://127.0.0.1:${L.p.base + 6} (same site, other port)`, { origin: `http://127.0.0.1:${L.p.base + 6}` }],
    ['Origin null', { origin: 'null' }],
    ['no Origin', {}],
  ]) {
    for (const form of [{}, { csrf: 'forged-token' }]) {
      const r = await b.request('POST', `${L.gw.httpUrl}/auth/logout`, { form, headers });
      assert.equal(r.status, 403, `${what}, form ${JSON.stringify(form)}: ${r.status} ${stripTags(r.body).slice(0, 200)}\n${L.gwLogTail()}`);
      assert.ok(!r.setCookies.some((c) => /^imsgw_session=/.test(c)), `${what}: the session cookie is left alone: ${r.setCookies}`);
      assert.ok(await signedIn(), `${what}, form ${JSON.stringify(form)}: the session still works`);
    }
  }
  // a browser on the gateway's own page: its form carries the token
  const page = await b.get(`${L.gw.httpUrl}/auth/signed-in`);
  const f = forms(page.body).find((x) => /\/auth\/logout$/.test(x.action));
  assert.ok(f && f.fields.csrf, `the signed-in page's sign-out form has a CSRF token${describe(page)}`);
  const out = await b.submit(page, { form: (x) => x.html === f.html });
  assert.equal(out.status, 200, `sign-out with the page's form: ${out.status} ${stripTags(out.body).slice(0, 200)}`);
  assert.ok(!(await signedIn()), 'signed out');
  // the token of that session is worth nothing afterwards
  const again = await b.request('POST', `${L.gw.httpUrl}/auth/logout`, { form: { csrf: f.fields.csrf } });
  assert.equal(again.status, 403, 'a stale token without Origin');
}));

test('imsgw is still healthy after the conformance run', L.track(async () => { await L.healthy('oauth4webapi'); }));
