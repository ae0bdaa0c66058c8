'use strict';
// Two JsSIP users on the same imsgw call and message each other through Kamailio
// (RFC 3261 §16 proxying at both passes, RFC 5658 double Record-Route, RFC 5626 §5.3 flow
// tokens in Record-Route for in-dialog requests). The call is hung up once by the caller and
// once by the callee. Media: stand-in RTCPeerConnection (lib/jssip.js); the SIP is JsSIP's own.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { useLab, within } = require('../lib/lab');
const { headerValues } = require('../lib/jssip');
const { assertRegisteredWithPath } = require('../lib/checks');

const L = useLab({ name: 'ws-to-ws', block: 3, transport: 'udp' });
let alice;
let bob;

test('register alice and bob', L.track(async () => {
  alice = await L.ua('alice');
  bob = await L.ua('bob');
  await assertRegisteredWithPath(L, alice);
  await assertRegisteredWithPath(L, bob);
}));

test('MESSAGE alice -> bob and bob -> alice', L.track(async () => {
  const nb = bob.messages.length;
  const r1 = await alice.message(bob.aor, 'hi bob');
  assert.equal(r1.code, 200, `alice's MESSAGE: ${r1.code} ${r1.cause || ''}`);
  assert.equal(bob.messages.length, nb + 1, 'bob got one MESSAGE');
  assert.equal(bob.messages[nb].body, 'hi bob');
  assert.equal(bob.messages[nb].from, alice.aor);
  assert.deepEqual(headerValues(bob.messages[nb].request, 'Route'), [], 'no Route left at bob');

  const na = alice.messages.length;
  const r2 = await bob.message(alice.aor, 'hi alice');
  assert.equal(r2.code, 200, `bob's MESSAGE: ${r2.code} ${r2.cause || ''}`);
  assert.equal(alice.messages.length, na + 1, 'alice got one MESSAGE');
  assert.equal(alice.messages[na].body, 'hi alice');
  assert.equal(alice.messages[na].from, bob.aor);
}));

/** alice calls bob; returns both session records once both sides are confirmed. */
async function establish() {
  const nIn = bob.incomingSessions.length;
  const out = alice.call(bob.aor);
  assert.ok(out, 'JsSIP created the outgoing session');
  await alice.until(() => out.events.find(([e]) => e === 'confirmed' || e === 'failed' || e === 'ended'), 10000, 'call confirmed');
  const outcome = out.events.find(([e]) => e === 'confirmed' || e === 'failed' || e === 'ended');
  assert.equal(outcome[0], 'confirmed', `alice's call: ${outcome[0]} ${outcome[1] && outcome[1].cause} ${outcome[1] && outcome[1].message ? outcome[1].message.status_code : ''}`);
  const inc = await bob.until(() => bob.incomingSessions[nIn], 2000, 'incoming session');
  // the ACK is checked after the hang-up, so that a lost ACK does not hide what BYE does
  inc.acked = await bob.until(() => inc.events.find(([e]) => e === 'confirmed'), 3000, 'ACK at bob').then(() => true, () => false);

  // what bob saw: imsgw on bob's flow (ws + ims), Kamailio, imsgw on alice's flow (ims + ws)
  const rr = headerValues(inc.request, 'Record-Route');
  const gw = L.imsgwAddr().replace(/\./g, '\\.');
  const ws = new RegExp(`^<sip:([A-Za-z0-9_~.!*'()%-]+)@${gw};transport=ws;lr;ob>$`);
  const ims = new RegExp(`^<sip:${gw};transport=udp;lr>$`);
  assert.equal(rr.length, 5, `Record-Route at bob: ${JSON.stringify(rr)}`);
  assert.match(rr[0], ws);
  assert.match(rr[1], ims);
  assert.match(rr[2], new RegExp(`^<sip:127\\.0\\.0\\.1:${L.p.ims};lr>$`));
  assert.match(rr[3], ims);
  assert.match(rr[4], ws);
  assert.notEqual(ws.exec(rr[0])[1], ws.exec(rr[4])[1], 'the two flow tokens name the two WebSockets');
  assert.deepEqual(headerValues(inc.request, 'Route'), [], 'no Route left at bob');
  assert.equal(inc.request.from.uri.toString(), alice.aor);
  return { out, inc };
}

/** imsgw's log lines about rejected/dropped requests, for failure messages. */
function gwEvidence(mark) {
  return L.gw.logSince(mark).split('\n').filter((l) => /rejected|Loop|drop|WARN|ERROR/.test(l)).join('\n');
}

async function hangUp(by, other, byName, acked, mark) {
  by.session.terminate();
  const [endBy, dBy] = await within(by.done, 5000, `${byName}'s session end`);
  const otherEnd = await within(other.done, 5000, 'the other side\'s session end').catch((e) => ['not ended', { cause: e.message }]);
  const [endOther, dOther] = otherEnd;
  const evidence = `\nACK reached bob: ${acked}; other side: ${endOther} (${dOther && dOther.originator} ${dOther && dOther.cause}); ` +
    `${byName}'s end: ${endBy} (${dBy.originator} ${dBy.cause})\nimsgw log since the INVITE:\n${gwEvidence(mark)}`;
  assert.ok(acked, `the 2xx ACK from alice never reached bob (RFC 3261 §13.2.2.4)${evidence}`);
  assert.equal(endBy, 'ended', evidence);
  assert.equal(dBy.originator, 'local', evidence);
  assert.equal(endOther, 'ended', `the BYE did not end the other side${evidence}`);
  assert.equal(dOther.originator, 'remote', `the BYE reached the other side${evidence}`);
  assert.equal(dOther.cause, 'Terminated', evidence);
}

function lastFrame(ua, dir, prefix) {
  return ua.socket.frames.filter((f) => f.dir === dir && f.text.startsWith(prefix)).pop();
}

/** Waits (up to `ms`) for a frame: JsSIP ends a session when it sends BYE, before the 200. */
async function awaitFrame(ua, dir, re, ms = 5000) {
  const until = Date.now() + ms;
  for (;;) {
    const f = ua.socket.frames.find((x) => x.dir === dir && re.test(x.text));
    if (f || Date.now() > until) return f;
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('alice calls bob; alice hangs up (BYE from the caller)', L.track(async () => {
  const mark = L.gw.logMark();
  const { out, inc } = await establish();
  await hangUp(out, inc, 'alice', inc.acked, mark);
  const bye = lastFrame(bob, 'in', 'BYE ');
  assert.ok(bye, 'bob received the BYE over his WebSocket');
  const ok = await awaitFrame(alice, 'in', /^SIP\/2\.0 200 [^]*^CSeq: \d+ BYE/m);
  assert.ok(ok, 'alice received 200 to her BYE');
}));

test('alice calls bob; bob hangs up (BYE from the callee)', L.track(async () => {
  const mark = L.gw.logMark();
  const { out, inc } = await establish();
  await hangUp(inc, out, 'bob', inc.acked, mark);
  const bye = lastFrame(alice, 'in', 'BYE ');
  assert.ok(bye, 'alice received the BYE over her WebSocket');
  assert.match(bye.text, /^Call-ID: /m);
  assert.equal(/^Call-ID: (.+)$/m.exec(bye.text)[1].trim(), out.session.id.slice(0, out.session.id.length - out.session._from_tag.length),
    'the BYE is for the call alice made');
  const ok = await awaitFrame(bob, 'in', /^SIP\/2\.0 200 [^]*^CSeq: \d+ BYE/m);
  assert.ok(ok, 'bob received 200 to his BYE');
}));
