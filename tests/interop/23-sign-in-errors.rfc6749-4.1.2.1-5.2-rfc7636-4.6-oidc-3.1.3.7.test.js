'use strict';
// What goes wrong in the sign-in flows, each with its own answer and no crash (imsgw still
// serves /healthz after each):
//  - RFC 6749 §4.1.2.1: an unknown client or an unregistered redirect_uri -> an error page,
//    never a redirect; other request errors (PKCE missing, `plain`, bad response_type) ->
//    redirect to the client with error= and its state. RFC 7636 §4.4.1: S256 required.
//  - RFC 6749 §5.2 at /oauth/token: replayed code (invalid_grant; §4.1.2 revokes what it issued),
//    wrong/missing PKCE verifier (RFC 7636 §4.6), unsupported_grant_type, unauthorized_client.
//  - OAuth state / login CSRF at imsgw's /auth/callback: a tampered state, a callback without
//    the sign-in session -> error page.
//  - OpenID Connect Core §3.1.3.7: an ID token with a bad signature or a wrong nonce -> error
//    page, no code. The provider unreachable -> a page saying so.
//  - An account that does not map to an IMS identity (email_verified false, no
//    preferred_username) -> a clear page, no code.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { signinLab, describe, assertErrorPage, stripTags, sleep } = require('../lib/signin');
const { jwtClaims } = require('../lib/imsgw');
const A = require('../lib/auth');

const L = signinLab({ name: 'signin-errors', block: 23 });

const exchange = (s, over = {}) => L.token({ grant_type: 'authorization_code', code: s.code, redirect_uri: L.cb, client_id: 'wic', code_verifier: s.sent.verifier, ...over });
const expectOAuthError = (r, status, error, what) => {
  assert.equal(r.status, status, `${what}: ${r.status} ${r.body}\n${L.gwLogTail(1200)}`);
  assert.equal(r.json && r.json.error, error, `${what}: ${r.body}`);
  assert.match(r.headers['content-type'] || '', /application\/json/, `${what}: JSON (RFC 6749 §5.2)`);
};

test('RFC 6749 §4.1.2 + §10.5: a replayed code -> invalid_grant, and the tokens issued for it are revoked', L.track(async () => {
  const s = await L.signIn(L.browser('replay'), {}, { user: 'alice' });
  assert.ok(s.code, describe(s.page));
  const first = await exchange(s);
  assert.equal(first.status, 200, first.body);
  assert.equal((await L.introspect(first.json.access_token)).json.active, true);
  const again = await exchange(s);
  expectOAuthError(again, 400, 'invalid_grant', 'replayed code');
  const i = await L.introspect(first.json.access_token);
  assert.deepEqual(i.json, { active: false }, `the access token issued for a replayed code is revoked: ${i.body}`);
  const r = await L.token({ grant_type: 'refresh_token', refresh_token: first.json.refresh_token, client_id: 'wic' });
  expectOAuthError(r, 400, 'invalid_grant', 'the refresh token issued for a replayed code');
  // and the IMS side never hears of it: the edge refuses a REGISTER with that token
  const c = await L.raw();
  const { res, callId } = await A.register(c, 'alice', { auth: `Bearer ${first.json.access_token}`, expires: 300 });
  A.assertRefusal(L.gw, res, { code: 401, error: 'invalid_token', warning: /revoked/i, what: 'the replayed code\'s token' });
  await A.assertNothingUpstream(L, callId, 'alice');
  await c.close();
  await L.healthy('replayed code');
}));

