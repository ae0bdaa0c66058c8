'use strict';
// Issue 11 §1, connection hygiene: a WebSocket that never registers is closed after
// `websocket.register_timeout_secs` (2 s here) with 1008 (RFC 6455 §7.4.1, policy), so idle
// connections cannot hold the places of `websocket.max_connections` for ever; one that
// registered stays. Block 56.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { useLab } = require('../lib/lab');
const { sleep } = require('../lib/env');
const A = require('../lib/auth');

const L = useLab({ name: 'unregistered-websocket', block: 56, imsgw: { registerTimeoutSecs: 2 } });

test('a WebSocket that never registers is closed with 1008 after websocket.register_timeout_secs; a registered one stays open', L.track(async () => {
  const idle = await L.raw();
  const user = 'reg56';
  const registered = await L.raw();
  const r = await A.register(registered, user, { auth: `Bearer ${await L.mint(user)}` });
  assert.equal(r.res.status, 200, r.res.start);
  const closed = await Promise.race([idle.closed, sleep(5000).then(() => null)]);
  assert.ok(closed, 'the idle WebSocket was closed');
  assert.equal(closed.code, 1008, JSON.stringify(closed));
  assert.match(closed.reason, /no registration within websocket\.register_timeout_secs/);
  await sleep(1000);
  assert.equal(registered.closeInfo, null, 'the registered WebSocket is still open');
  const m = /^imsgw_ws_rejected_total\{reason="register_timeout"\} (\d+)$/m.exec((await L.gw.metrics()).body);
  assert.equal(m && Number(m[1]), 1);
}));

test('a WebSocket that un-registers must register again within websocket.register_timeout_secs, or is closed with 1008', L.track(async () => {
  const user = 'unreg56';
  const c = await L.raw();
  const auth = `Bearer ${await L.mint(user)}`;
  const r = await A.register(c, user, { auth });
  assert.equal(r.res.status, 200, r.res.start);
  // Past the opening's deadline while registered: still open.
  await sleep(2500);
  assert.equal(c.closeInfo, null, 'closed while registered');
  const u = await A.register(c, user, { auth, expires: 0, callId: r.callId, cseq: 2 });
  assert.equal(u.res.status, 200, u.res.start);
  const closed = await Promise.race([c.closed, sleep(6000).then(() => null)]);
  assert.ok(closed, 'the un-registered WebSocket was closed');
  assert.equal(closed.code, 1008, JSON.stringify(closed));
}));
