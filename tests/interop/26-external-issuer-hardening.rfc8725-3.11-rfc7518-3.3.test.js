'use strict';
// An external issuer's keys and tokens, hardened: RFC 7518 §3.3 (RSA keys of at least 2048
// bits: a 1024-bit key in its JWK Set is never installed) and RFC 8725 §3.11 (explicit typing:
// with `require_typ = "at+jwt"` a token of another `typ`, an ID token say, is not an access
// token). Each refusal is 401 invalid_token and Kamailio receives nothing; the same issuer's
// proper tokens register.
const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const http = require('node:http');
const { useLab, uniqueUser, ports } = require('../lib/lab');
const { signJwt } = require('../lib/imsgw');
const A = require('../lib/auth');

const P = ports(32);
const IDP_PORT = P.base + 60;
const ISSUER = `http://127.0.0.1:${IDP_PORT}`;
const AUD = 'sip:ims.example';

const keys = {
  es: crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }),
  weak: crypto.generateKeyPairSync('rsa', { modulusLength: 1024 }),
  rs: crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }),
};
const jwk = (kid, alg) => ({ ...keys[kid].publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' });
let server;

function token(kid, alg, typ, user) {
  const n = A.now();
  const claims = { iss: ISSUER, aud: AUD, sub: `web-${user}`, impu: `sip:${user}@ims.example`, scope: 'sip', iat: n, nbf: n, exp: n + 300, jti: crypto.randomUUID() };
  const header = { alg, kid, ...(typ ? { typ } : {}) };
  return signJwt(header, claims, keys[kid].privateKey);
}

async function startIdp() {
  const body = JSON.stringify({ keys: [jwk('es', 'ES256'), jwk('weak', 'RS256'), jwk('rs', 'RS256')] });
  server = http.createServer((req, res) => {
    res.writeHead(req.url === '/jwks' ? 200 : 404, { 'content-type': 'application/json' });
    res.end(req.url === '/jwks' ? body : '');
  });
  await new Promise((resolve, reject) => { server.once('error', reject); server.listen(IDP_PORT, '127.0.0.1', resolve); });
}

after(() => new Promise((resolve) => {
  if (!server) return resolve();
  server.close(() => resolve());
  server.closeAllConnections();
}));

const L = useLab({
  name: 'external-hardening', block: 32, transport: 'udp', beforeStart: startIdp,
  kamailio: { defines: ['FR_TIMER=3000', 'LOG_AUTH'] },
  imsgw: { externalIssuers: [{ issuer: ISSUER, jwks_uri: `${ISSUER}/jwks`, audience: AUD, algorithms: ['ES256', 'RS256'], require_typ: 'at+jwt' }] },
});

test('typ at+jwt with an ES256 or a 2048-bit RSA key registers', L.track(async () => {
  const c = await L.raw();
  for (const [kid, alg, typ] of [['es', 'ES256', 'at+jwt'], ['rs', 'RS256', 'application/at+jwt']]) {
    const u = uniqueUser(`hard${kid}`);
    const { res } = await A.register(c, u, { auth: `Bearer ${token(kid, alg, typ, u)}`, expires: 300 });
    assert.equal(res.status, 200, `${kid} ${typ}: ${res.start} ${res.get('Warning')}`);
  }
}));

test('a 1024-bit RSA key, or a token typed as anything but at+jwt -> 401 invalid_token, nothing upstream', L.track(async () => {
  const c = await L.raw();
  for (const [kid, alg, typ, why] of [
    ['weak', 'RS256', 'at+jwt', /key id|refused/],
    ['es', 'ES256', 'JWT', /typ|type/],
    ['es', 'ES256', null, /typ|type/],
    ['rs', 'RS256', 'id_token+jwt', /typ|type/],
  ]) {
    const u = uniqueUser('hardbad');
    const { res, callId } = await A.register(c, u, { auth: `Bearer ${token(kid, alg, typ, u)}`, expires: 300 });
    A.assertRefusal(L.gw, res, { code: 401, error: 'invalid_token', warning: why, what: `${kid} typ=${typ}` });
    await A.assertNothingUpstream(L, callId, u);
  }
}));