test('RFC 7636 §4.6: a wrong or missing code_verifier -> invalid_grant (no tokens)', L.track(async () => {
  const b = L.browser('pkce');
  const s = await L.signIn(b, {}, { user: 'alice' });
  assert.ok(s.code, describe(s.page));
  const wrong = await exchange(s, { code_verifier: 'x'.repeat(43) });
  expectOAuthError(wrong, 400, 'invalid_grant', 'wrong code_verifier');
  const s2 = await L.signIn(b, {}, { user: 'alice' });
  assert.ok(s2.code, describe(s2.page));
  const missing = await L.token({ grant_type: 'authorization_code', code: s2.code, redirect_uri: L.cb, client_id: 'wic' });
  assert.equal(missing.status, 400, missing.body);
  assert.ok(['invalid_grant', 'invalid_request'].includes(missing.json && missing.json.error), `missing code_verifier: ${missing.body}`);
  // a mismatching redirect_uri at the token endpoint (RFC 6749 §4.1.3)
  const s3 = await L.signIn(b, {}, { user: 'alice' });
  const badRedirect = await exchange(s3, { redirect_uri: `${L.cb}x` });
  expectOAuthError(badRedirect, 400, 'invalid_grant', 'redirect_uri differs from the authorization request');
  await L.healthy('PKCE');
}));

for (const [what, q, error] of [
  ['code_challenge_method=plain (RFC 7636 §4.4.1: S256 required)', { code_challenge_method: 'plain', code_challenge: 'a'.repeat(43) }, 'invalid_request'],
  ['no code_challenge (PKCE required)', { code_challenge: undefined, code_challenge_method: undefined }, 'invalid_request'],
  ['response_type=token', { response_type: 'token' }, 'unsupported_response_type'],
  ['an unknown scope', { scope: 'sip admin' }, 'invalid_scope'],
]) {
  test(`RFC 6749 §4.1.2.1: ${what} -> redirect to the client with error=${error} and its state, no code`, L.track(async () => {
    const s = await L.signIn(L.browser('autherr'), q, { user: 'alice' });
    assert.ok(s.location, `a redirect to the client${describe(s.page)}\n${L.gwLogTail(1500)}`);
    const u = new URL(s.location);
    assert.equal(`${u.origin}${u.pathname}`, L.cb);
    assert.equal(u.searchParams.get('error'), error, s.location);
    assert.equal(u.searchParams.get('state'), s.sent.state, `state echoed: ${s.location}`);
    assert.equal(u.searchParams.get('code'), null, s.location);
    await L.healthy(what);
  }));
}

for (const [what, q] of [
  ['an unregistered redirect_uri', { redirect_uri: 'http://127.0.0.1:9/evil' }],
  ['a redirect_uri that only starts like the registered one (RFC 6749 §3.1.2.3 exact match)', { redirect_uri: 'PREFIX' }],
  ['an unknown client_id', { client_id: 'nobody' }],
  ['a client without the authorization_code grant (phone)', { client_id: 'phone' }],
]) {
  test(`RFC 6749 §4.1.2.1: ${what} -> an error page, never a redirect`, L.track(async () => {
    const b = L.browser('nored');
    const a = L.authorizeUrl({ ...q, redirect_uri: q.redirect_uri === 'PREFIX' ? `${L.cb}/more` : (q.redirect_uri || L.cb) });
    const away = (u) => !u.startsWith(L.gw.httpUrl) && !u.startsWith(L.idp.issuer);
    const first = await b.get(a.url, { stopAt: away });
    const page = await L.drive(b, first, { user: 'alice', stopAt: away });
    for (const x of page.chain.concat(first.chain)) {
      if (x.location) assert.ok(x.location.startsWith(L.gw.httpUrl) || x.location.startsWith(L.idp.issuer), `${what}: redirected out to ${x.location}${describe(page)}`);
    }
    assertErrorPage(page, what);
    assert.ok(page.status === 400 || page.status === 401 || page.status === 403, `${what}: ${page.status}`);
    assert.ok(first.status >= 400, `${what}: refused before the sign-in page (first response ${first.status})${describe(first)}`);
    await L.healthy(what);
  }));
}

