'use strict';
// RFC 5626 §5.3: a request for a flow that no longer exists gets 430 Flow Failed; one whose flow
// token does not verify gets 403. The binding at Kamailio outlives the WebSocket (that is
// what 430 is for), so Kamailio still routes the INVITE to imsgw.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { useLab, waitFor } = require('../lib/lab');
const sipp = require('../lib/sipp');
const { assertRegisteredWithPath } = require('../lib/checks');

const L = useLab({ name: 'flow-430', block: 4, transport: 'udp' });

test('WebSocket closed -> INVITE from the IMS side gets 430 Flow Failed', L.track(async () => {
  const ua = await L.ua('gone');
  const token = await assertRegisteredWithPath(L, ua);
  const mark = L.gw.logMark();
  await ua.socket.kill();
  await waitFor(() => /WebSocket flow closed/.test(L.gw.logSince(mark)), 3000, 'imsgw to notice the close');
  const bindings = await L.kam.bindings(ua.user);
  assert.equal(bindings.length, 1, 'Kamailio still has the binding of the closed flow');
  assert.ok(bindings[0].Path.includes(token));
  const invitesBefore = ua.incomingSessions.length;

  const r = await L.sipp({ scenario: 'uac-invite-430.xml', service: ua.user });
  assert.equal(r.code, 0, `expected exactly 430: ${sipp.describe(r)}\nimsgw log:\n${L.gw.logSince(mark)}`);
  const finals = sipp.responses(r).filter((x) => x.status >= 200);
  assert.deepEqual(finals.map((x) => x.status), [430], 'the only final response is 430');
  assert.equal(ua.incomingSessions.length, invitesBefore, 'nothing reached the closed client');
  assert.match(L.kam.log(), /IMS failure for INVITE .*: 430 from downstream/, 'Kamailio got the 430 from imsgw');
}));

test('a Path with a forged flow token -> 403 Forbidden', L.track(async () => {
  // a binding that names imsgw but carries a token imsgw never minted
  const user = `forged-${Date.now().toString(36)}`;
  const forged = 'AAAAAAAAAAAAAAAAAAAAAAAAAAA';
  const reg = await L.sipp({
    scenario: 'register-with-path.xml', service: user,
    keys: {
      path: `sip:${forged}@${L.imsgwAddr()};transport=udp;lr;ob`,
      contact: `sip:${user}@client.invalid;transport=ws;ob`,
      expires: 600,
      instance: '00000000-0000-4000-8000-00000000f04d',
    },
  });
  assert.equal(reg.code, 0, `REGISTER with the forged Path: ${sipp.describe(reg)}`);
  const r = await L.sipp({ scenario: 'uac-invite-403.xml', service: user });
  assert.equal(r.code, 0, `expected exactly 403: ${sipp.describe(r)}`);
  assert.deepEqual(sipp.responses(r).filter((x) => x.status >= 200).map((x) => x.status), [403]);
}));
