'use strict';
// media.max_calls_per_user (block 50, `[media]` on with max_calls_per_user = 2, Kamailio
// LOG_MSG): one signed-in person cannot hold more media sessions than that, whatever number of
// WebSockets they open, in either direction. alice registers on two connections; bob and carol
// on one each. bob lets calls ring (180, and 487 when cancelled). Both legs of a call between
// two of imsgw's users are anchored, so each call counts for its caller and for its callee.
// Assertions are on what Kamailio received:
// - alice's INVITEs to bob from connection 1, then connection 2, both reach Kamailio;
// - her third, on either connection, gets 403 with a Warning naming media.max_calls_per_user,
//   Kamailio never sees its Call-ID, and no media session is made for it; the same on a third
//   connection that never registers and carries her token in each INVITE;
// - carol calls alice: Kamailio relays imsgw's 486 (RFC 3261 §21.4.24) and neither of alice's
//   connections is offered the call;
// - alice cancels one call (both its sessions go): then carol's call reaches her.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { useLab, uniqueUser } = require('../lib/lab');
const { DOMAIN, sleep } = require('../lib/env');
const A = require('../lib/auth');

const L = useLab({
  name: 'media-calls-per-person', block: 50, kamailio: { defines: ['LOG_MSG'] },
  media: { max_calls_per_user: 2 },
});

// A WebRTC offer the eIMS-AGW accepts (nobody will ever connect to it: the calls only ring).
const fp = Array.from({ length: 32 }, (_, i) => (i * 7 + 16).toString(16).padStart(2, '0').toUpperCase()).join(':');
const OFFER = [
  'v=0', 'o=- 4611 2 IN IP4 127.0.0.1', 's=-', 't=0 0', 'a=group:BUNDLE 0', 'a=msid-semantic: WMS',
  'm=audio 9 UDP/TLS/RTP/SAVPF 8 0', 'c=IN IP4 0.0.0.0', 'a=rtcp:9 IN IP4 0.0.0.0',
  'a=ice-ufrag:Xk3f', 'a=ice-pwd:0123456789abcdefghijklmn', `a=fingerprint:sha-256 ${fp}`,
  'a=setup:actpass', 'a=mid:0', 'a=sendrecv', 'a=rtcp-mux',
  'a=rtpmap:8 PCMA/8000', 'a=rtpmap:0 PCMU/8000', '',
].join('\r\n');

let alice1; let alice2; let bob; let carol; let alice; let bobUser; let carolUser;
const aliceCalls = [];

async function mediaSessions() {
  const m = /^imsgw_media_sessions (\d+)$/m.exec((await L.gw.metrics()).body);
  return m ? Number(m[1]) : NaN;
}

function invite(c, from, to, callId) {
  return c.build('INVITE', `sip:${to}@${DOMAIN}`, {
    user: from, over: { 'Call-ID': callId, To: `<sip:${to}@${DOMAIN}>` }, body: OFFER,
    extra: [`Contact: <sip:${from}@${c.host};transport=ws;ob>`, 'Content-Type: application/sdp'],
  });
}

/** A response to `req` (parsed) in the callee's name. */
function reply(req, code, reason, tag) {
  const h = (n) => req.get(n).map((v) => `${n}: ${v}`);
  return [`SIP/2.0 ${code} ${reason}`, ...h('Via'), ...h('From'),
    `To: ${req.get('To')[0]}${tag ? `;tag=${tag}` : ''}`, ...h('Call-ID'), ...h('CSeq'),
    'Content-Length: 0', '', ''].join('\r\n');
}

/** bob's phone: rings on every INVITE; a CANCEL gets 200 and its INVITE 487 (RFC 3261 §9.2). */
function ringOnly(c) {
  const invites = new Map();
  c.ws.on('message', (data) => {
    const m = require('../lib/wsclient').parseSip(data.toString('utf8'));
    const id = m.method && m.get('Call-ID')[0];
    if (m.method === 'INVITE' && !invites.has(id)) {
      invites.set(id, m);
      c.send(reply(m, 180, 'Ringing', 'b0b'));
    } else if (m.method === 'CANCEL') {
      c.send(reply(m, 200, 'OK', 'b0b'));
      if (invites.has(id)) c.send(reply(invites.get(id), 487, 'Request Terminated', 'b0b'));
    }
  });
}

test('0. alice on two connections, bob and carol on one each', L.track(async () => {
  alice = uniqueUser('alice');
  bobUser = uniqueUser('bob');
  carolUser = uniqueUser('carol');
  alice1 = await L.raw();
  alice2 = await L.raw();
  bob = await L.raw();
  carol = await L.raw();
  ringOnly(bob);
  for (const [c, u] of [[alice1, alice], [alice2, alice], [bob, bobUser], [carol, carolUser]]) {
    const r = await A.register(c, u, { auth: `Bearer ${await L.mint(u)}`, expires: 300 });
    assert.equal(r.res.status, 200, r.res.start);
  }
}));