test('RFC 6749 §5.2: unsupported_grant_type, unauthorized_client, invalid_request (no grant_type), invalid_client (unknown)', L.track(async () => {
  expectOAuthError(await L.token({ grant_type: 'password', username: 'alice', password: 'alice-pw', client_id: 'wic' }), 400, 'unsupported_grant_type', 'password grant');
  expectOAuthError(await L.token({ grant_type: 'client_credentials' }, { basic: ['svc', 'svc-secret'] }), 400, 'unsupported_grant_type', 'client_credentials');
  expectOAuthError(await L.token({ grant_type: 'authorization_code', code: 'x', redirect_uri: L.cb, code_verifier: 'y'.repeat(43), client_id: 'phone' }), 400, 'unauthorized_client', 'phone has no authorization_code grant');
  const u = await L.token({ grant_type: 'authorization_code', code: 'x', redirect_uri: L.cb, code_verifier: 'y'.repeat(43), client_id: 'nobody' });
  assert.ok(u.status === 400 || u.status === 401, u.body);
  assert.equal(u.json && u.json.error, 'invalid_client', u.body);
  expectOAuthError(await L.token({ grant_type: 'authorization_code', code: 'not-a-code', redirect_uri: L.cb, code_verifier: 'y'.repeat(43), client_id: 'wic' }), 400, 'invalid_grant', 'unknown code');
  await L.healthy('token errors');
  // a missing required parameter is invalid_request (RFC 6749 §5.2), not unsupported_grant_type
  expectOAuthError(await L.token({ client_id: 'wic' }), 400, 'invalid_request', 'no grant_type');
  await L.healthy('token errors');
}));

test('OAuth state at /auth/callback: a tampered state, or a callback in another browser (login CSRF) -> error page, no code', L.track(async () => {
  let captured = null;
  const tampered = await L.signIn(L.browser('tamper'), {}, {
    user: 'alice',
    onCallback: (url) => {
      captured = url;
      const u = new URL(url);
      assert.ok(u.searchParams.get('state'), `the provider returned a state: ${url}`);
      u.searchParams.set('state', `${u.searchParams.get('state')}x`);
      return u.toString();
    },
  });
  assert.ok(captured, `the flow reached imsgw's /auth/callback${describe(tampered.page)}`);
  assert.equal(tampered.code, null, `no code: ${tampered.location}`);
  assertErrorPage(tampered.page, 'tampered state');
  // the untampered callback URL in a fresh browser, without the sign-in cookie
  let stolen = null;
  const s = await L.signIn(L.browser('victim'), {}, { user: 'bob', onCallback: (url) => { stolen = url; return `${L.gw.httpUrl}/healthz`; } });
  assert.ok(stolen, describe(s.page));
  const other = L.browser('attacker');
  const r = await other.get(stolen, { stopAt: (u) => u.startsWith(L.cb) });
  assert.equal(r.stoppedAt, null, `no redirect to the client from a callback without its session: ${r.stoppedAt}`);
  assertErrorPage(r, 'callback without the sign-in session');
  await L.healthy('state');
}));

test('OIDC Core §3.1.3.7: an ID token whose signature does not verify with the provider\'s JWKS -> error page, no code', L.track(async () => {
  const mark = L.gw.logMark();
  await L.idp.setMode('bad-signature');
  try {
    const s = await L.signIn(L.browser('badsig'), {}, { user: 'alice' });
    assert.ok(s.page.steps.includes('idp-login'), `went through the provider${describe(s.page)}`);
    assert.equal(s.code, null, `no code with a forged ID token: ${s.location}`);
    assertErrorPage(s.page, 'bad ID token signature');
    assert.match(L.idp.log(), /mode=bad-signature\n[^]*id_token sub=sub-alice-0001 nonce=\S+ aud=imsgw mode=bad-signature/, 'the provider did hand out a forged ID token');
    console.log(`# imsgw log for the bad signature:\n${L.gw.logSince(mark).split('\n').filter((l) => /WARN|ERROR|signature|id.?token/i.test(l)).join('\n')}`);
  } finally {
    await L.idp.setMode('normal');
  }
  await L.healthy('bad signature');
}));

