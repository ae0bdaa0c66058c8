'use strict';
// RFC 5626 §5.1 / RFC 3327: JsSIP registers over WebSocket through imsgw; imsgw adds a Path with
// a flow token, its own IMS-side address, `lr` and `ob`; Kamailio (registrar, outbound_mode=1,
// which answers 439 without `ob`) stores the binding with that Path.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { useLab } = require('../lib/lab');
const { assertRegisteredWithPath, registeredContact } = require('../lib/checks');

const L = useLab({ name: 'register-path', block: 1, transport: 'udp' });

test('JsSIP REGISTER -> 200 with Path; ul.dump shows the binding with imsgw\'s flow-token Path', L.track(async () => {
  const ua = await L.ua('reg');
  const token = await assertRegisteredWithPath(L, ua);
  // what Kamailio received: the REGISTER came from imsgw with our Path and Supported: path
  assert.match(L.kam.log(), new RegExp(`IMS REGISTER sip:${ua.user}@ims\\.example .*path=\\[<sip:${token}@`),
    'Kamailio logged the REGISTER with the Path');
}));

test('two WebSocket connections get two different flow tokens', L.track(async () => {
  const a = await L.ua('flowa');
  const b = await L.ua('flowb');
  const ta = await assertRegisteredWithPath(L, a);
  const tb = await assertRegisteredWithPath(L, b);
  assert.notEqual(ta, tb, 'each WebSocket connection is its own flow');
}));

test('un-REGISTER (JsSIP stop) through imsgw removes the binding', L.track(async () => {
  const ua = await L.ua('unreg');
  await assertRegisteredWithPath(L, ua);
  const contact = registeredContact(ua);
  const n = ua.events.length;
  ua.ua.unregister();
  await ua.until(() => ua.events.slice(n).find(([e]) => e === 'unregistered' || e === 'registrationFailed'), 5000, 'unregistered');
  assert.equal(ua.lastEvent(['unregistered', 'registrationFailed'])[0], 'unregistered');
  const left = await L.kam.bindings(ua.user);
  assert.deepEqual(left.map((b) => b.Address).filter((a) => a === contact.uri), [], `binding still there:\n${await L.kam.ulDumpText()}`);
}));
