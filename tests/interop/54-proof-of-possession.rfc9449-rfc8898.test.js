'use strict';
// Issue 13 §3 at the SIP edge: a Bearer token bound to the client's key (`cnf.jkt`, RFC 9449
// §6.1, minted here with `imsgw token mint --cnf-jkt`, which refuses a value that is no
// thumbprint) registers only on a WebSocket that
// proves the key: a `Proof: <JWS>` header (typ `sip-pop+jwt`, ES256, the public key as a JWK
// in its header) signed over the REGISTER's method, Request-URI, Call-ID and CSeq, the token's
// hash (`ath`), a time (`iat`) and the nonce imsgw handed that connection in `Proof-Nonce`
// (after RFC 9449 §8's DPoP-Nonce). Block 54, Kamailio with LOG_MSG (what the IMS received):
// - REGISTER without a proof -> 401, `error="use_proof_nonce"`, a Proof-Nonce, a Warning;
// - with a proof made by node:crypto (P-256, raw r||s signature) -> 200 and Kamailio's
//   binding; the Proof header never reaches Kamailio; a later REGISTER on that connection
//   needs none;
// - the token copied to another WebSocket without the key -> 401, and with the copier's own
//   key -> 401 `invalid_proof`: Kamailio never sees those Call-IDs;
// - the first connection's REGISTER, proof and all, replayed on another WebSocket -> 401 (its
//   nonce was given to the first), Kamailio receives nothing more for that Call-ID;
// - a proof made for another CSeq -> 401 `invalid_proof`, then the right one -> 200.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { useLab, uniqueUser } = require('../lib/lab');
const A = require('../lib/auth');

const L = useLab({
  name: 'proof-of-possession', block: 54, transport: 'udp',
  kamailio: { defines: ['FR_TIMER=3000', 'LOG_MSG'] },
});

const RURI = 'sip:ims.example';
const b64u = (b) => Buffer.from(b).toString('base64url');

/** An ES256 key as a WIC would make one: { privateKey, jwk, jkt (RFC 7638 thumbprint) }. */
function proofKey() {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const { kty, crv, x, y } = publicKey.export({ format: 'jwk' });
  const jwk = { kty, crv, x, y };
  // RFC 7638 §3: the required members in lexicographic order, no whitespace.
  const jkt = crypto.createHash('sha256').update(JSON.stringify({ crv, kty, x, y })).digest('base64url');
  return { privateKey, jwk, jkt };
}

/** A SIP proof (compact JWS, ES256 with the r||s signature of RFC 7518 §3.4). */
function sipProof(key, token, { method = 'REGISTER', ruri = RURI, callId, cseq, nonce, iat, jti }) {
  const header = { typ: 'sip-pop+jwt', alg: 'ES256', jwk: key.jwk };
  const claims = {
    jti: jti || crypto.randomUUID(),
    iat: iat || Math.floor(Date.now() / 1000),
    nonce,
    method,
    ruri,
    call_id: callId,
    cseq,
    ath: crypto.createHash('sha256').update(token, 'ascii').digest('base64url'),
  };
  const input = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(claims))}`;
  const sig = crypto.sign('sha256', Buffer.from(input), { key: key.privateKey, dsaEncoding: 'ieee-p1363' });
  return `${input}.${b64u(sig)}`;
}

const newCallId = () => crypto.randomBytes(8).toString('hex');

/** A REGISTER with the bound token and, if given, a proof; o: { callId, cseq, proof }. */
function reg(c, user, token, o) {
  const extra = o.proof ? [`Proof: ${o.proof}`] : [];
  return A.register(c, user, { auth: `Bearer ${token}`, expires: 300, callId: o.callId, cseq: o.cseq, extra });
}

/** The one Proof-Nonce of a response. */
function nonceOf(res) {
  const n = res.get('Proof-Nonce');
  assert.equal(n.length, 1, `one Proof-Nonce: ${res.start}\n${res.headers.map((h) => h.join(': ')).join('\n')}`);
  assert.match(n[0], /^[A-Za-z0-9_-]{32}$/);
  return n[0];
}

/** REGISTER requests Kamailio received for a Call-ID. */
const kamRegisters = (callId) => A.kamMessages(L.kam, callId).filter((m) => m.dir === 'req' && m.method === 'REGISTER');

const alice = uniqueUser('alice');
const key = proofKey();
let token;
let first; // alice's proven connection: { c, callId, cseq, text (the REGISTER with its proof) }

test('1. a bound token without a proof -> 401 use_proof_nonce with a Proof-Nonce; Kamailio sees nothing', L.track(async () => {
  token = await L.mint(alice, { cnf_jkt: key.jkt });
  const payload = JSON.parse(Buffer.from(token.split('.')[1], 'base64url'));
  assert.deepEqual(payload.cnf, { jkt: key.jkt }, 'the token is bound to the key (RFC 9449 §6.1)');
  await assert.rejects(L.mint(alice, { cnf_jkt: 'not-a-thumbprint' }), /--cnf-jkt is not a JWK thumbprint/);
  const c = await L.raw();
  const callId = newCallId();
  const { res } = await reg(c, alice, token, { callId, cseq: 1 });
  A.assertRefusal(L.gw, res, { code: 401, error: 'use_proof_nonce', warning: /has not proven/ });
  nonceOf(res);
  await A.assertNothingUpstream(L, callId, alice);
  first = { c, callId, cseq: 1, nonce: nonceOf(res) };
}));

test('2. with a proof signed over the REGISTER and the nonce -> 200 and Kamailio\'s binding; the next REGISTER needs none', L.track(async () => {
  assert.ok(first, 'needs 1');
  first.cseq = 2;
  const proof = sipProof(key, token, { callId: first.callId, cseq: 2, nonce: first.nonce });
  const r = await reg(first.c, alice, token, { callId: first.callId, cseq: 2, proof });
  assert.equal(r.res.status, 200, `${r.res.start}\n${r.res.get('Warning')}`);
  first.text = r.text;
  const sent = await A.waitKamRequest(L, first.callId, 'REGISTER');
  assert.deepEqual(sent.get('Proof'), [], `the proof is imsgw's, not the IMS's:\n${sent.text}`);
  assert.ok(!sent.text.includes(first.nonce) && !/bearer/i.test(sent.text), sent.text);
  const b = await L.kam.bindings(alice);
  assert.equal(b.length, 1, `Kamailio holds alice's binding:\n${await L.kam.ulDumpText()}`);
  // The connection proved the key: a re-REGISTER with the token alone goes through.
  first.cseq = 3;
  const again = await reg(first.c, alice, token, { callId: first.callId, cseq: 3 });
  assert.equal(again.res.status, 200, again.res.start);
  assert.equal(kamRegisters(first.callId).length, 2);
}));

