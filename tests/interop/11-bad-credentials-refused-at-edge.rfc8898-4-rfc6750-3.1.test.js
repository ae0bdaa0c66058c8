'use strict';
// RFC 8898 §2.2 and §4, RFC 6750 §3.1: what a REGISTER gets when its credentials are missing or
// no good, each from a raw WebSocket client (JsSIP hides the details), with tokens forged by
// node:crypto -- most of them properly signed with the gateway's own key, so that only the
// one thing under test is wrong:
//   none                        -> 401, WWW-Authenticate: Bearer realm, authz_server, scope
//   not valid (17 kinds)        -> 401, the same + error="invalid_token", Warning: 399 imsgw "..."
//   no `sip` scope              -> 403, error="insufficient_scope"
//   valid, but for another IMPU -> 403 with a Warning, no challenge
// and in every case Kamailio (-A LOG_AUTH) received nothing for the Call-ID and holds no
// binding. A valid REGISTER on the same client afterwards still works (control).
const { test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { useLab, uniqueUser } = require('../lib/lab');
const { signJwt, httpPostForm } = require('../lib/imsgw');
const A = require('../lib/auth');

const L = useLab({
  name: 'bad-credentials', block: 11, transport: 'udp',
  kamailio: { defines: ['FR_TIMER=3000', 'LOG_AUTH'] },
  imsgw: { clients: [{ id: 'web', introspect: false }] },
});

let c; // one raw client for all cases: a refusal must not close the WebSocket
let ours; // { kid, key }
const impu = (u) => `sip:${u}@ims.example`;
const hdr = (kid, alg = 'ES256') => ({ alg, typ: 'at+jwt', kid });

/** The gateway's key and the raw client, made once (after the lab's before() started imsgw). */
async function init() {
  if (!ours) ours = await L.gw.signingKey();
  if (!c) c = await L.raw();
}

/** Forged tokens for `user`: [label, () => Promise<authorization value>, warning regex]. */
const cases = [
  ['garbage', async () => 'Bearer this-is-not-a-jwt', /malformed|token/i],
  ['garbage with bad characters', async () => 'Bearer !!!$$$', /malformed|syntax|token/i],
  ['truncated', async (u) => `Bearer ${(await L.mint(u)).slice(0, -12)}`, /signature|malformed/i],
  ['tampered payload (impu changed after signing)', async (u) => {
    const t = await L.mint(u);
    const [h, p, s] = t.split('.');
    const claims = JSON.parse(Buffer.from(p, 'base64url'));
    claims.scope = 'sip admin';
    return `Bearer ${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}`;
  }, /signature/i],
  ['signed by another P-256 key under our kid', async (u) => {
    const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    return `Bearer ${signJwt(hdr(ours.kid), L.gw.claims(impu(u)), privateKey)}`;
  }, /signature/i],
  ['unknown kid', async (u) => `Bearer ${signJwt(hdr('no-such-kid'), L.gw.claims(impu(u)), ours.key)}`, /key id|kid/i],
  ['alg none', async (u) => `Bearer ${signJwt({ alg: 'none', typ: 'at+jwt', kid: ours.kid }, L.gw.claims(impu(u)), null)}`, /algorithm/i],
  ['HS256 keyed with our public key (RFC 8725 §2.1)', async (u) => {
    const pub = crypto.createPublicKey(ours.key).export({ type: 'spki', format: 'pem' });
    return `Bearer ${signJwt(hdr(ours.kid, 'HS256'), L.gw.claims(impu(u)), pub)}`;
  }, /algorithm/i],
  ['foreign RS256', async (u) => {
    const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    return `Bearer ${signJwt(hdr(ours.kid, 'RS256'), L.gw.claims(impu(u)), privateKey)}`;
  }, /algorithm/i],
  ['expired 120 s ago (beyond the 60 s leeway)', async (u) => {
    const n = A.now();
    return `Bearer ${signJwt(hdr(ours.kid), L.gw.claims(impu(u), { iat: n - 700, nbf: n - 700, exp: n - 120 }), ours.key)}`;
  }, /expired/i],
  ['nbf 10 minutes in the future', async (u) => {
    const n = A.now();
    return `Bearer ${signJwt(hdr(ours.kid), L.gw.claims(impu(u), { nbf: n + 600, exp: n + 900 }), ours.key)}`;
  }, /not yet valid/i],
  ['wrong iss', async (u) => `Bearer ${signJwt(hdr(ours.kid), L.gw.claims(impu(u), { iss: 'http://127.0.0.1:1' }), ours.key)}`, /issuer/i],
  ['wrong aud', async (u) => `Bearer ${signJwt(hdr(ours.kid), L.gw.claims(impu(u), { aud: 'sip:other.example' }), ours.key)}`, /audience/i],
  ['no exp', async (u) => `Bearer ${signJwt(hdr(ours.kid), L.gw.claims(impu(u), { exp: undefined }), ours.key)}`, /exp/i],
  ['larger than 8 KiB (properly signed)', async (u) => `Bearer ${signJwt(hdr(ours.kid), L.gw.claims(impu(u), { pad: 'x'.repeat(9000) }), ours.key)}`, /too large/i],
  ['revoked (RFC 7009)', async (u) => {
    const t = await L.mint(u, { client_id: 'web' }); // RFC 7009 §2.1: only its client revokes it
    const r = await httpPostForm(`${L.gw.httpUrl}/oauth/revoke`, { token: t, client_id: 'web' });
    assert.equal(r.status, 200, `revoke: ${r.status} ${r.body}`);
    return `Bearer ${t}`;
  }, /revoked/i],
  ['from an issuer that is not configured (RS256)', async (u) => {
    const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    return `Bearer ${signJwt({ alg: 'RS256', typ: 'at+jwt', kid: 'k1' }, L.gw.claims(impu(u), { iss: 'https://idp.elsewhere.example' }), privateKey)}`;
  }, /issuer/i],
];

test('REGISTER without credentials -> 401 with the Bearer challenge (no error), nothing upstream', L.track(async () => {
  await init();
  const user = uniqueUser('nocred');
  const { res, callId } = await A.register(c, user, { expires: 600 });
  A.assertRefusal(L.gw, res, { code: 401, error: null, what: 'no credentials' });
  await A.assertNothingUpstream(L, callId, user);
}));

test('REGISTER with Digest credentials only -> 401 with the Bearer challenge, nothing upstream', L.track(async () => {
  await init();
  const user = uniqueUser('digest');
  const { res, callId } = await A.register(c, user, { expires: 600, auth: `Digest username="${user}@ims.example", realm="ims.example", uri="sip:ims.example", nonce="", response="", integrity-protected="auth-done"` });
  A.assertRefusal(L.gw, res, { code: 401, error: null, what: 'a client claiming tna itself' });
  await A.assertNothingUpstream(L, callId, user);
}));

for (const [label, make, warning] of cases) {
  test(`REGISTER with a token that is ${label} -> 401 error="invalid_token" + Warning, nothing upstream`, L.track(async () => {
  await init();
    const user = uniqueUser('bad');
    const auth = await make(user);
    const { res, callId } = await A.register(c, user, { expires: 600, auth });
    A.assertRefusal(L.gw, res, { code: 401, error: 'invalid_token', warning, what: label });
    await A.assertNothingUpstream(L, callId, user);
  }));
}

for (const [label, scope] of [['scope "profile" only', 'profile'], ['no scope claim', undefined], ['scope "sips" (not "sip")', 'sips']]) {
  test(`REGISTER with a valid token with ${label} -> 403 error="insufficient_scope" (RFC 6750 §3.1), nothing upstream`, L.track(async () => {
  await init();
    const user = uniqueUser('scope');
    const token = signJwt(hdr(ours.kid), L.gw.claims(impu(user), { scope }), ours.key);
    const { res, callId } = await A.register(c, user, { expires: 600, auth: `Bearer ${token}` });
    A.assertRefusal(L.gw, res, { code: 403, error: 'insufficient_scope', what: label });
    await A.assertNothingUpstream(L, callId, user);
  }));
}

test('`imsgw token mint --scope profile` -> 403 insufficient_scope as well', L.track(async () => {
  await init();
  const user = uniqueUser('mintscope');
  const token = await L.mint(user, { scope: 'profile' });
  const { res, callId } = await A.register(c, user, { expires: 600, auth: `Bearer ${token}` });
  A.assertRefusal(L.gw, res, { code: 403, error: 'insufficient_scope', what: 'minted with scope profile' });
  await A.assertNothingUpstream(L, callId, user);
}));

test('a valid token whose impu is not the To AOR -> 403 with a Warning, no challenge, nothing upstream', L.track(async () => {
  await init();
  const owner = uniqueUser('owner');
  const victim = uniqueUser('victim');
  const token = await L.mint(owner);
  const { res, callId } = await A.register(c, victim, { expires: 600, auth: `Bearer ${token}` });
  A.assertRefusal(L.gw, res, { code: 403, error: false, warning: new RegExp(owner), what: 'impu mismatch' });
  await A.assertNothingUpstream(L, callId, victim);
  assert.deepEqual(await L.kam.bindings(owner), [], 'nor a binding for the token\'s owner');
}));

test('control: the same WebSocket still registers with a valid token afterwards', L.track(async () => {
  await init();
  assert.equal(c.closeInfo, null, `the refusals closed the WebSocket: ${JSON.stringify(c.closeInfo)}`);
  const user = uniqueUser('good');
  const { res, callId } = await A.register(c, user, { expires: 600, auth: `Bearer ${await L.mint(user)}` });
  assert.equal(res.status, 200, res.start);
  assert.ok(A.kamLines(L.kam, callId).length > 0, 'this one reached Kamailio');
  assert.equal((await L.kam.bindings(user)).length, 1);
  const m = await L.gw.metrics();
  const refused = /^imsgw_sip_auth_refused_total(?:\{[^}]*\})? (\d+)/m.exec(m.body);
  assert.ok(refused && Number(refused[1]) >= cases.length + 6, `imsgw_sip_auth_refused_total counts the refusals: ${refused && refused[0]}`);
}));
