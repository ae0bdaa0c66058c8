'use strict';
// The WAF's HTTP side: RFC 8414 metadata, RFC 7517 JWK Set, RFC 7662 introspection (HTTP Basic
// of a client allowed to introspect; an inactive token reveals only {"active":false}) and
// RFC 7009 revocation (Basic for a confidential client, client_id for a public one; 200). Only
// the client a token was issued to (its client_id, RFC 9068 §2.2) may revoke it (RFC 7009 §2.1):
// another public client hears 200 and nothing is revoked, another confidential client gets
// unauthorized_client. Requests without client authentication are refused and change nothing.
// A revoked token is refused at the SIP edge on its next use, and a flow registered with it can
// no longer send.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { useLab, uniqueUser } = require('../lib/lab');
const { httpGet, httpPostForm, signJwt, jwtClaims } = require('../lib/imsgw');
const A = require('../lib/auth');

const L = useLab({
  name: 'introspect-revoke', block: 13, transport: 'udp',
  kamailio: { defines: ['FR_TIMER=3000', 'LOG_AUTH'] },
  imsgw: {
    clients: [
      { id: 'rs', secret: 's3cret', introspect: true },
      { id: 'app', secret: 'app-secret' },
      { id: 'web' },
    ],
  },
});

const basic = (id, secret) => ({ authorization: `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}` });
const introspect = (token, headers = basic('rs', 's3cret')) => httpPostForm(`${L.gw.httpUrl}/oauth/introspect`, { token }, headers);
const revoke = (form, headers = {}) => httpPostForm(`${L.gw.httpUrl}/oauth/revoke`, form, headers);

test('RFC 8414 metadata names the issuer and its endpoints; the JWK Set has the signing key, public only', L.track(async () => {
  const base = L.gw.issuer;
  const r = await httpGet(`${L.gw.httpUrl}/.well-known/oauth-authorization-server`);
  assert.equal(r.status, 200);
  const m = JSON.parse(r.body);
  assert.equal(m.issuer, base);
  assert.equal(m.jwks_uri, `${base}/oauth/jwks`);
  assert.equal(m.introspection_endpoint, `${base}/oauth/introspect`);
  assert.equal(m.revocation_endpoint, `${base}/oauth/revoke`);
  const j = await httpGet(`${L.gw.httpUrl}/oauth/jwks`);
  assert.equal(j.status, 200);
  const { keys } = JSON.parse(j.body);
  const { kid } = await L.gw.signingKey();
  const k = keys.find((x) => x.kid === kid);
  assert.ok(k, `signing kid ${kid} in ${j.body}`);
  assert.equal(k.kty, 'EC');
  assert.equal(k.crv, 'P-256');
  for (const x of keys) assert.equal(x.d, undefined, 'no private key material in the JWK Set');
  // the published key verifies a token the gateway minted
  const t = await L.mint(uniqueUser('jwk'));
  const [h, p, s] = t.split('.');
  assert.equal(JSON.parse(Buffer.from(h, 'base64url')).kid, kid);
  const ok = crypto.verify('sha256', Buffer.from(`${h}.${p}`), { key: crypto.createPublicKey({ key: k, format: 'jwk' }), dsaEncoding: 'ieee-p1363' }, Buffer.from(s, 'base64url'));
  assert.ok(ok, 'the token verifies with the published JWK');
}));

test('introspection of a valid token by client rs -> active with its claims', L.track(async () => {
  const user = uniqueUser('intro');
  const t = await L.mint(user, { ttl: 300 });
  const c = jwtClaims(t);
  const r = await introspect(t);
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.active, true, r.body);
  for (const k of ['sub', 'impu', 'impi', 'scope', 'exp', 'iss', 'jti', 'client_id']) assert.equal(r.json[k], c[k], `${k}: ${r.body}`);
  assert.equal(r.json.impu, `sip:${user}@ims.example`);
  assert.equal(r.json.client_id, 'imsgw-operator', `RFC 7662 §2.2 client_id of an operator-minted token: ${r.body}`);
  assert.ok(r.json.aud === c.aud || (Array.isArray(r.json.aud) && r.json.aud.includes(c.aud)), `aud: ${r.body}`);
}));

test('introspection of garbage, expired and foreign tokens -> only {"active":false}', L.track(async () => {
  const { kid, key } = await L.gw.signingKey();
  const n = A.now();
  const user = uniqueUser('inact');
  const expired = signJwt({ alg: 'ES256', typ: 'at+jwt', kid }, L.gw.claims(`sip:${user}@ims.example`, { iat: n - 900, nbf: n - 900, exp: n - 300 }), key);
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const foreign = signJwt({ alg: 'ES256', typ: 'at+jwt', kid }, L.gw.claims(`sip:${user}@ims.example`), privateKey);
  for (const [what, t] of [['garbage', 'abc.def.ghi'], ['expired', expired], ['wrong key', foreign]]) {
    const r = await introspect(t);
    assert.equal(r.status, 200, `${what}: ${r.body}`);
    assert.deepEqual(r.json, { active: false }, `${what}: ${r.body}`);
  }
}));

