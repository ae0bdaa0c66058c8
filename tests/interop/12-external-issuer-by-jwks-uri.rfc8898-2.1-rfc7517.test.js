'use strict';
// RFC 8898 §2.1 (the authorization server may be another party), RFC 7517 (JWK Set): a small
// authorization server in this test publishes an ES256 and an RS256 key at its jwks_uri;
// imsgw, configured with it as an external issuer, accepts its tokens. The server then rotates
// to a new key (new kid): a token with the new kid makes imsgw fetch the JWK Set again (held at
// most 3 s) and is accepted without restarting imsgw; the dropped key is no longer accepted.
// A second unknown kid within 30 s does not trigger another fetch (rate limit) and is refused.
const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const http = require('node:http');
const { useLab, uniqueUser, ports, waitFor, sleep } = require('../lib/lab');
const { signJwt } = require('../lib/imsgw');
const A = require('../lib/auth');

const P = ports(12);
const IDP_PORT = P.base + 60;
const ISSUER = `http://127.0.0.1:${IDP_PORT}`;
const AUD = 'sip:ims.example';

/** The test's authorization server: its keys, what it publishes, how often it was asked. */
const idp = {
  keys: new Map(), // kid -> { alg, privateKey, jwk }
  published: [], // kids in the JWK Set
  fetches: [], // times of GET /jwks
  server: null,
  add(kid, alg) {
    const { privateKey, publicKey } = alg === 'ES256'
      ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwk = { ...publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
    this.keys.set(kid, { alg, privateKey, jwk });
  },
  token(kid, impu, over = {}) {
    const k = this.keys.get(kid);
    const n = A.now();
    const claims = { iss: ISSUER, aud: AUD, sub: `web-${impu}`, impu, scope: 'sip openid', iat: n, nbf: n, exp: n + 300, jti: crypto.randomUUID(), ...over };
    return signJwt({ alg: k.alg, typ: 'at+jwt', kid }, claims, k.privateKey);
  },
};

async function startIdp() {
  idp.add('es-1', 'ES256');
  idp.add('rs-1', 'RS256');
  idp.published = ['es-1', 'rs-1'];
  idp.server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/jwks') {
      idp.fetches.push(Date.now());
      const body = JSON.stringify({ keys: idp.published.map((k) => idp.keys.get(k).jwk) });
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(body);
      return;
    }
    res.writeHead(404);
    res.end();
  });
  await new Promise((resolve, reject) => {
    idp.server.once('error', reject);
    idp.server.listen(IDP_PORT, '127.0.0.1', resolve);
  });
}

after(() => new Promise((resolve) => {
  if (!idp.server) return resolve();
  idp.server.close(() => resolve());
  idp.server.closeAllConnections(); // imsgw's HTTP client keeps its connection alive
}));

const L = useLab({
  name: 'external-issuer', block: 12, transport: 'udp',
  beforeStart: startIdp, // imsgw fetches the JWK Set at start
  kamailio: { defines: ['FR_TIMER=3000', 'LOG_AUTH'] },
  imsgw: { externalIssuers: [{ issuer: ISSUER, jwks_uri: `${ISSUER}/jwks`, audience: AUD }] },
});

let c;
async function raw() { if (!c) c = await L.raw(); return c; }

async function registerWith(token, user) {
  const { res, callId } = await A.register(await raw(), user, { auth: `Bearer ${token}`, expires: 300 });
  return { res, callId };
}

test('imsgw fetches the JWK Set at start (before any token asks for it)', L.track(async () => {
  // imsgw fetches before it serves, so the keys are there by the time /healthz answers and the
  // first token below does not spend the issuer's refetch allowance (one per 30 s)
  assert.match(L.gw.log(), /fetched external JWKS/);
  assert.equal(idp.fetches.length, 1, 'one GET /jwks at start-up');
}));

