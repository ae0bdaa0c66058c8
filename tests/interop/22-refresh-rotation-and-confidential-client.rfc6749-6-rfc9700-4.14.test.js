'use strict';
// RFC 6749 §6 refresh, with rotation (RFC 9700 §4.14.2, OAuth 2.0 Security BCP): each use
// returns a new refresh token; reusing an old one is refused (invalid_grant) and revokes the
// whole family, including its access tokens (RFC 7662 introspection says inactive; the SIP edge
// refuses them). Flow 3 of DESIGN.md: a confidential client ("svc") authenticates with HTTP
// Basic (RFC 6749 §2.3.1) for the code exchange and for refresh.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { signinLab } = require('../lib/signin');
const { jwtClaims, httpPostForm } = require('../lib/imsgw');
const A = require('../lib/auth');

const L = signinLab({ name: 'refresh', block: 22 });

const refresh = (rt, o = {}) => L.token({ grant_type: 'refresh_token', refresh_token: rt, ...(o.basic ? {} : { client_id: o.client_id || 'wic' }), ...(o.extra || {}) }, { basic: o.basic });

test('RFC 6749 §6: refresh -> a new access token and a new refresh token (rotation), same identity', L.track(async () => {
  const { tokens } = await L.tokensFor('alice');
  const r = await refresh(tokens.refresh_token);
  assert.equal(r.status, 200, `${r.body}\n${L.gwLogTail()}`);
  assert.equal(r.json.token_type, 'Bearer');
  assert.ok(r.json.access_token && r.json.refresh_token && r.json.expires_in > 0, r.body);
  assert.notEqual(r.json.access_token, tokens.access_token);
  assert.notEqual(r.json.refresh_token, tokens.refresh_token, 'a new refresh token each use');
  assert.equal(r.json.scope, 'sip');
  const c = jwtClaims(r.json.access_token);
  assert.equal(c.impu, 'sip:alice@ims.example');
  assert.equal(c.impi, 'alice@ims.example');
  assert.notEqual(c.jti, jwtClaims(tokens.access_token).jti);
  // the refreshed token registers
  const ws = await L.raw();
  const { res } = await A.register(ws, 'alice', { auth: `Bearer ${r.json.access_token}`, expires: 60 });
  assert.equal(res.status, 200, res.start);
  await A.register(ws, 'alice', { auth: `Bearer ${r.json.access_token}`, expires: 0, cseq: 2 });
  await ws.close();
}));

test('RFC 9700 §4.14.2: reusing a rotated refresh token -> invalid_grant, and the whole family is revoked (introspection, REGISTER)', L.track(async () => {
  const { tokens } = await L.tokensFor('bob');
  const r1 = await refresh(tokens.refresh_token);
  assert.equal(r1.status, 200, r1.body);
  const r2 = await refresh(r1.json.refresh_token);
  assert.equal(r2.status, 200, r2.body);
  const live = r2.json; // the newest generation
  assert.equal((await L.introspect(live.access_token)).json.active, true, 'newest access token active before the reuse');
  // reuse of the first (already rotated) refresh token
  const reuse = await refresh(tokens.refresh_token);
  assert.equal(reuse.status, 400, reuse.body);
  assert.equal(reuse.json && reuse.json.error, 'invalid_grant', reuse.body);
  // family revoked: the newest refresh token is dead too
  const after = await refresh(live.refresh_token);
  assert.equal(after.status, 400, `the newest refresh token after a reuse: ${after.body}`);
  assert.equal(after.json && after.json.error, 'invalid_grant', after.body);
  // and the family's access tokens
  for (const [what, at] of [['first', tokens.access_token], ['second', r1.json.access_token], ['newest', live.access_token]]) {
    const i = await L.introspect(at);
    assert.deepEqual(i.json, { active: false }, `${what} access token after the family was revoked: ${i.body}`);
  }
  const ws = await L.raw();
  const { res, callId } = await A.register(ws, 'bob', { auth: `Bearer ${live.access_token}`, expires: 60 });
  A.assertRefusal(L.gw, res, { code: 401, error: 'invalid_token', what: 'REGISTER with a revoked family\'s access token' });
  await A.assertNothingUpstream(L, callId, 'bob');
  await ws.close();
}));

