'use strict';
// Issue 11 §1, connection hygiene before the handshake completes:
// - a client must send its whole HTTP request head within websocket.handshake_timeout_secs
//   (2 s here): silent sockets, half requests and a request dripped a byte at a time are all
//   closed, and a client that does the handshake is not harmed;
// - per client address (an IPv4 address, an IPv6 /64; behind a trusted proxy the forwarded
//   address), at most websocket.max_connections_per_address open and
//   websocket.max_unregistered_per_address not yet registered WebSockets, refused with 429 and
//   Retry-After (RFC 6585 §4) before the 101; other addresses go on;
// - the global websocket.max_connections is counted before the upgrade: a burst gets exactly
//   that many 101s, the rest 503.
// - at most http.max_connections_per_address (6 here) HTTP connections from one peer address
//   are open at once (closed as accepted past that; upgraded WebSockets and the trusted proxy
//   do not count);
// - the IMS side's TCP listener holds at most sip.max_connections (3 here) and closes a
//   connection idle for sip.idle_timeout_secs (2 s here); RFC 5626 keep-alives keep one open.
// Sources spread over 127.0.0.0/8 (Linux answers the whole block on loopback). Block 58.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const { useLab } = require('../lib/lab');
const { sleep, waitFor } = require('../lib/env');
const { RawSipClient, tryUpgrade } = require('../lib/wsclient');
const A = require('../lib/auth');

const L = useLab({
  name: 'ws-admission',
  block: 58,
  imsgw: {
    extraHttp: { trusted_proxies: ['127.0.0.4'], max_connections_per_address: 6 },
    extraSip: { max_connections: 3, idle_timeout_secs: 2 },
    websocket: {
      handshake_timeout_secs: 2,
      max_connections: 12,
      max_connections_per_address: 4,
      max_unregistered_per_address: 2,
    },
  },
});

const metric = async (reason) => {
  const m = new RegExp(`^imsgw_ws_rejected_total\\{reason="${reason}"\\} (\\d+)$`, 'm').exec((await L.gw.metrics()).body);
  return m ? Number(m[1]) : 0;
};

/** A WebSocket from `from` (a 127/8 address), optionally through headers a proxy would add. */
const open = (from, headers = {}) => RawSipClient.open(L.gw.wsUrl, { localAddress: from, headers });
/** Opens for real once there is room (a closed connection's place comes back as it closes). */
const openWhenRoom = (from, what) => waitFor(() => open(from).catch(() => null), 3000, what);
const upgradeFrom = (from, headers = {}) => tryUpgrade(L.gw.wsUrl, ['sip'], 5000, { localAddress: from, headers });

/** A TCP connection to the HTTP listener; resolves `closed` with when the server closed it. */
function tcp(from) {
  const u = new URL(L.gw.httpUrl);
  const s = net.connect({ port: Number(u.port), host: u.hostname, localAddress: from });
  const t0 = Date.now();
  s.on('error', () => {});
  s.closedAfter = new Promise((resolve) => s.on('close', () => resolve(Date.now() - t0)));
  return s;
}

test('connections that never finish their request head are closed after websocket.handshake_timeout_secs; a real client is not harmed', L.track(async () => {
  const before = await metric('handshake_timeout');
  const silent = Array.from({ length: 40 }, (_, i) => tcp(`127.0.1.${i + 1}`));
  const half = Array.from({ length: 40 }, (_, i) => {
    const s = tcp(`127.0.2.${i + 1}`);
    s.on('connect', () => s.write('GET /sip HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n'));
    return s;
  });
  // Slowloris: a byte every 300 ms keeps the socket busy but never finishes the head.
  const drip = tcp('127.0.3.1');
  const head = 'GET /sip HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n';
  let i = 0;
  const timer = setInterval(() => { if (i < head.length && !drip.destroyed) drip.write(head[i++]); }, 300);
  try {
    // Meanwhile a real client connects, registers and stays.
    const ok = await open('127.0.4.1');
    L.raws.push(ok);
    const r = await A.register(ok, 'hs58', { auth: `Bearer ${await L.mint('hs58')}` });
    assert.equal(r.res.status, 200, r.res.start);
    const all = [...silent, ...half, drip];
    const after = await Promise.race([Promise.all(all.map((s) => s.closedAfter)), sleep(8000).then(() => null)]);
    assert.ok(after, `still open after 8 s: ${all.filter((s) => !s.destroyed && !s.closed).length} of ${all.length}`);
    for (const ms of after) {
      assert.ok(ms >= 1500, `closed after ${ms} ms: before the timeout`);
      assert.ok(ms < 6000, `closed after ${ms} ms`);
    }
    assert.ok(i < head.length, 'the drip had not finished its head when it was closed');
    assert.equal(ok.closeInfo, null, 'the registered client is still open');
    assert.equal(await metric('handshake_timeout') - before, all.length);
    await ok.close();
  } finally {
    clearInterval(timer);
    for (const s of [...silent, ...half, drip]) s.destroy();
  }
}));

