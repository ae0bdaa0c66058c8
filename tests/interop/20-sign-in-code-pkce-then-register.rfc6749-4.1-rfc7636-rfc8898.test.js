'use strict';
// Flow 1 of DESIGN.md (the WIC): RFC 6749 §4.1 authorization code with RFC 7636 PKCE (S256).
// A headless user agent goes GET /oauth/authorize -> imsgw's sign-in page -> the real OpenID
// provider's login form (password checked) and consent form -> imsgw /auth/callback -> the
// client's redirect_uri with code and state; the code is exchanged at /oauth/token; the access
// token (claims impu/impi from [identity]) registers JsSIP through imsgw at Kamailio.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { signinLab, describe, stripTags } = require('../lib/signin');
const { forms } = require('../lib/browserless');
const { jwtClaims } = require('../lib/imsgw');

const L = signinLab({ name: 'signin-code', block: 20 });

let alice; // { tokens, claims, signin, browser }

test('RFC 6749 §4.1 + OIDC: sign-in through the provider\'s login form -> redirect to the client with code and the same state', L.track(async () => {
  const b = L.browser('alice');
  const idpMark = L.idp.logMark();
  const a = L.authorizeUrl();
  const first = await b.get(a.url, { stopAt: (u) => u.startsWith(L.cb) });
  assert.equal(first.status, 200, `imsgw's sign-in page${describe(first)}\n${L.gwLogTail()}`);
  assert.match(stripTags(first.body), /Demo IdP/, 'the sign-in page names the provider (display_name)');
  // a wrong password at the provider: its form again, with an error; no redirect anywhere
  let p = await L.drive(b, first, { user: 'alice', password: 'not-her-password' });
  assert.equal(p.status, 200, describe(p));
  assert.ok(p.url.startsWith(L.idp.issuer), `still at the provider${describe(p)}`);
  assert.match(stripTags(p.body), /wrong user name or password/i);
  // the right password (the same interaction)
  p = await L.drive(b, p, { user: 'alice' });
  assert.ok(p.stoppedAt, `back at the client's redirect_uri${describe(p)}\n${L.gwLogTail()}`);
  const back = new URL(p.stoppedAt);
  assert.equal(`${back.origin}${back.pathname}`, L.cb);
  assert.equal(back.searchParams.get('state'), a.state, 'state returned unchanged (RFC 6749 §4.1.2)');
  assert.ok(back.searchParams.get('code'), `a code: ${p.stoppedAt}`);
  assert.equal(back.searchParams.get('error'), null);

  // imsgw used the provider as an OIDC RP should: code flow, PKCE S256, nonce, its callback
  const idpLog = L.idp.logSince(idpMark);
  const authLine = idpLog.split('\n').find((l) => /GET \/auth\?/.test(l));
  assert.ok(authLine, `imsgw sent the browser to the provider's authorization endpoint:\n${idpLog}`);
  const q = new URL(`http://x${authLine.split(' ')[2]}`).searchParams;
  assert.equal(q.get('client_id'), 'imsgw');
  assert.equal(q.get('response_type'), 'code');
  assert.equal(q.get('code_challenge_method'), 'S256', 'imsgw uses PKCE at the provider too');
  assert.ok(q.get('nonce'), 'imsgw sends a nonce (OIDC Core §3.1.2.1)');
  assert.ok(q.get('state'), 'imsgw sends a state to the provider');
  assert.notEqual(q.get('state'), a.state, 'not the client\'s state');
  assert.match(q.get('scope'), /openid/);
  assert.equal(q.get('redirect_uri'), `${L.gw.httpUrl}/auth/callback`);
  assert.match(idpLog, /POST \/token -> 200/, 'imsgw redeemed the provider\'s code (client_secret_basic)');

  // the sign-in session cookie(s) set by imsgw: HttpOnly, SameSite=Lax
  const gwCookies = p.chain.concat(first.chain).filter((x) => x.url.startsWith(L.gw.httpUrl)).flatMap((x) => x.setCookies)
    .filter((c) => !/max-age=0|expires=thu, 01 jan 1970/i.test(c));
  assert.ok(gwCookies.length > 0, `imsgw set a session cookie${describe(p)}`);
  for (const c of gwCookies) {
    assert.match(c, /;\s*HttpOnly/i, `HttpOnly: ${c}`);
    assert.match(c, /;\s*SameSite=Lax/i, `SameSite=Lax: ${c}`);
  }

  // RFC 6749 §4.1.3 + RFC 7636 §4.5: the exchange
  const res = await L.token({ grant_type: 'authorization_code', code: back.searchParams.get('code'), redirect_uri: L.cb, client_id: 'wic', code_verifier: a.verifier });
  assert.equal(res.status, 200, `token: ${res.body}\n${L.gwLogTail()}`);
  const t = res.json;
  assert.equal(t.token_type, 'Bearer');
  assert.ok(Number.isInteger(t.expires_in) && t.expires_in > 0 && t.expires_in <= 3600, `expires_in ${t.expires_in}`);
  assert.ok(t.access_token && t.refresh_token, res.body);
  assert.equal(t.scope, 'sip');
  assert.match(res.headers['cache-control'] || '', /no-store/, 'RFC 6749 §5.1 Cache-Control: no-store');
  alice = { tokens: t, claims: jwtClaims(t.access_token), browser: b, signinCode: back.searchParams.get('code') };
}));