test('OIDC Core §3.1.3.7 (11): an ID token with another nonce -> error page, no code', L.track(async () => {
  await L.idp.setMode('bad-nonce');
  try {
    const s = await L.signIn(L.browser('badnonce'), {}, { user: 'alice' });
    assert.equal(s.code, null, `no code with a wrong nonce: ${s.location}`);
    assertErrorPage(s.page, 'wrong nonce');
  } finally {
    await L.idp.setMode('normal');
  }
  // and normal again: the same provider signs alice in
  const ok = await L.signIn(L.browser('after-nonce'), {}, { user: 'alice' });
  assert.ok(ok.code, `sign-in works again${describe(ok.page)}`);
  await L.healthy('bad nonce');
}));

for (const [who, why] of [['mallory', 'email_verified is false (identity.required_claims)'], ['nameless', 'no preferred_username for the IMPU template']]) {
  test(`an unmappable account (${who}: ${why}) -> a clear page, no code, no token`, L.track(async () => {
    const s = await L.signIn(L.browser(who), {}, { user: who });
    assert.ok(s.page.steps.includes('idp-login'), `went through the provider${describe(s.page)}`);
    assert.equal(s.code, null, `no code for ${who}: ${s.location}`);
    assertErrorPage(s.page, `unmappable ${who}`);
    console.log(`# page for ${who}: ${s.page.status} ${stripTags(s.page.body).slice(0, 200)}`);
    await L.healthy(who);
  }));
}

test('provider down at the code exchange (/auth/callback) -> a page saying the provider is not reachable; back up -> sign-in works', L.track(async () => {
  let stopped = false;
  try {
    const s = await L.signIn(L.browser('down'), {}, {
      user: 'alice',
      onCallback: async (url) => { await L.idp.stop(); stopped = true; return url; },
    });
    assert.ok(stopped, `reached the callback${describe(s.page)}`);
    assert.equal(s.code, null);
    assertErrorPage(s.page, 'provider down at the callback', /not reachable|unreachable|unavailable|could not (?:reach|contact|connect)|cannot (?:reach|contact)/i);
    assert.ok(s.page.status >= 500, `a gateway-side failure status (502/503/504), got ${s.page.status}`);
  } finally {
    if (!L.idp.child) await L.idp.start();
  }
  await L.healthy('provider down');
  const ok = await L.signIn(L.browser('up-again'), {}, { user: 'alice' });
  assert.ok(ok.code, `the provider back (restarted, fresh keys? no: same keys) -> sign-in works${describe(ok.page)}\n${L.gwLogTail(1500)}`);
}));

test('imsgw started while the provider is down: serves, its sign-in says the provider is not reachable; provider back -> works without restart', L.track(async () => {
  const exit = await L.gw.stop();
  assert.equal(exit && exit.code, 0, JSON.stringify(exit));
  await L.idp.stop();
  try {
    await L.gw.start(); // must start: the SIP edge does not depend on the provider
    await L.healthy('start with the provider down');
    const b = L.browser('down-at-start');
    const s = await L.signIn(b, {}, { user: 'alice' });
    assert.equal(s.code, null);
    assertErrorPage(s.page, 'provider down at sign-in', /not reachable|unreachable|unavailable|could not (?:reach|contact|connect)|cannot (?:reach|contact)/i);
    assert.ok(s.page.status >= 500, `502/503/504, got ${s.page.status}`);
  } finally {
    if (!L.idp.child) await L.idp.start();
  }
  // imsgw does not retry a failed discovery for a while (10 s in server/src/oidc/discovery.rs):
  // recovery within 15 s, without restarting imsgw
  const back = Date.now();
  let ok;
  for (;;) {
    ok = await L.signIn(L.browser('after-down-start'), {}, { user: 'alice' });
    if (ok.code || Date.now() - back > 15000) break;
    await sleep(1000);
  }
  assert.ok(ok.code, `provider back -> sign-in works within 15 s without restarting imsgw${describe(ok.page)}\n${L.gwLogTail(1500)}`);
  console.log(`# sign-in worked again ${Date.now() - back} ms after the provider came back`);
  const t = await exchange(ok);
  assert.equal(t.status, 200, t.body);
  assert.equal(jwtClaims(t.json.access_token).impu, 'sip:alice@ims.example');
}));