test('3. the token copied to another WebSocket without the key -> 401; with the copier\'s own key -> 401 invalid_proof; Kamailio never sees those Call-IDs', L.track(async () => {
  assert.ok(first, 'needs 1');
  const thief = await L.raw();
  const callId = newCallId();
  let r = await reg(thief, alice, token, { callId, cseq: 1 });
  A.assertRefusal(L.gw, r.res, { code: 401, error: 'use_proof_nonce', warning: /has not proven/ });
  const nonce = nonceOf(r.res);
  // A perfectly good proof over the thief's own nonce, by the thief's own key.
  const own = proofKey();
  const proof = sipProof(own, token, { callId, cseq: 2, nonce });
  r = await reg(thief, alice, token, { callId, cseq: 2, proof });
  A.assertRefusal(L.gw, r.res, { code: 401, error: 'invalid_proof', warning: /another key than the one the token is bound to/ });
  nonceOf(r.res);
  await A.assertNothingUpstream(L, callId);
}));

test('4. the first connection\'s REGISTER, proof and all, replayed on another WebSocket -> 401; Kamailio receives nothing more', L.track(async () => {
  assert.ok(first && first.text, 'needs 2');
  const before = kamRegisters(first.callId).length;
  const replayer = await L.raw();
  const res = await replayer.request(first.text, 6000);
  A.assertRefusal(L.gw, res, { code: 401, error: 'use_proof_nonce', warning: /not given to this connection/ });
  nonceOf(res);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(kamRegisters(first.callId).length, before, 'no REGISTER reached Kamailio');
}));

test('5. a proof made for another CSeq -> 401 invalid_proof; the right one on the same connection -> 200', L.track(async () => {
  const c = await L.raw();
  const callId = newCallId();
  let r = await reg(c, alice, token, { callId, cseq: 1 });
  const nonce = nonceOf(r.res);
  const wrong = sipProof(key, token, { callId, cseq: 7, nonce });
  r = await reg(c, alice, token, { callId, cseq: 2, proof: wrong });
  A.assertRefusal(L.gw, r.res, { code: 401, error: 'invalid_proof', warning: /for another request.*cseq/ });
  await A.assertNothingUpstream(L, callId);
  const right = sipProof(key, token, { callId, cseq: 3, nonce });
  r = await reg(c, alice, token, { callId, cseq: 3, proof: right });
  assert.equal(r.res.status, 200, `${r.res.start}\n${r.res.get('Warning')}`);
  await A.waitKamRequest(L, callId, 'REGISTER');
}));