test('the access token carries the mapped identity: impu sip:alice@ims.example, impi alice@ims.example ([identity] templates)', L.track(async () => {
  assert.ok(alice, 'needs the sign-in test');
  const c = alice.claims;
  assert.equal(c.impu, 'sip:alice@ims.example');
  assert.equal(c.impi, 'alice@ims.example');
  assert.equal(c.iss, L.gw.issuer);
  assert.ok(c.aud === 'sip:ims.example' || (Array.isArray(c.aud) && c.aud.includes('sip:ims.example')), `aud ${JSON.stringify(c.aud)}`);
  assert.equal(c.scope, 'sip');
  assert.ok(c.sub && c.jti && c.exp > c.iat, JSON.stringify(c));
  assert.equal(c.exp - c.iat, alice.tokens.expires_in, 'expires_in matches the token');
  const i = await L.introspect(alice.tokens.access_token);
  assert.equal(i.json && i.json.active, true, `introspection: ${i.body}`);
}));

test('RFC 8898: JsSIP registers as alice through imsgw with that token -> 200; ul.dump binding for sip:alice@ims.example', L.track(async () => {
  assert.ok(alice, 'needs the sign-in test');
  const ua = await L.ua('alice', { user: 'alice', token: alice.tokens.access_token });
  assert.equal(ua.registerResponse.status_code, 200);
  const b = await L.kam.bindings('alice');
  assert.equal(b.length, 1, `one binding for alice@ims.example:\n${await L.kam.ulDumpText()}`);
  const dump = await L.kam.ulDump();
  // the lab registrar keeps AORs without the domain (usrloc use_domain off): `alice`
  assert.ok(dump.some((r) => ['alice', 'alice@ims.example', 'sip:alice@ims.example'].includes(r.aor)), JSON.stringify(dump.map((r) => r.aor)));
  assert.match(b[0].Path || '', /;ob/, 'through imsgw (its Path)');
}));

test('signed-in session: a second /oauth/authorize goes straight back with a new code (no provider visit)', L.track(async () => {
  assert.ok(alice, 'needs the sign-in test');
  const idpMark = L.idp.logMark();
  const s = await L.signIn(alice.browser, {}, { user: 'alice' });
  assert.ok(s.code, `a code without signing in again${describe(s.page)}`);
  assert.equal(s.state, s.sent.state);
  assert.notEqual(s.code, alice.signinCode);
  assert.doesNotMatch(L.idp.logSince(idpMark), /GET \/auth\?/, 'the provider was not asked again');
  const res = await L.token({ grant_type: 'authorization_code', code: s.code, redirect_uri: L.cb, client_id: 'wic', code_verifier: s.sent.verifier });
  assert.equal(res.status, 200, res.body);
  assert.equal(jwtClaims(res.json.access_token).impu, 'sip:alice@ims.example');
}));

test('POST /auth/logout ends the session: /oauth/authorize shows the sign-in page again', L.track(async () => {
  assert.ok(alice, 'needs the sign-in test');
  const b = alice.browser;
  const out = await b.request('POST', `${L.gw.httpUrl}/auth/logout`, { form: {}, headers: { origin: L.gw.httpUrl } });
  assert.ok([200, 204, 302, 303].includes(out.status), `logout: ${out.status} ${stripTags(out.body).slice(0, 200)}\n${L.gwLogTail()}`);
  const a = L.authorizeUrl();
  const r = await b.get(a.url, { stopAt: (u) => u.startsWith(L.cb) });
  assert.equal(r.stoppedAt, null, `no code after logout${describe(r)}`);
  assert.equal(r.status, 200, describe(r));
  assert.match(r.body, /\/auth\/login\?[^"']*provider=demo/, 'the sign-in page with the provider');
  assert.ok(forms(r.body).every((f) => !/\/cb/.test(f.action)));
}));

test('imsgw is still healthy after the sign-in tests', L.track(async () => { await L.healthy('sign-in'); }));