for (const [what, headers, codes] of [
  ['no client authentication', {}, [401]],
  ['a wrong secret', basic('rs', 'wrong'), [401]],
  ['an unknown client', basic('nobody', 'x'), [401]],
  ['a client not allowed to introspect', basic('app', 'app-secret'), [401, 403]],
]) {
  test(`introspection with ${what} -> refused, no token information`, L.track(async () => {
    const t = await L.mint(uniqueUser('nointro'));
    const r = await introspect(t, headers);
    assert.ok(codes.includes(r.status), `status ${r.status}: ${r.body}`);
    assert.equal(r.json && r.json.active, undefined, `nothing about the token: ${r.body}`);
    if (r.status === 401) assert.equal(r.json.error, 'invalid_client', r.body);
    assert.doesNotMatch(r.body, /impu|sub|sip:/, r.body);
  }));
}

test('revocation without client authentication -> 401 invalid_client; the token stays active', L.track(async () => {
  const user = uniqueUser('norev');
  const t = await L.mint(user);
  for (const [form, headers] of [[{ token: t }, {}], [{ token: t }, basic('app', 'wrong')], [{ token: t, client_id: 'app' }, {}], [{ token: t, client_id: 'nobody' }, {}]]) {
    const r = await revoke(form, headers);
    assert.equal(r.status, 401, `${JSON.stringify(Object.keys(form))} ${JSON.stringify(headers)}: ${r.status} ${r.body}`);
    assert.equal(r.json && r.json.error, 'invalid_client', r.body);
  }
  assert.equal((await introspect(t)).json.active, true, 'still active');
  const c = await L.raw();
  const { res } = await A.register(c, user, { auth: `Bearer ${t}`, expires: 300 });
  assert.equal(res.status, 200, 'still accepted at the edge');
  await c.close();
}));

for (const [who, owner, form, headers] of [
  ['a public client by client_id', 'web', (t) => ({ token: t, client_id: 'web' }), {}],
  ['a confidential client by HTTP Basic', 'app', (t) => ({ token: t, token_type_hint: 'access_token' }), basic('app', 'app-secret')],
]) {
  test(`revocation by ${who} of its own token -> 200; introspection inactive; the edge refuses the token`, L.track(async () => {
    const user = uniqueUser('rev');
    const t = await L.mint(user, { client_id: owner });
    const r = await revoke(form(t), headers);
    assert.equal(r.status, 200, r.body);
    assert.deepEqual((await introspect(t)).json, { active: false });
    const c = await L.raw();
    const { res, callId } = await A.register(c, user, { auth: `Bearer ${t}`, expires: 300 });
    A.assertRefusal(L.gw, res, { code: 401, error: 'invalid_token', warning: /revoked/i, what: 'revoked token' });
    await A.assertNothingUpstream(L, callId, user);
    // revoking again, or revoking garbage, is still 200 (RFC 7009 §2.2)
    assert.equal((await revoke(form(t), headers)).status, 200);
    assert.equal((await revoke(form('not-a-token'), headers)).status, 200);
    await c.close();
  }));
}

test('RFC 7009 §2.1: a token issued to another client is not revoked: public web -> 200, confidential app -> 400 unauthorized_client; it still registers', L.track(async () => {
  const user = uniqueUser('notyours');
  const refused = async (what, t, form, headers) => {
    const r = await revoke({ token: t, ...form }, headers);
    if (headers.authorization) {
      assert.equal(r.status, 400, `${what}: ${r.status} ${r.body}`);
      assert.equal(r.json && r.json.error, 'unauthorized_client', `${what}: ${r.body}`);
    } else {
      assert.equal(r.status, 200, `${what}: ${r.status} ${r.body}`);
    }
    assert.equal((await introspect(t)).json.active, true, `${what}: still active`);
  };
  const operators = await L.mint(user); // client_id imsgw-operator
  await refused('web, an operator token', operators, { client_id: 'web' }, {});
  await refused('app, an operator token', operators, {}, basic('app', 'app-secret'));
  const webs = await L.mint(user, { client_id: 'web' });
  await refused('app, a token of web', webs, {}, basic('app', 'app-secret'));
  const c = await L.raw();
  for (const [i, t] of [operators, webs].entries()) {
    const { res } = await A.register(c, user, { auth: `Bearer ${t}`, expires: 300, cseq: i + 1 });
    assert.equal(res.status, 200, `still accepted at the edge: ${res.start}`);
  }
  await c.close();
  await assert.rejects(L.gw.mint(`sip:${user}@ims.example`, { client_id: 'nobody' }), /client-id|waf\.clients/, 'minting for a client that does not exist is refused');
}));

test('a flow registered with a token that is then revoked may no longer send: MESSAGE -> 401, nothing upstream', L.track(async () => {
  const user = uniqueUser('flowrev');
  const t = await L.mint(user, { client_id: 'web' });
  const c = await L.raw();
  const reg = await A.register(c, user, { auth: `Bearer ${t}`, expires: 300 });
  assert.equal(reg.res.status, 200, reg.res.start);
  const m1 = await A.message(c, user, 'sip:nobody-here@ims.example');
  assert.ok(A.kamLines(L.kam, m1.callId).length > 0, `before revocation the MESSAGE reaches Kamailio (got ${m1.res.start})`);
  assert.equal(m1.res.status, 404, `Kamailio answers 404 for an unknown user: ${m1.res.start}`);
  assert.equal((await revoke({ token: t, client_id: 'web' })).status, 200);
  const m2 = await A.message(c, user, 'sip:nobody-here@ims.example');
  A.assertRefusal(L.gw, m2.res, { code: 401, error: null, what: 'MESSAGE after revocation' });
  await A.assertNothingUpstream(L, m2.callId);
  await c.close();
}));