test('per address: 429 past max_unregistered_per_address until one registers, 429 past max_connections_per_address; other addresses go on', L.track(async () => {
  const me = '127.0.5.1';
  const a = await open(me);
  const b = await open(me);
  L.raws.push(a, b);
  const third = await upgradeFrom(me);
  assert.equal(third.status, 429, JSON.stringify(third));
  assert.ok(Number(third.headers['retry-after']) > 0, 'Retry-After');
  assert.match(third.body, /max_unregistered_per_address/);
  // Another address is not harmed.
  const other = await upgradeFrom('127.0.5.2');
  assert.equal(other.upgraded, true, JSON.stringify(other));
  // One of the two registers: its address has room for one more unregistered connection.
  const r = await A.register(a, 'pa58', { auth: `Bearer ${await L.mint('pa58')}` });
  assert.equal(r.res.status, 200, r.res.start);
  const c3 = await openWhenRoom(me, 'room after the registration');
  L.raws.push(c3);
  const r3 = await A.register(c3, 'pb58', { auth: `Bearer ${await L.mint('pb58')}` });
  assert.equal(r3.res.status, 200, r3.res.start);
  const c4 = await open(me);
  L.raws.push(c4);
  // Four open from this address (a, b, c3, c4): the fifth is refused for the open cap.
  const fifth = await upgradeFrom(me);
  assert.equal(fifth.status, 429, JSON.stringify(fifth));
  assert.match(fifth.body, /max_connections_per_address/);
  // A closed connection gives its place back.
  await b.close();
  const again = await openWhenRoom(me, 'the closed one\'s place');
  L.raws.push(again);
  assert.ok(await metric('address_unregistered') >= 1);
  assert.ok(await metric('address_connections') >= 1);
  for (const x of [a, c3, c4, again]) await x.close();
}));

test('behind a trusted proxy each forwarded address has its own share; a stranger\'s X-Forwarded-For is ignored', L.track(async () => {
  // Through the trusted proxy 127.0.0.4: two people, two shares.
  const p = [];
  for (const who of ['198.51.100.7', '198.51.100.7', '198.51.100.8', '198.51.100.8']) {
    p.push(await open('127.0.0.4', { 'X-Forwarded-For': who }));
  }
  L.raws.push(...p);
  const third = await upgradeFrom('127.0.0.4', { 'X-Forwarded-For': '198.51.100.7' });
  assert.equal(third.status, 429, JSON.stringify(third));
  // A stranger who writes X-Forwarded-For counts as itself, whatever it claims.
  const s1 = await open('127.0.6.1', { 'X-Forwarded-For': '203.0.113.1' });
  const s2 = await open('127.0.6.1', { 'X-Forwarded-For': '203.0.113.2' });
  L.raws.push(s1, s2);
  const s3 = await upgradeFrom('127.0.6.1', { 'X-Forwarded-For': '203.0.113.3' });
  assert.equal(s3.status, 429, JSON.stringify(s3));
  for (const x of [...p, s1, s2]) await x.close();
}));

test('websocket.max_connections is counted before the upgrade: a burst of 30 at once gets exactly 12 places, the rest 503', L.track(async () => {
  await waitFor(async () => {
    const m = /^imsgw_ws_flows (\d+)$/m.exec((await L.gw.metrics()).body);
    return m && Number(m[1]) === 0 ? true : null;
  }, 5000, 'no flows left from the earlier tests').catch(async (e) => {
    throw new Error(`${e.message}: ${/^imsgw_ws_flows.*$/m.exec((await L.gw.metrics()).body)}`);
  });
  // Each from its own address, so only the global cap (12) can refuse them; all at once.
  const held = await Promise.allSettled(Array.from({ length: 30 }, (_, i) => open(`127.0.8.${i + 1}`)));
  const ok = held.filter((h) => h.status === 'fulfilled').map((h) => h.value);
  L.raws.push(...ok);
  assert.equal(ok.length, 12, `${ok.length} WebSockets open with max_connections = 12`);
  for (const h of held.filter((x) => x.status === 'rejected')) assert.match(String(h.reason), /503/);
  const m = /^imsgw_ws_flows (\d+)$/m.exec((await L.gw.metrics()).body);
  assert.equal(m && Number(m[1]), 12);
  for (const x of ok) await x.close();
}));

