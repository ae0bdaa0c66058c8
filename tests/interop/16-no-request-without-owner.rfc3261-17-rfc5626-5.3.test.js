'use strict';
// No request without an owner. RFC 3261 §17.2.3 matches ACK, CANCEL and retransmissions to a
// transaction by what the client wrote (branch, sent-by), so the edge adds the link they came
// on: an ACK goes upstream only when it belongs to a registration or call of its own WebSocket
// (an ACK cannot be answered: the rest are dropped), a CANCEL only reaches that WebSocket's own
// pending INVITE (else 481), a response only counts from the link its request went down
// (§18.1.2), and a request from the IMS side that names two flows is refused (RFC 5626 §5.3).
// Asserted on what the real Kamailio received (-A LOG_MSG) and what the other users saw.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const dgram = require('node:dgram');
const { useLab, uniqueUser } = require('../lib/lab');
const { DOMAIN, sleep, within } = require('../lib/env');
const A = require('../lib/auth');

const L = useLab({ name: 'owner', block: 28, transport: 'udp', kamailio: { defines: ['FR_TIMER=3000', 'LOG_MSG'] } });
const aor = (u) => `sip:${u}@${DOMAIN}`;

/** Asserts Kamailio received nothing for the Call-ID (after a settle). */
async function kamSawNothing(callId, what) {
  await sleep(300);
  assert.deepEqual(A.kamMessages(L.kam, callId).map((m) => m.start), [], `${what}: Kamailio received it`);
}

test('ACK on a fresh, unregistered WebSocket with any From and its own Route: Kamailio never sees it', L.track(async () => {
  const alice = await L.ua('alice'); // a registered user the stranger pretends to be
  const stranger = await L.raw();
  for (const [from, toTag] of [[alice.user, 'x1'], [uniqueUser('nobody'), 'x2'], [alice.user, null]]) {
    const callId = `ack-${uniqueUser('ci')}`;
    const text = stranger.build('ACK', aor(uniqueUser('victim')), {
      user: from, cseq: '1 ACK',
      over: { 'Call-ID': callId, To: `<${aor('victim')}>${toTag ? `;tag=${toTag}` : ''}` },
      extra: [`Route: <sip:127.0.0.1:${L.p.ims};lr>`],
    });
    stranger.send(text);
    await kamSawNothing(callId, `stranger's ACK (From ${from})`);
  }
  // and no answer: an ACK is never answered; the operator sees them counted
  assert.deepEqual(stranger.received.filter((m) => m.status), []);
  assert.equal(await L.gw.counter('imsgw_sip_unowned_ack_dropped_total'), 3);
}));

test('CANCEL from another WebSocket for a pending INVITE: 481, nothing upstream; the owner\'s CANCEL works', L.track(async () => {
  const bob = await L.ua('bob', { onInvite: () => 'manual' });
  const c = await L.raw();
  const u = uniqueUser('caller');
  const r = await A.register(c, u, { auth: `Bearer ${await L.mint(u)}`, expires: 300 });
  assert.equal(r.res.status, 200, r.res.start);
  const callId = `inv-${uniqueUser('ci')}`;
  const sdp = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n';
  const invite = c.build('INVITE', bob.aor, {
    user: u, over: { 'Call-ID': callId, To: `<${bob.aor}>` }, body: sdp,
    extra: [`Contact: <sip:${u}@${c.host};transport=ws>`, 'Content-Type: application/sdp'],
  });
  const from = c.received.length;
  c.send(invite);
  await c.next((m) => m.status === 180, 5000, '180 Ringing', from);
  await bob.until(() => bob.incomingSessions[0], 3000, 'the INVITE');
  const cancel = invite.replace(/^INVITE /, 'CANCEL ').replace(/CSeq: 1 INVITE/, 'CSeq: 1 CANCEL')
    .replace(/\r\nContent-Type: application\/sdp/, '').replace(/Content-Length: \d+\r\n\r\n[\s\S]*$/, 'Content-Length: 0\r\n\r\n');
  const stranger = await L.raw();
  const res = await stranger.request(cancel, 4000);
  assert.equal(res.status, 481, res.start);
  assert.equal(await L.gw.counter('imsgw_sip_unmatched_cancel_481_total'), 1);
  await sleep(300);
  assert.deepEqual(A.kamMessages(L.kam, callId).filter((m) => m.method === 'CANCEL'), [], 'no CANCEL reached Kamailio');
  assert.equal(bob.incomingSessions[0].events.filter(([e]) => e === 'failed' || e === 'ended').length, 0, 'bob still rings');
  // the caller's own CANCEL: 200, Kamailio gets it, bob's call ends, the caller gets 487
  const own = await c.request(cancel, 4000);
  assert.equal(own.status, 200, own.start);
  await A.waitKamRequest(L, callId, 'CANCEL');
  await within(bob.incomingSessions[0].done, 4000, 'bob\'s call ends');
  await c.next((m) => m.status === 487, 4000, '487 for the INVITE', from);
}));

