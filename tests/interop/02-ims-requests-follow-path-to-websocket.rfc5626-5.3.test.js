'use strict';
// RFC 5626 §5.3, RFC 3327, RFC 5658: sipp on the IMS side sends INVITE and MESSAGE to a
// JsSIP user via Kamailio; Kamailio routes them by the stored Path to imsgw, which sends them
// down the WebSocket named by the flow token. JsSIP answers (its own dialog code; media is a
// stand-in, see lib/jssip.js); ACK and BYE follow the Record-Route set; sipp must end with 0.
const { test } = require('node:test');
const { useLab } = require('../lib/lab');
const { assertRegisteredWithPath, assertIncomingCall, assertIncomingMessage } = require('../lib/checks');

const L = useLab({ name: 'ims-to-ws', block: 2, transport: 'udp' });
let ua;

test('register the callee', L.track(async () => {
  ua = await L.ua('callee');
  await assertRegisteredWithPath(L, ua);
}));

test('INVITE from the IMS side reaches JsSIP; 200/ACK/BYE complete', L.track(async () => {
  await assertIncomingCall(L, ua);
}));

test('MESSAGE from the IMS side reaches JsSIP; 200 back', L.track(async () => {
  await assertIncomingMessage(L, ua);
}));

test('a second call on the same flow works too', L.track(async () => {
  await assertIncomingCall(L, ua);
}));
