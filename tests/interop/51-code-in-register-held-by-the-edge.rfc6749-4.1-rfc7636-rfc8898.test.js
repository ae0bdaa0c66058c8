'use strict';
// Issue 13 §1, the rich-UI flow of the work RFC 8898 came from: a UA that got an authorization
// code puts it in its REGISTER (`Authorization: Bearer code="…", code_verifier="…",
// client_id="…"`) and the edge exchanges it at the WAF, then holds the tokens for that
// connection. Block 51: the real OpenID provider, imsgw's WAF (access tokens of 12 s so that a
// refresh happens within the test), Kamailio with LOG_MSG (what the IMS side received).
// - alice's code registers her: Kamailio's binding, the `tna` assertion of her IMPI, never the
//   code, the verifier or "Bearer"; the binding expires with the token;
// - a re-REGISTER without credentials rides on the held grant; past half the token's life the
//   edge refreshes first (counted in imsgw_sip_grants_total{outcome="refreshed"}) and the
//   binding's expiry moves on;
// - attacks: bob's code in a REGISTER for alice -> 403; a wrong verifier -> 401; a code of a
//   client not allowed `code_in_register` -> 401; a code credential without its verifier ->
//   401: Kamailio never sees any of those Call-IDs;
// - alice's code replayed from another connection (RFC 6749 §4.1.2): refused, and everything the
//   code gave is revoked: the edge un-REGISTERs her (Kamailio receives the REGISTER with
//   Expires 0 and drops her binding) and closes her connection with 1008.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { signinLab } = require('../lib/signin');
const { sleep, waitFor } = require('../lib/env');
const A = require('../lib/auth');

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
const TTL = 12;

// signinLab's redirect URI for block 51 (lib/signin.js: port base + 6).
const CB = `http://127.0.0.1:${21000 + 100 * 51 + 6}/cb`;
const L = signinLab({
  name: 'code-in-register',
  block: 51,
  kamDefines: ['LOG_MSG'],
  waf: { token_ttl_secs: TTL },
  // wic may have its codes exchanged by the edge; `plain`, a public client, may not.
  clients: [
    { id: 'wic', first_party: true, code_in_register: true, redirect_uris: [CB], grants: ['authorization_code', 'refresh_token', DEVICE_GRANT] },
    { id: 'plain', first_party: true, redirect_uris: [`${CB}-plain`], grants: ['authorization_code', 'refresh_token'] },
    { id: 'rs', secret: 'rs-secret', introspect: true },
  ],
});
L.cbPlain = `${CB}-plain`;

/** A fresh code for `user` at client `client_id`: { code, verifier, redirect }. */
async function codeFor(user, clientId = 'wic') {
  const redirect = clientId === 'wic' ? L.cb : L.cbPlain;
  const s = await L.signIn(L.browser(user), { client_id: clientId, redirect_uri: redirect }, { user, stopAt: (u) => u.startsWith(L.cb) });
  assert.ok(s.code, `a code for ${user} at ${clientId}: ${s.error} ${s.location}\n${L.gwLogTail()}`);
  return { code: s.code, verifier: s.sent.verifier, redirect };
}

const cred = (c, clientId = 'wic') => `Bearer code="${c.code}", code_verifier="${c.verifier}", client_id="${clientId}", redirect_uri="${c.redirect}"`;

/** An outbound REGISTER (RFC 5626 instance and reg-id) on raw connection `c`; o: { auth, callId, cseq }. */
async function reg(c, user, o = {}) {
  const callId = o.callId || require('node:crypto').randomBytes(8).toString('hex');
  const extra = [
    `Contact: <sip:${user}@${c.host};transport=ws;ob>;reg-id=1;+sip.instance="<urn:uuid:${c.uuid}>"`,
    'Supported: path, outbound', 'Expires: 600',
  ];
  if (o.auth) extra.push(`Authorization: ${o.auth}`);
  const text = c.build('REGISTER', 'sip:ims.example', { user, cseq: `${o.cseq || 1} REGISTER`, over: { 'Call-ID': callId }, extra });
  return { res: await c.request(text, 6000), callId, text };
}

async function rawConn() {
  const c = await L.raw();
  c.uuid = require('node:crypto').randomUUID();
  return c;
}

async function grants(outcome) {
  const m = new RegExp(`^imsgw_sip_grants_total\\{outcome="${outcome}"\\} (\\d+)$`, 'm').exec((await L.gw.metrics()).body);
  return m ? Number(m[1]) : 0;
}

let alice; // { c, code, callId, cseq }

test('1. alice\'s code in her REGISTER: the edge exchanges it; Kamailio binds her with the asserted IMPI and never sees the code', L.track(async () => {
  const code = await codeFor('alice');
  const c = await rawConn();
  const r = await reg(c, 'alice', { auth: cred(code) });
  assert.equal(r.res.status, 200, `${r.res.start}\n${L.gwLogTail()}`);
  const sent = await A.waitKamRequest(L, r.callId, 'REGISTER');
  assert.doesNotMatch(sent.text, /bearer/i, sent.text);
  assert.ok(!sent.text.includes(code.code) && !sent.text.includes(code.verifier), sent.text);
  const auth = sent.get('Authorization');
  assert.equal(auth.length, 1, sent.text);
  assert.match(auth[0], /username="alice@ims\.example"/);
  assert.match(auth[0], /integrity-protected="auth-done"/);
  // RFC 8898 §2.1: the binding lives no longer than the token the code gave.
  const exp = await A.bindingExpires(L, 'alice');
  assert.ok(exp !== null && exp <= TTL, `binding expiry ${exp} <= ${TTL}:\n${await L.kam.ulDumpText()}`);
  assert.equal(await grants('code_exchanged'), 1);
  alice = { c, code, callId: r.callId, cseq: 1 };
}));

