'use strict';
// RFC 5626 §5.3, TS 24.229: imsgw's IMS-side sockets (sip.listen UDP+TCP, sip.tls_listen) take
// requests and responses only from the P-CSCF: sip.upstream's IP (any port) and the entries of
// sip.trusted_peers. Flow tokens are visible to other users (Path, Record-Route), so a stranger
// who can reach sip.listen must not be able to aim a MESSAGE at a user's WebSocket or answer a
// pending transaction in the P-CSCF's place. Loopback addresses tell them apart: Kamailio (the
// P-CSCF) is 127.0.0.1, strangers send from 127.0.0.9, and 127.0.0.8:<port> is a port-specific
// trusted_peers entry. Every refusal is checked against a positive control: the very same bytes
// from a trusted source do reach the user, so a silent drop means the filter, not a bad message.
// With sip.tls_client_ca_file set, a TLS client must also present a certificate from that CA
// (mutual TLS); Kamailio presents the lab's certificate (serverAuth+clientAuth) as a client.
const { describe, test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const dgram = require('node:dgram');
const net = require('node:net');
const tls = require('node:tls');
const fs = require('node:fs');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { promisify } = require('node:util');
const { useLab, uniqueUser, sleep, waitFor, LAB, DOMAIN } = require('../lib/lab');
const { assertRegisteredWithPath, registeredContact, assertIncomingMessage } = require('../lib/checks');
const sipp = require('../lib/sipp');
const A = require('../lib/auth');

const run = promisify(execFile);
const STRANGER = '127.0.0.9';
const TRUSTED_EXTRA = '127.0.0.8';
const rand = () => crypto.randomBytes(6).toString('hex');
/** How long a message that would be delivered takes at most here (it is ms on loopback). */
const SETTLE_MS = 1200;

/** A MESSAGE as the P-CSCF would send it down a Path: Route = the flow's Path URI. */
function imsMessage({ ruri, to, route, via, body }) {
  const lines = [
    `MESSAGE ${ruri} SIP/2.0`,
    `Via: ${via};branch=z9hG4bK${rand()};rport`,
    `Route: ${route}`,
    'Max-Forwards: 69',
    `From: <sip:mallory@${DOMAIN}>;tag=${rand()}`,
    `To: <${to}>`,
    `Call-ID: ${rand()}@stranger`,
    'CSeq: 1 MESSAGE',
    'Content-Type: text/plain',
    `Content-Length: ${Buffer.byteLength(body)}`,
    '',
    body,
  ];
  return lines.join('\r\n');
}

const dropped = (L, t) => L.gw.counter('imsgw_ims_untrusted_dropped_total', `transport="${t}"`);

/** A UDP socket bound to addr:port (0: any); collects what it receives. */
async function udpSocket(address, port = 0) {
  const s = dgram.createSocket('udp4');
  s.got = [];
  s.on('message', (m, rinfo) => s.got.push({ text: m.toString('utf8'), rinfo }));
  await new Promise((resolve, reject) => { s.once('error', reject); s.bind({ address, port }, resolve); });
  return s;
}
const udpSend = (s, text, port) => new Promise((resolve, reject) => s.send(Buffer.from(text), port, '127.0.0.1', (e) => (e ? reject(e) : resolve())));

/**
 * Opens a stream (connect(): a net or tls socket), writes `text` once it is ready, and resolves
 * { data, closed, ready, error } after the peer closed it or after `ms`.
 */
function streamExchange(connect, readyEvent, text, ms = SETTLE_MS) {
  return new Promise((resolve) => {
    const r = { data: '', closed: false, ready: false, error: null };
    const s = connect();
    const finish = () => { clearTimeout(t); s.destroy(); resolve(r); };
    const t = setTimeout(finish, ms);
    s.on(readyEvent, () => { r.ready = true; s.write(text); });
    s.on('data', (d) => { r.data += d.toString('utf8'); });
    s.on('error', (e) => { r.error = e.code || e.message; });
    s.on('close', () => { r.closed = true; finish(); });
  });
}

/** The number of MESSAGEs the user got whose body is `body`. */
const gotBody = (ua, body) => ua.messages.filter((m) => m.body === body).length;

describe('UDP upstream: sip.listen (UDP and TCP) refuses strangers', () => {
  const L = useLab({
    name: 'ims-only-pcscf-udp',
    block: 25,
    transport: 'udp',
    imsgw: { extraSip: { get trusted_peers() { return [`${TRUSTED_EXTRA}:${L.p.sipp(18)}`]; } } },
  });
  let ua;
  let token;

  const route = () => `<sip:${token}@127.0.0.1:${L.p.sip};transport=udp;lr;ob>`;
  const msg = (via, body) => {
    const c = registeredContact(ua);
    return imsMessage({ ruri: c.uri, to: ua.aor, route: route(), via, body });
  };

  test('setup: a JsSIP user is registered; its flow token is the user part of the Path in ul.dump', L.track(async () => {
    ua = await L.ua('victim');
    token = await assertRegisteredWithPath(L, ua);
  }));

  test('UDP MESSAGE with the user\'s flow token from a stranger is dropped unanswered and counted; from the P-CSCF\'s IP or a trusted_peers IP:PORT it arrives', L.track(async () => {
    const before = await dropped(L, 'udp');
    const stranger = await udpSocket(STRANGER);
    const samePortOtherIp = await udpSocket(TRUSTED_EXTRA, L.p.sipp(19)); // 127.0.0.8, not the listed port
    try {
      for (const s of [stranger, samePortOtherIp]) {
        const { address, port } = s.address();
        const body = `forged over udp from ${address}:${port} ${rand()}`;
        await udpSend(s, msg(`SIP/2.0/UDP ${address}:${port}`, body), L.p.sip);
        await sleep(SETTLE_MS);
        assert.equal(gotBody(ua, body), 0, `a MESSAGE from ${address}:${port} reached the user's WebSocket`);
        assert.deepEqual(s.got.map((x) => x.text.split('\r\n')[0]), [], `${address}:${port} got an answer`);
      }
      const after = await dropped(L, 'udp');
      assert.ok(after >= before + 2, `imsgw_ims_untrusted_dropped_total{transport="udp"} ${before} -> ${after}`);
      assert.match(L.gw.log(), /neither sip\.upstream nor in sip\.trusted_peers refused.*127\.0\.0\.9|127\.0\.0\.9.*neither sip\.upstream nor in sip\.trusted_peers refused/, 'a warning names the stranger');
    } finally {
      stranger.close();
      samePortOtherIp.close();
    }
    // positive controls: the same bytes from a trusted source arrive and get JsSIP's 200
    const listed = await udpSocket(TRUSTED_EXTRA, L.p.sipp(18));
    const pcscfIp = await udpSocket('127.0.0.1'); // the upstream's IP, another port than Kamailio's
    try {
      for (const s of [listed, pcscfIp]) {
        const { address, port } = s.address();
        const body = `trusted over udp from ${address}:${port} ${rand()}`;
        await udpSend(s, msg(`SIP/2.0/UDP ${address}:${port}`, body), L.p.sip);
        await ua.until(() => gotBody(ua, body) === 1, 3000, `the MESSAGE from ${address}:${port}`);
        await waitFor(() => s.got.find((x) => x.text.startsWith('SIP/2.0 200')), 3000, `200 to ${address}:${port}`);
      }
    } finally {
      listed.close();
      pcscfIp.close();
    }
  }));

  test('TCP connection from a stranger is closed before anything is read, and counted; a TCP connection from the P-CSCF\'s IP is served', L.track(async () => {
    const before = await dropped(L, 'tcp');
    const body = `forged over tcp ${rand()}`;
    const r = await streamExchange(
      () => net.connect({ host: '127.0.0.1', port: L.p.sip, localAddress: STRANGER }),
      'connect', msg(`SIP/2.0/TCP ${STRANGER}:9`, body), 3000,
    );
    assert.ok(r.closed, `imsgw did not close the stranger's TCP connection: ${JSON.stringify(r)}`);
    assert.equal(r.data, '', 'the stranger got no answer');
    await sleep(300);
    assert.equal(gotBody(ua, body), 0, 'a MESSAGE from a stranger over TCP reached the user\'s WebSocket');
    const after = await dropped(L, 'tcp');
    assert.ok(after >= before + 1, `imsgw_ims_untrusted_dropped_total{transport="tcp"} ${before} -> ${after}`);
    // positive control: from 127.0.0.1 (the upstream's IP, an ephemeral port) the same arrives
    const ok = `trusted over tcp ${rand()}`;
    const good = await streamExchange(
      () => net.connect({ host: '127.0.0.1', port: L.p.sip, localAddress: '127.0.0.1' }),
      'connect', msg('SIP/2.0/TCP 127.0.0.1:9', ok), 2500,
    );
    assert.equal(gotBody(ua, ok), 1, `the trusted TCP MESSAGE did not arrive: ${JSON.stringify(good)}`);
    assert.match(good.data, /^SIP\/2\.0 200 /, 'JsSIP\'s 200 came back on the trusted connection');
  }));

  test('a forged 200 from a stranger for a pending transaction does not reach the client; the real answer does (RFC 3261 §18.1.2)', L.track(async () => {
    // a black hole registered at Kamailio: it receives the MESSAGE (with imsgw's Via) and answers late
    const hole = await udpSocket('127.0.0.1', L.p.sipp(17));
    const stranger = await udpSocket(STRANGER);
    try {
      const target = uniqueUser('hole');
      const reg = await L.sipp({
        scenario: 'register-with-path.xml', service: target,
        keys: { path: `sip:hole@127.0.0.1:${L.p.sipp(17)};lr;ob`, contact: `sip:${target}@127.0.0.1:${L.p.sipp(17)};ob`, expires: 300, instance: '00000000-0000-4000-8000-0000000000b1' },
      });
      assert.equal(reg.code, 0, sipp.describe(reg));
      const c = await L.raw();
      const alice = uniqueUser('alice');
      const r = await A.register(c, alice, { auth: `Bearer ${await L.mint(alice)}`, expires: 300 });
      assert.equal(r.res.status, 200, r.res.start);
      const pending = A.message(c, alice, `sip:${target}@${DOMAIN}`, { body: 'to the hole', ms: 8000 });
      const got = await waitFor(() => hole.got.find((x) => x.text.startsWith('MESSAGE ')), 3000, 'the MESSAGE at the hole');
      const lines = got.text.split('\r\n');
      const end = lines.indexOf('');
      const head = lines.slice(1, end);
      const vias = head.filter((l) => /^(Via|v)\s*:/i.test(l));
      const keep = (re) => head.filter((l) => re.test(l));
      const dialog = [...keep(/^(From|f)\s*:/i), ...keep(/^(Call-ID|i)\s*:/i), ...keep(/^(CSeq)\s*:/i)];
      const to = keep(/^(To|t)\s*:/i)[0];
      assert.ok(vias.length >= 3 && vias.some((v) => v.includes(`127.0.0.1:${L.p.sip}`)), `imsgw's Via under Kamailio's:\n${got.text}`);
      // the stranger answers in the P-CSCF's place: imsgw's Via (and the client's) on top
      const forged = ['SIP/2.0 200 OK', ...vias.slice(1), ...dialog, `${to};tag=forged${rand()}`, 'Content-Length: 0', '', ''].join('\r\n');
      await udpSend(stranger, forged, L.p.sip);
      await sleep(500);
      // the real answer, through Kamailio
      const busy = ['SIP/2.0 486 Busy Here', ...vias, ...dialog, `${to};tag=hole${rand()}`, 'Content-Length: 0', '', ''].join('\r\n');
      await new Promise((resolve, reject) => hole.send(Buffer.from(busy), got.rinfo.port, got.rinfo.address, (e) => (e ? reject(e) : resolve())));
      const { res } = await pending;
      assert.equal(res.status, 486, `the client must see the real 486, not the stranger's 200: ${res.start}`);
      assert.equal(c.received.filter((m) => m.status === 200 && /MESSAGE/.test((m.get('CSeq')[0] || ''))).length, 0, 'no forged 200 reached the client');
      await c.close();
    } finally {
      hole.close();
      stranger.close();
    }
  }));

  test('the same MESSAGE through Kamailio (the P-CSCF) still reaches the user', L.track(async () => {
    await assertIncomingMessage(L, ua);
  }));
});

describe('TCP upstream: a stranger\'s TCP connection is refused, Kamailio\'s are served', () => {
  const L = useLab({ name: 'ims-only-pcscf-tcp', block: 26, transport: 'tcp' });
  let ua;
  let token;

  test('setup: a JsSIP user registered over a TCP upstream', L.track(async () => {
    ua = await L.ua('victimtcp');
    token = await assertRegisteredWithPath(L, ua);
  }));

  test('a stranger\'s TCP MESSAGE with the flow token is closed unread and counted', L.track(async () => {
    const before = await dropped(L, 'tcp');
    const body = `forged over tcp upstream ${rand()}`;
    const text = imsMessage({
      ruri: registeredContact(ua).uri, to: ua.aor, body, via: `SIP/2.0/TCP ${STRANGER}:9`,
      route: `<sip:${token}@127.0.0.1:${L.p.sip};transport=tcp;lr;ob>`,
    });
    const r = await streamExchange(() => net.connect({ host: '127.0.0.1', port: L.p.sip, localAddress: STRANGER }), 'connect', text, 3000);
    assert.ok(r.closed && r.data === '', `the stranger's connection should be closed unanswered: ${JSON.stringify(r)}`);
    await sleep(300);
    assert.equal(gotBody(ua, body), 0, 'the stranger\'s MESSAGE reached the user');
    assert.ok(await dropped(L, 'tcp') >= before + 1, 'tcp drop counted');
  }));

  test('Kamailio\'s own TCP connection to imsgw (ephemeral port) still delivers', L.track(async () => {
    await assertIncomingMessage(L, ua);
  }));
});

describe('TLS with sip.tls_client_ca_file: strangers refused before the handshake, certificate-less clients at it', () => {
  const L = useLab({
    name: 'ims-only-pcscf-tls',
    block: 27,
    transport: 'tls',
    imsgw: { extraSip: { get tls_client_ca_file() { return L.tls.ca; } } },
  });
  let ua;
  let token;
  let otherCa; // a certificate from another CA

  const connectTls = (localAddress, extra = {}) => () => tls.connect({
    host: '127.0.0.1', port: L.p.sipTls, localAddress, ca: fs.readFileSync(L.tls.ca), servername: 'localhost', ...extra,
  });
  const msg = (body) => imsMessage({
    ruri: registeredContact(ua).uri, to: ua.aor, body, via: 'SIP/2.0/TLS 127.0.0.1:9',
    route: `<sip:${token}@127.0.0.1:${L.p.sipTls};transport=tls;lr;ob>`,
  });

  test('setup: a JsSIP user registered over a TLS upstream; Kamailio delivers over mutual TLS', L.track(async () => {
    const dir = path.join(L.dir, 'other-ca');
    await run(path.join(LAB, 'make-tls-cert.sh'), [dir], { timeout: 20000 });
    otherCa = { cert: fs.readFileSync(path.join(dir, 'server.pem')), key: fs.readFileSync(path.join(dir, 'server.key')) };
    ua = await L.ua('victimtls');
    token = await assertRegisteredWithPath(L, ua);
    await assertIncomingMessage(L, ua);
  }));

  test('a stranger\'s TLS connection is closed before the handshake and counted', L.track(async () => {
    const before = await dropped(L, 'tls');
    const body = `forged over tls ${rand()}`;
    const r = await streamExchange(connectTls(STRANGER, { cert: fs.readFileSync(L.tls.cert), key: fs.readFileSync(L.tls.key) }), 'secureConnect', msg(body), 3000);
    assert.equal(r.ready, false, `the stranger completed a TLS handshake: ${JSON.stringify(r)}`);
    assert.ok(r.closed, 'closed');
    await sleep(300);
    assert.equal(gotBody(ua, body), 0, 'the stranger\'s MESSAGE reached the user');
    assert.ok(await dropped(L, 'tls') >= before + 1, 'tls drop counted');
  }));

  test('from the P-CSCF\'s IP without a client certificate, or with one from another CA -> refused, counted; with the CA\'s certificate -> delivered', L.track(async () => {
    const name = 'imsgw_ims_tls_client_cert_refused_total';
    const before = await L.gw.counter(name);
    for (const [what, extra] of [['no certificate', {}], ['another CA\'s certificate', otherCa]]) {
      const body = `tls with ${what} ${rand()}`;
      const r = await streamExchange(connectTls('127.0.0.1', extra), 'secureConnect', msg(body), 3000);
      assert.ok(r.closed, `${what}: the connection must be closed: ${JSON.stringify(r)}`);
      assert.equal(r.data, '', `${what}: no SIP answer`);
      await sleep(300);
      assert.equal(gotBody(ua, body), 0, `${what}: the MESSAGE reached the user`);
    }
    const after = await L.gw.counter(name);
    assert.ok(after >= before + 2, `${name} ${before} -> ${after}`);
    // positive control: a client certificate signed by the configured CA
    const ok = `tls with the CA's certificate ${rand()}`;
    const good = await streamExchange(connectTls('127.0.0.1', { cert: fs.readFileSync(L.tls.cert), key: fs.readFileSync(L.tls.key) }), 'secureConnect', msg(ok), 2500);
    assert.equal(gotBody(ua, ok), 1, `the MESSAGE over mutual TLS did not arrive: ${JSON.stringify(good)}`);
    assert.match(good.data, /^SIP\/2\.0 200 /, 'JsSIP\'s 200 came back');
  }));
});
