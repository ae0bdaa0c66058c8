'use strict';
// Each kind of bad input on one WebSocket gets its own specific error, and nothing else is
// disturbed: after each one, a second, registered JsSIP client on the same imsgw still receives
// a MESSAGE sent by sipp from the IMS side.
//   - not SIP at all               -> WebSocket close 1002 (RFC 6455 §7.4.1 protocol error)
//   - broken CSeq / CSeq mismatch / no Call-ID -> 400 Bad Request + Warning: 399 imsgw "..."
//                                     (RFC 3261 §8.2.2 / §20.43), socket stays open
//   - message over max_message_size -> close 1009 (RFC 6455 §7.4.1 message too big)
//   - upgrade without subprotocol `sip` -> HTTP 400 naming it (RFC 7118 §4.1)
const { test } = require('node:test');
const assert = require('node:assert/strict');
const WebSocket = require('ws');
const { useLab, sleep } = require('../lib/lab');
const { tryUpgrade } = require('../lib/wsclient');
const { assertRegisteredWithPath, assertIncomingMessage } = require('../lib/checks');

const MAX = 8192;
const L = useLab({ name: 'bad-input', block: 7, transport: 'udp', imsgw: { maxMessageSize: MAX } });
let good;

/** The bystander is unaffected: still connected, never closed, gets a MESSAGE from the IMS side. */
async function bystanderStillWorks() {
  assert.deepEqual(good.socket.closes, [], 'the good client\'s WebSocket was never closed');
  assert.ok(good.ua.isRegistered(), 'the good client is still registered');
  await assertIncomingMessage(L, good);
}

test('a second client registers and receives a MESSAGE (baseline)', L.track(async () => {
  good = await L.ua('bystander');
  await assertRegisteredWithPath(L, good);
  await assertIncomingMessage(L, good);
}));

test('not SIP at all -> close 1002', L.track(async () => {
  const c = await L.raw();
  c.send('GET / HTTP/1.1\r\nHost: nonsense\r\n\r\n\u0000\u0001 this is not SIP');
  const closed = await c.closed;
  assert.equal(closed.code, 1002, `close code ${closed.code} ${closed.reason}`);
  assert.match(closed.reason, /malformed SIP message/);
  assert.deepEqual(c.received.map((m) => m.start), [], 'no SIP response to garbage');
  await bystanderStillWorks();
}));

for (const [what, build, warning] of [
  ['a CSeq that is not a number', (c) => c.build('MESSAGE', 'sip:x@ims.example', { cseq: 'one MESSAGE', body: 'x', extra: ['Content-Type: text/plain'] }), /cseq/i],
  ['a CSeq whose method differs from the request\'s', (c) => c.build('MESSAGE', 'sip:x@ims.example', { cseq: '1 INVITE', body: 'x', extra: ['Content-Type: text/plain'] }), /cseq|method/i],
  ['no Call-ID', (c) => c.build('MESSAGE', 'sip:x@ims.example', { over: { 'Call-ID': null }, body: 'x', extra: ['Content-Type: text/plain'] }), /call-id/i],
]) {
  test(`request with ${what} -> 400 with Warning; socket stays open`, L.track(async () => {
    const c = await L.raw();
    const text = build(c);
    const res = await c.request(text, 3000).catch((e) => {
      throw new Error(`${e.message}; close=${JSON.stringify(c.closeInfo)}; sent:\n${text}\nimsgw log tail:\n${L.gw.log().slice(-1500)}`);
    });
    assert.equal(res.status, 400, `got ${res.start}`);
    const warnings = res.get('Warning');
    assert.equal(warnings.length, 1, `one Warning header, got ${JSON.stringify(warnings)}`);
    assert.match(warnings[0], /^399 imsgw "[^"]+"$/, 'Warning: 399 imsgw "<reason>" (RFC 3261 §20.43)');
    assert.match(warnings[0], warning, `the reason names the problem: ${warnings[0]}`);
    await sleep(200);
    assert.equal(c.closeInfo, null, 'a parseable but invalid request does not close the socket');
    assert.equal(c.ws.readyState, WebSocket.OPEN);
    await c.close();
    await bystanderStillWorks();
  }));
}

test(`message over max_message_size (${MAX}) -> close 1009`, L.track(async () => {
  const c = await L.raw();
  const body = 'x'.repeat(MAX + 1000);
  c.send(c.build('MESSAGE', 'sip:x@ims.example', { body, extra: ['Content-Type: text/plain'] }));
  const closed = await c.closed;
  assert.equal(closed.code, 1009, `close code ${closed.code} ${closed.reason}`);
  assert.deepEqual(c.received.map((m) => m.start), [], 'no SIP response to an oversize message');
  await bystanderStillWorks();
}));

test('a message just under max_message_size is accepted (the limit is not off by much)', L.track(async () => {
  const c = await L.raw();
  const probe = c.build('MESSAGE', 'sip:x@ims.example', { body: '', extra: ['Content-Type: text/plain'] });
  const body = 'y'.repeat(MAX - Buffer.byteLength(probe) - 64);
  const text = c.build('MESSAGE', `sip:${good.user}@ims.example`, { user: 'raw', body, extra: ['Content-Type: text/plain'] });
  assert.ok(Buffer.byteLength(text) <= MAX);
  c.send(text);
  // some final response comes back (200 from the bystander via Kamailio, or a policy error):
  // what matters is that the message was read as SIP and the socket stays open
  const res = await c.next((m) => m.status >= 200, 5000, `a response to the ${Buffer.byteLength(text)}-byte MESSAGE`)
    .catch((e) => { throw new Error(`${e.message}; close=${JSON.stringify(c.closeInfo)}`); });
  assert.ok(res.status, res.start);
  assert.equal(c.closeInfo, null, `a ${Buffer.byteLength(text)}-byte message closed the socket: ${JSON.stringify(c.closeInfo)}`);
  await c.close();
}));

for (const [label, protocols] of [['no subprotocol', []], ['only another subprotocol', ['xmpp']]]) {
  test(`upgrade with ${label} -> HTTP 400 saying \`sip\` is required`, L.track(async () => {
    const r = await tryUpgrade(L.gw.wsUrl, protocols);
    assert.ok(!r.upgraded, `upgrade accepted (protocol ${r.protocol})`);
    assert.equal(r.status, 400);
    assert.match(r.body, /subprotocol `sip` is required/);
    await bystanderStillWorks();
  }));
}