test('2. re-REGISTER without credentials rides on the held grant; past half its life the edge refreshes it first', L.track(async () => {
  assert.ok(alice, 'needs 1');
  alice.cseq += 1;
  let r = await reg(alice.c, 'alice', { callId: alice.callId, cseq: alice.cseq });
  assert.equal(r.res.status, 200, r.res.start);
  assert.equal(await grants('refreshed'), 0, 'early: no refresh');
  await sleep((TTL / 2 + 1) * 1000);
  alice.cseq += 1;
  r = await reg(alice.c, 'alice', { callId: alice.callId, cseq: alice.cseq });
  assert.equal(r.res.status, 200, `${r.res.start}\n${L.gwLogTail()}`);
  assert.equal(await grants('refreshed'), 1, 'the edge refreshed the grant');
  const exp = await A.bindingExpires(L, 'alice');
  assert.ok(exp !== null && exp > TTL / 2, `the binding's expiry moved on with the new token: ${exp}`);
  // The same code sent again on the same connection (a UA that keeps its header) rides too.
  alice.cseq += 1;
  r = await reg(alice.c, 'alice', { callId: alice.callId, cseq: alice.cseq, auth: cred(alice.code) });
  assert.equal(r.res.status, 200, r.res.start);
  assert.equal(await grants('code_exchanged'), 1, 'no second exchange');
}));

test('3. attacks: another person\'s code, a wrong verifier, a client not allowed, a half credential: refused, Kamailio sees none', L.track(async () => {
  const c = await rawConn();
  // bob's code for a REGISTER as alice: the code is bob's, so 403.
  const bobs = await codeFor('bob');
  let r = await reg(c, 'alice', { auth: cred(bobs) });
  assert.equal(r.res.status, 403, r.res.start);
  assert.match(r.res.get('Warning')[0] || '', /sip:bob@ims\.example, not for the To identity/);
  await A.assertNothingUpstream(L, r.callId);
  // carol's code with another verifier.
  const carols = await codeFor('carol');
  r = await reg(c, 'carol', { auth: cred({ ...carols, verifier: 'x'.repeat(43) }) });
  A.assertRefusal(L.gw, r.res, { code: 401, error: 'invalid_token', warning: /code_verifier does not match/ });
  await A.assertNothingUpstream(L, r.callId, 'carol');
  // dave's code of a client without code_in_register.
  const daves = await codeFor('dave', 'plain');
  r = await reg(c, 'dave', { auth: cred(daves, 'plain') });
  A.assertRefusal(L.gw, r.res, { code: 401, error: 'invalid_token', warning: /may not have its codes exchanged/ });
  await A.assertNothingUpstream(L, r.callId, 'dave');
  // A code without its verifier is no credential at all.
  r = await reg(c, 'dave', { auth: `Bearer code="${daves.code}", client_id="wic"` });
  A.assertRefusal(L.gw, r.res, { code: 401, error: 'invalid_token', warning: /Bearer credentials syntax/ });
  await A.assertNothingUpstream(L, r.callId, 'dave');
  assert.ok(await grants('code_refused') >= 2);
}));

test('4. RFC 6749 §4.1.2: alice\'s code replayed from another connection revokes what it gave: the edge un-REGISTERs her and closes her connection (1008)', L.track(async () => {
  assert.ok(alice, 'needs 1');
  assert.ok((await L.kam.bindings('alice')).length === 1, 'alice is registered');
  const thief = await rawConn();
  const r = await reg(thief, 'alice', { auth: cred(alice.code) });
  A.assertRefusal(L.gw, r.res, { code: 401, error: 'invalid_token', warning: /already used/ });
  await A.assertNothingUpstream(L, r.callId);
  const closed = await Promise.race([alice.c.closed, sleep(5000).then(() => null)]);
  assert.deepEqual(closed && closed.code, 1008, `alice's connection closed with 1008: ${JSON.stringify(closed)}\n${L.gwLogTail()}`);
  // Kamailio received the edge's un-REGISTER for alice's registration.
  await waitFor(() => A.kamMessages(L.kam, alice.callId).some((m) => m.dir === 'req' && m.get('Expires')[0] === '0'), 3000,
    'the un-REGISTER at Kamailio');
  const un = A.kamMessages(L.kam, alice.callId).find((m) => m.dir === 'req' && m.get('Expires')[0] === '0');
  assert.equal(un.get('CSeq')[0], `${alice.cseq + 1} REGISTER`, un.text);
  assert.match(un.get('Authorization')[0] || '', /username="alice@ims\.example"/, un.text);
  await waitFor(async () => (await L.kam.bindings('alice')).length === 0, 3000, 'alice\'s binding removed');
  assert.equal(await grants('revoked'), 1);
  await L.healthy('the replay');
}));