test('1. two calls, one per connection, reach the IMS; a third on either gets 403 and nothing upstream', L.track(async () => {
  for (const c of [alice1, alice2]) {
    const callId = `ok-${uniqueUser('ci')}`;
    aliceCalls.push({ c, callId, text: invite(c, alice, bobUser, callId) });
    c.send(aliceCalls[aliceCalls.length - 1].text);
    await A.waitKamRequest(L, callId, 'INVITE', 5000);
    // bob is offered it (and lets it ring).
    await bob.next((m) => m.method === 'INVITE' && m.get('Call-ID')[0] === callId, 5000, `bob offered ${callId}`);
  }
  // Each call has two anchored legs: alice's and bob's.
  assert.equal(await mediaSessions(), 4);
  for (const c of [alice1, alice2]) {
    const callId = `over-${uniqueUser('ci')}`;
    const res = await c.request(invite(c, alice, bobUser, callId), 5000);
    assert.equal(res.status, 403, res.start);
    assert.match(res.get('Warning').join(' '), /media\.max_calls_per_user/);
    await A.assertNothingUpstream(L, callId);
  }
  assert.equal(await mediaSessions(), 4, 'no session for the refused calls');
}));

test('1b. a third connection that never registers, with a token in each INVITE, is counted too: 403, nothing upstream', L.track(async () => {
  // RFC 8898 lets a request carry its own token; the cap follows the identity that authorised
  // the call, not the connection's registration.
  const c = await L.raw();
  const token = await L.mint(alice);
  for (let i = 0; i < 2; i++) {
    const callId = `tok-${uniqueUser('ci')}`;
    const text = invite(c, alice, bobUser, callId).replace('Content-Type: application/sdp', `Authorization: Bearer ${token}\r\nContent-Type: application/sdp`);
    const res = await c.request(text, 5000);
    assert.equal(res.status, 403, res.start);
    assert.match(res.get('Warning').join(' '), /media\.max_calls_per_user/);
    await A.assertNothingUpstream(L, callId);
  }
  assert.equal(await mediaSessions(), 4, 'no session for the refused calls');
  c.close();
}));

test('2. carol calls alice while she has two: 486 through Kamailio, neither connection offered it', L.track(async () => {
  const callId = `in-${uniqueUser('ci')}`;
  const from = [alice1.received.length, alice2.received.length];
  const res = await carol.request(invite(carol, carolUser, alice, callId), 8000);
  assert.equal(res.status, 486, res.start);
  const kam = A.kamMessages(L.kam, callId);
  assert.ok(kam.some((m) => m.dir === 'rpl' && m.status === 486), 'Kamailio received the 486 from imsgw');
  await sleep(200);
  for (const [i, c] of [alice1, alice2].entries()) {
    assert.ok(!c.received.slice(from[i]).some((m) => m.get('Call-ID')[0] === callId), 'alice was never offered the call');
  }
  // carol's own offer made a session for her leg, released with the 486.
  const end = Date.now() + 3000;
  while (await mediaSessions() !== 4) {
    assert.ok(Date.now() < end, `media sessions ${await mediaSessions()}, not 4`);
    await sleep(100);
  }
}));

test('3. alice cancels one call: carol\'s next call reaches her', L.track(async () => {
  const { c, callId, text } = aliceCalls[0];
  const branch = /branch=([^;\s\r]+)/.exec(text)[1];
  const via = /^Via: .*$/m.exec(text)[0];
  const cancel = [`CANCEL sip:${bobUser}@${DOMAIN} SIP/2.0`, via, 'Max-Forwards: 69',
    `To: <sip:${bobUser}@${DOMAIN}>`, `From: <sip:${alice}@${DOMAIN}>;tag=${c.tag}`, `Call-ID: ${callId}`,
    'CSeq: 1 CANCEL', 'Content-Length: 0', '', ''].join('\r\n');
  c.send(cancel);
  await c.next((m) => m.status === 487 && m.get('Via').some((v) => v.includes(branch)), 8000, '487 to the cancelled INVITE');
  const end = Date.now() + 5000;
  while (await mediaSessions() !== 2) {
    assert.ok(Date.now() < end, `media sessions ${await mediaSessions()}, not 2`);
    await sleep(100);
  }
  const inId = `in2-${uniqueUser('ci')}`;
  carol.send(invite(carol, carolUser, alice, inId));
  const offered = async () => {
    const e = Date.now() + 8000;
    for (;;) {
      const hit = [...alice1.received, ...alice2.received].find((m) => m.method === 'INVITE' && m.get('Call-ID')[0] === inId);
      if (hit) return hit;
      assert.ok(Date.now() < e, 'alice offered the call');
      await sleep(100);
    }
  };
  const inv = await offered();
  assert.match(inv.body, /UDP\/TLS\/RTP\/SAVPF/, 'alice gets a WebRTC offer from the eIMS-AGW');
}));