test('IMS side: sip.max_connections accepted connections at once, the next closed at once; idle ones closed after sip.idle_timeout_secs, keep-alives keep one', L.track(async () => {
  const connectSip = () => new Promise((resolve, reject) => {
    const s = net.connect({ port: L.gw.o.sip, host: '127.0.0.1' });
    const t0 = Date.now();
    s.on('error', () => {});
    s.closedAfter = new Promise((r) => s.on('close', () => r(Date.now() - t0)));
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
  const held = [await connectSip(), await connectSip(), await connectSip()];
  await sleep(200);
  const fourth = await connectSip();
  const shut = await Promise.race([fourth.closedAfter, sleep(1000).then(() => null)]);
  assert.ok(shut !== null && shut < 1000, `the fourth connection was closed at once (${shut})`);
  const m = /^imsgw_ims_conn_rejected_total\{reason="too_many_connections"\} (\d+)$/m.exec((await L.gw.metrics()).body);
  assert.equal(m && Number(m[1]), 1);
  // One of the three sends CRLFCRLF keep-alives (RFC 5626 §4.4.1) and gets CRLF back.
  const pongs = [];
  held[0].on('data', (d) => pongs.push(d.toString()));
  const ka = setInterval(() => held[0].write('\r\n\r\n'), 500);
  try {
    const idle = await Promise.race([Promise.all([held[1].closedAfter, held[2].closedAfter]), sleep(6000).then(() => null)]);
    assert.ok(idle, 'the two idle connections were closed');
    for (const ms of idle) assert.ok(ms >= 1500 && ms < 5000, `closed after ${ms} ms`);
    assert.equal(held[0].destroyed, false, 'the connection with keep-alives is open');
    assert.ok(pongs.join('').includes('\r\n'), 'pongs came back');
    // The places came back: a new connection is accepted and stays until it idles.
    const fresh = await connectSip();
    const early = await Promise.race([fresh.closedAfter, sleep(800).then(() => null)]);
    assert.equal(early, null, 'a new connection is accepted once the idle ones are gone');
    fresh.destroy();
  } finally {
    clearInterval(ka);
    for (const s of held) s.destroy();
  }
}));

test('http.max_connections_per_address: the seventh idle HTTP connection from one address is closed at once; other addresses, upgraded WebSockets and the trusted proxy are not counted', L.track(async () => {
  const me = '127.0.9.1';
  const before = await metric('http_address_connections');
  const idle = [];
  for (let i = 0; i < 6; i += 1) {
    const s = tcp(me);
    await new Promise((r) => s.once('connect', r));
    idle.push(s);
  }
  await sleep(200);
  const seventh = tcp(me);
  const shut = await Promise.race([seventh.closedAfter, sleep(1000).then(() => null)]);
  assert.ok(shut !== null && shut < 1000, `the seventh was closed at once (${shut})`);
  for (const s of idle) assert.equal(s.destroyed, false, 'the first six are still open');
  assert.equal(await metric('http_address_connections') - before, 1);
  // Another address is not harmed.
  const other = await upgradeFrom('127.0.9.2');
  assert.equal(other.upgraded, true, JSON.stringify(other));
  for (const s of idle) s.destroy();
  // Upgraded WebSockets leave the HTTP count: with four registered WebSockets open from the
  // address (its WebSocket share), six idle HTTP connections still get in, the seventh not.
  const ws = [];
  for (let i = 0; i < 4; i += 1) {
    const c = await openWhenRoom(me, `WebSocket ${i}`);
    L.raws.push(c);
    ws.push(c);
    const reg = await A.register(c, `hc58${i}`, { auth: `Bearer ${await L.mint(`hc58${i}`)}` });
    assert.equal(reg.res.status, 200, reg.res.start);
  }
  const again = [];
  for (let i = 0; i < 6; i += 1) {
    const s = tcp(me);
    await new Promise((r) => s.once('connect', r));
    again.push(s);
  }
  const extra = tcp(me);
  const shut2 = await Promise.race([extra.closedAfter, sleep(1000).then(() => null)]);
  assert.ok(shut2 !== null && shut2 < 1000, `the seventh was closed at once (${shut2})`);
  for (const s of again) assert.equal(s.destroyed, false, 'an HTTP connection was closed: upgraded ones were counted');
  for (const s of again) s.destroy();
  // The trusted proxy carries many people: eight idle connections from it all stay.
  const proxied = [];
  for (let i = 0; i < 8; i += 1) {
    const s = tcp('127.0.0.4');
    await new Promise((res) => s.once('connect', res));
    proxied.push(s);
  }
  await sleep(300);
  for (const s of proxied) assert.equal(s.destroyed, false, 'a proxy connection was closed');
  for (const s of proxied) s.destroy();
  for (const x of ws) await x.close();
}));
