'use strict';
// The WIC with `wwsf.proof_of_possession = true` (issue 13 §3) in headless Chromium against
// imsgw and Kamailio (LOG_MSG), block 55:
// - sign-in: the page's token requests carry a DPoP proof (RFC 9449) by a Web Crypto key that
//   never leaves the page, and its access token is bound to that key (`cnf.jkt`);
// - the REGISTER with the bound token alone is answered 401 `use_proof_nonce` with a
//   `Proof-Nonce`; the page answers with a `Proof` and is Registered; Kamailio never receives
//   the Proof;
// - imsgw restarted under the page (its WebSocket lost): the new connection asks again and
//   the page proves its key again, Registered without signing in again.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { wicLab } = require('../lib/wic');
const { sleep } = require('../lib/env');

const W = wicLab({
  name: 'wic-proof-of-possession',
  block: 55,
  kamDefines: ['LOG_MSG'],
  wwsf: { proof_of_possession: true },
});
const L = W.L;

let page;
const dpop = []; // DPoP headers the page sent to the token endpoint

function jwtPart(jws, i) {
  return JSON.parse(Buffer.from(jws.split('.')[i], 'base64url').toString('utf8'));
}

/** Every REGISTER Kamailio received, decoded. */
function kamRegisters() {
  return L.kam.log().split('\n').filter((l) => l.includes('IMSMSG dir=req'))
    .map((l) => Buffer.from(l.split('b64=')[1] || '', 'base64').toString('utf8'))
    .filter((t) => t.startsWith('REGISTER'));
}

async function proofRefusals() {
  const m = /^imsgw_sip_auth_refused_total (\d+)$/m.exec((await L.gw.metrics()).body);
  return m ? Number(m[1]) : 0;
}

test('1. sign-in: DPoP-bound tokens; the REGISTER proves the key after a Proof-Nonce; Registered, and Kamailio never sees the Proof', L.track(async () => {
  page = await W.newPage({ label: 'alice' });
  page.on('request', (r) => {
    if (/\/oauth\/token$/.test(new URL(r.url()).pathname) && r.headers().dpop) dpop.push(r.headers().dpop);
  });
  await W.el(page, 'signin-button').waitFor({ state: 'visible', timeout: 10000 });
  await W.signIn(page, 'alice');
  await W.waitRegistered(page, 20000, 'Registered with a proof');
  assert.equal(await page.evaluate(() => document.body.dataset.pop), 'on');
  assert.equal(dpop.length, 1, 'the code exchange carried a DPoP proof');
  const h = jwtPart(dpop[0], 0);
  assert.equal(h.typ, 'dpop+jwt');
  assert.equal(h.alg, 'ES256');
  assert.deepEqual(Object.keys(h.jwk).sort(), ['crv', 'kty', 'x', 'y'], 'a public key only');
  assert.ok(await proofRefusals() >= 1, 'the first REGISTER was asked for a proof');
  const regs = kamRegisters();
  assert.ok(regs.length >= 1, 'Kamailio received the REGISTER');
  for (const t of regs) assert.doesNotMatch(t, /^Proof:/mi, t);
  assert.equal((await W.bindings('alice')).length, 1);
  W.assertClean(page);
}));

test('2. the connection lost (imsgw restarted): the new connection is asked again and the page proves its key again', L.track(async () => {
  assert.ok(page, 'needs 1');
  const before = await proofRefusals().catch(() => 0);
  const exit = await L.gw.stop();
  assert.equal(exit && exit.code, 0, JSON.stringify(exit));
  await W.waitText(page, 'reg-state', (t) => t !== 'Registered', 10000, 'the page notices');
  await sleep(2000);
  await L.gw.start();
  await W.waitRegistered(page, 40000, 'Registered again with a new proof');
  assert.ok(await proofRefusals() >= 1, `the new connection was asked for a proof (counter restarted from ${before})`);
  assert.equal((await W.bindings('alice')).length, 1);
  assert.equal(dpop.length, 1, 'no new sign-in or token was needed');
}));
