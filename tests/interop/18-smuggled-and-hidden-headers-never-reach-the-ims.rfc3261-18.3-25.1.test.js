'use strict';
// RFC 3261 §18.3 and §25.1 over a TCP upstream, where the P-CSCF frames messages by
// Content-Length: a WebSocket message that carries a second, complete request after the body
// its Content-Length declares must not deliver that request (with its forged identity) to the
// IMS; and a bare CR inside a header line, which a parser downstream could read as a line end,
// is refused (400) rather than forwarded. Asserted on what Kamailio (-A LOG_MSG) received.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { useLab, uniqueUser } = require('../lib/lab');
const { DOMAIN, sleep } = require('../lib/env');
const A = require('../lib/auth');

const L = useLab({ name: 'smuggle', block: 33, transport: 'tcp', kamailio: { defines: ['FR_TIMER=3000', 'LOG_MSG'] } });
const aor = (u) => `sip:${u}@${DOMAIN}`;

test('a second request after the body never reaches Kamailio; the first goes, asserted', L.track(async () => {
  const bob = await L.ua('bob');
  const c = await L.raw();
  const u = uniqueUser('smuggler');
  const r = await A.register(c, u, { auth: `Bearer ${await L.mint(u)}`, expires: 300 });
  assert.equal(r.res.status, 200, r.res.start);
  const callId = `outer-${uniqueUser('ci')}`;
  const hidden = `hidden-${uniqueUser('ci')}`;
  const smuggled = [`MESSAGE ${bob.aor} SIP/2.0`,
    `Via: SIP/2.0/TCP 127.0.0.1:${L.p.sip};branch=z9hG4bK${uniqueUser('s')}`,
    'Max-Forwards: 70', `From: <${aor('boss')}>;tag=s1`, `To: <${bob.aor}>`, `Call-ID: ${hidden}`,
    'CSeq: 1 MESSAGE', `P-Asserted-Identity: <${aor('boss')}>`,
    `Authorization: Digest username="boss@${DOMAIN}", realm="${DOMAIN}", integrity-protected="auth-done"`,
    'Content-Type: text/plain', 'Content-Length: 8', '', 'hi boss!'].join('\r\n');
  const outer = c.build('MESSAGE', bob.aor, {
    user: u, over: { 'Call-ID': callId, To: `<${bob.aor}>` }, body: 'hi', extra: ['Content-Type: text/plain'],
  });
  const n = bob.messages.length;
  const res = await c.request(outer + smuggled, 6000);
  assert.equal(res.status, 200, res.start);
  const m = await A.waitKamRequest(L, callId, 'MESSAGE');
  assert.doesNotMatch(m.text, /boss|hidden-/, m.text);
  await sleep(300);
  assert.deepEqual(A.kamMessages(L.kam, hidden).map((x) => x.start), [], 'the smuggled request reached Kamailio');
  assert.equal(bob.messages.length, n + 1, 'bob got exactly the outer MESSAGE');
  assert.equal(bob.messages[n].from, aor(u));
}));

test('a bare CR next to the colon or inside a header value -> 400, nothing upstream', L.track(async () => {
  const c = await L.raw();
  const u = uniqueUser('crlf');
  const r = await A.register(c, u, { auth: `Bearer ${await L.mint(u)}`, expires: 300 });
  assert.equal(r.res.status, 200, r.res.start);
  for (const line of [`Subject:\rP-Asserted-Identity: <${aor('boss')}>`, `X-A: a\rP-Asserted-Identity: <${aor('boss')}>`]) {
    const { res, callId } = await A.message(c, u, aor(uniqueUser('x')), { extra: [line] });
    assert.equal(res.status, 400, `${JSON.stringify(line)}: ${res.start}`);
    await A.assertNothingUpstream(L, callId);
  }
}));