test('RFC 6749 §6: a refresh token of one client is refused for another; a wider scope -> invalid_scope; garbage -> invalid_grant', L.track(async () => {
  const { tokens } = await L.tokensFor('carol');
  const other = await L.token({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_id: 'phone' });
  assert.equal(other.status, 400, other.body);
  assert.equal(other.json && other.json.error, 'invalid_grant', other.body);
  const wide = await refresh(tokens.refresh_token, { extra: { scope: 'sip admin' } });
  assert.equal(wide.status, 400, wide.body);
  assert.equal(wide.json && wide.json.error, 'invalid_scope', wide.body);
  const g = await refresh('not-a-refresh-token');
  assert.equal(g.status, 400, g.body);
  assert.equal(g.json && g.json.error, 'invalid_grant', g.body);
  await L.healthy('refresh errors');
}));

test('RFC 6749 §2.3.1: confidential client svc: code exchange and refresh with HTTP Basic; without or with a wrong secret -> 401 invalid_client', L.track(async () => {
  const b = L.browser('dave');
  const s = await L.signIn(b, { client_id: 'svc', redirect_uri: L.svcCb }, { user: 'dave' });
  assert.ok(s.code, `svc got a code: ${s.location}`);
  const form = { grant_type: 'authorization_code', code: s.code, redirect_uri: L.svcCb, code_verifier: s.sent.verifier };
  const ok = await L.token(form, { basic: ['svc', 'svc-secret'] });
  assert.equal(ok.status, 200, `svc with Basic: ${ok.body}\n${L.gwLogTail()}`);
  assert.equal(jwtClaims(ok.json.access_token).impu, 'sip:dave@ims.example');
  // a second code (the session is still there): without the secret, with a wrong one
  const s2 = await L.signIn(b, { client_id: 'svc', redirect_uri: L.svcCb }, { user: 'dave' });
  assert.ok(s2.code, `svc got a second code: ${s2.location}`);
  const form2 = { grant_type: 'authorization_code', code: s2.code, redirect_uri: L.svcCb, code_verifier: s2.sent.verifier };
  const none = await L.token({ ...form2, client_id: 'svc' });
  assert.ok(none.status === 400 || none.status === 401, `svc without its secret: ${none.status} ${none.body}`);
  assert.equal(none.json && none.json.error, 'invalid_client', none.body);
  const wrong = await L.token(form2, { basic: ['svc', 'wrong-secret'] });
  assert.equal(wrong.status, 401, wrong.body);
  assert.equal(wrong.json && wrong.json.error, 'invalid_client', wrong.body);
  assert.match(wrong.headers['www-authenticate'] || '', /^Basic/i, 'RFC 6749 §5.2: a failed Basic gets 401 with WWW-Authenticate: Basic');
  const r = await refresh(ok.json.refresh_token, { basic: ['svc', 'svc-secret'] });
  assert.equal(r.status, 200, r.body);
  const r2 = await refresh(r.json.refresh_token, { basic: ['svc', 'wrong-secret'] });
  assert.equal(r2.status, 401, r2.body);
  assert.equal(r2.json && r2.json.error, 'invalid_client', r2.body);
  const r3 = await refresh(r.json.refresh_token, { client_id: 'svc' });
  assert.ok(r3.status === 400 || r3.status === 401, `svc refresh without Basic: ${r3.status} ${r3.body}`);
  assert.equal(r3.json && r3.json.error, 'invalid_client', r3.body);
  // the token registers (the confidential UA of flow 3)
  const ws = await L.raw();
  const { res } = await A.register(ws, 'dave', { auth: `Bearer ${r.json.access_token}`, expires: 60 });
  assert.equal(res.status, 200, res.start);
  await A.register(ws, 'dave', { auth: `Bearer ${r.json.access_token}`, expires: 0, cseq: 2 });
  await ws.close();
}));

test('RFC 7009 §2.1: the web client revokes its refresh token (client_id only) -> the family and its access token are dead; another client cannot', L.track(async () => {
  const { tokens } = await L.tokensFor('carol');
  const revoke = (form) => httpPostForm(`${L.gw.httpUrl}/oauth/revoke`, form);
  // A client the token was not issued to: 200 (RFC 7009 §2.2), but nothing is revoked.
  const foreign = await revoke({ token: tokens.refresh_token, client_id: 'phone' });
  assert.equal(foreign.status, 200, foreign.body);
  assert.equal((await L.introspect(tokens.access_token)).json.active, true, 'still active after a foreign client tried');
  const r = await revoke({ token: tokens.refresh_token, client_id: 'wic' });
  assert.equal(r.status, 200, r.body);
  const after = await refresh(tokens.refresh_token);
  assert.equal(after.status, 400, after.body);
  assert.equal(after.json && after.json.error, 'invalid_grant', after.body);
  assert.deepEqual((await L.introspect(tokens.access_token)).json, { active: false }, 'the family\'s access token is revoked too');
}));