for (const kid of ['es-1', 'rs-1']) {
  test(`a token of the external issuer signed ${kid.startsWith('es') ? 'ES256' : 'RS256'} (kid ${kid}) -> 200, binding, tna for impi user@host`, L.track(async () => {
    const user = uniqueUser(`ext${kid.slice(0, 2)}`);
    const { res, callId } = await registerWith(idp.token(kid, `sip:${user}@ims.example`), user);
    assert.equal(res.status, 200, `${res.start} ${res.get('Warning')}\nimsgw log tail:\n${L.gw.log().slice(-1500)}`);
    assert.equal((await L.kam.bindings(user)).length, 1);
    const [l] = await A.waitKamAuth(L, callId);
    assert.match(A.field(l, 'auth'), new RegExp(`^Digest username="${user}@ims\\.example", .*integrity-protected="auth-done"$`), l);
    assert.doesNotMatch(l, /Bearer/);
  }));
}

test('the external issuer\'s token with a wrong audience -> 401 invalid_token, nothing upstream', L.track(async () => {
  const user = uniqueUser('extaud');
  const { res, callId } = await registerWith(idp.token('es-1', `sip:${user}@ims.example`, { aud: 'sip:elsewhere.example' }), user);
  A.assertRefusal(L.gw, res, { code: 401, error: 'invalid_token', warning: /audience/i });
  await A.assertNothingUpstream(L, callId, user);
}));

test('the issuer rotates to a new kid: its token is accepted without restarting imsgw; the old kid is dropped', L.track(async () => {
  const pid = L.gw.child.pid;
  idp.add('es-2', 'ES256');
  idp.published = ['es-2', 'rs-1'];
  const before = idp.fetches.length;
  const user = uniqueUser('extrot');
  const t0 = Date.now();
  const { res } = await registerWith(idp.token('es-2', `sip:${user}@ims.example`), user);
  const ms = Date.now() - t0;
  assert.equal(res.status, 200, `${res.start} ${res.get('Warning')} after ${ms} ms; fetches ${before} -> ${idp.fetches.length}\nimsgw log tail:\n${L.gw.log().slice(-1500)}`);
  assert.equal(idp.fetches.length, before + 1, 'exactly one JWKS fetch for the unknown kid');
  assert.ok(ms < 3000, `held ${ms} ms (at most 3 s)`);
  assert.equal((await L.kam.bindings(user)).length, 1);
  assert.equal(L.gw.child.pid, pid);
  assert.equal(L.gw.exit, null, 'imsgw was not restarted');

  // es-1 is no longer published: its tokens are refused now (without another fetch: rate limit)
  const old = uniqueUser('extold');
  const r2 = await registerWith(idp.token('es-1', `sip:${old}@ims.example`), old);
  A.assertRefusal(L.gw, r2.res, { code: 401, error: 'invalid_token', warning: /key/i, what: 'dropped kid es-1' });
  await A.assertNothingUpstream(L, r2.callId, old);
}));

test('another rotation within 30 s: no second fetch (at most one per 30 s per issuer), the new kid is refused', L.track(async () => {
  idp.add('es-3', 'ES256');
  idp.published = ['es-3', 'es-2', 'rs-1'];
  const before = idp.fetches.length;
  const user = uniqueUser('extrate');
  const t0 = Date.now();
  const { res, callId } = await registerWith(idp.token('es-3', `sip:${user}@ims.example`), user);
  A.assertRefusal(L.gw, res, { code: 401, error: 'invalid_token', warning: /key/i, what: 'es-3 within 30 s' });
  assert.ok(Date.now() - t0 < 1000, 'refused at once, not held');
  assert.equal(idp.fetches.length, before, 'no JWKS fetch');
  await A.assertNothingUpstream(L, callId, user);
  // es-2 keeps working
  const u2 = uniqueUser('extstill');
  const r2 = await registerWith(idp.token('es-2', `sip:${u2}@ims.example`), u2);
  assert.equal(r2.res.status, 200, r2.res.start);
}));