test('a second WebSocket cannot answer a MESSAGE pending on someone else\'s connection', L.track(async () => {
  const bob = await L.ua('bob');
  const c = await L.raw();
  const u = uniqueUser('target');
  const r = await A.register(c, u, { auth: `Bearer ${await L.mint(u)}`, expires: 300 });
  assert.equal(r.res.status, 200, r.res.start);
  const n = c.received.length;
  const outcome = bob.message(aor(u), 'who answers?');
  const req = await c.next((m) => m.method === 'MESSAGE', 4000, 'the MESSAGE', n);
  // a stranger answers 200 with the exact Via, Call-ID and CSeq the target got
  const stranger = await L.raw();
  const copy = (name) => req.get(name).map((v) => `${name}: ${v}`);
  const forged = ['SIP/2.0 200 OK', ...copy('Via'), ...copy('From'), `To: ${req.get('To')[0]};tag=forged`,
    ...copy('Call-ID'), ...copy('CSeq'), 'Content-Length: 0', '', ''].join('\r\n');
  stranger.send(forged);
  await sleep(300);
  assert.equal(await L.gw.counter('imsgw_sip_stray_responses_dropped_total'), 1);
  // the target answers 486 itself: bob must get that, not the stranger's 200
  const real = forged.replace('SIP/2.0 200 OK', 'SIP/2.0 486 Busy Here').replace('tag=forged', 'tag=real');
  c.send(real);
  const got = await outcome;
  assert.equal(got.code, 486, `bob got ${got.code}`);
  const replies = A.kamMessages(L.kam, req.get('Call-ID')[0]).filter((m) => m.dir === 'rpl' && m.status !== 100);
  assert.deepEqual(replies.map((m) => m.status), [486], 'Kamailio received only the real answer');
}));

test('a request from the IMS side whose Route names two flows is refused (403), delivered to neither', L.track(async () => {
  const alice = await L.ua('alice');
  const bob = await L.ua('bob');
  const pathOf = async (ua) => {
    const b = await L.kam.bindings(ua.user);
    assert.equal(b.length, 1, `one binding for ${ua.user}`);
    return /<([^>]+)>/.exec(b[0].Path)[1];
  };
  const [pa, pb] = [await pathOf(alice), await pathOf(bob)];
  assert.notEqual(pa, pb);
  const sock = dgram.createSocket('udp4');
  await new Promise((resolve) => sock.bind(0, '127.0.0.1', resolve));
  const port = sock.address().port;
  const callId = `two-${uniqueUser('ci')}`;
  const msg = [`MESSAGE ${bob.aor} SIP/2.0`,
    `Via: SIP/2.0/UDP 127.0.0.1:${port};branch=z9hG4bK${uniqueUser('b')}`,
    `Route: <${pa}>, <${pb}>`, 'Max-Forwards: 70', `From: <${aor('carol')}>;tag=c1`, `To: <${bob.aor}>`,
    `Call-ID: ${callId}`, 'CSeq: 1 MESSAGE', 'Content-Type: text/plain', 'Content-Length: 2', '', 'hi'].join('\r\n');
  const answer = new Promise((resolve) => sock.once('message', (b) => resolve(b.toString())));
  sock.send(msg, L.p.sip, '127.0.0.1');
  const text = await within(answer, 3000, 'an answer from imsgw');
  sock.close();
  assert.match(text, /^SIP\/2\.0 403 /, text);
  await sleep(300);
  assert.equal(alice.messages.length, 0, 'alice got nothing');
  assert.equal(bob.messages.length, 0, 'bob got nothing');
}));
