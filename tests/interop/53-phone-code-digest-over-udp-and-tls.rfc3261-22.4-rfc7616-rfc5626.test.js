'use strict';
// Issue 13 §2: a SIP phone that knows only Digest signs in with a web account. Block 53: the
// real OpenID provider, imsgw with `[phones]` (UDP and TCP listeners) and `[waf.phone_code]`,
// Kamailio with LOG_MSG, baresip (Debian) as the phone and sipp as the IMS-side caller.
// - alice signs in on the web (headless) at /phone-code and makes a code;
// - baresip registers over UDP to imsgw's phone listener with user name alice@ims.example and
//   the code as password: Digest challenge from imsgw, the WAF checks the answer, Kamailio's
//   binding is alice's with imsgw's Path and receives her asserted IMPI, never the Digest;
// - sipp calls alice from the IMS side: the INVITE reaches baresip over its UDP flow, which
//   answers (plain RTP SDP passes through); BYE ends it;
// - a wrong password and the same code from a second phone are refused (401, Kamailio sees
//   nothing of them); attempts are limited;
// - alice signs out on the web: the code's family is revoked, imsgw un-REGISTERs the phone and
//   Kamailio drops the binding;
// - over TLS (imsgw's phone TLS listener, a lab CA): bob's phone (a raw TLS client) signs in
//   with his code and takes a call from sipp on its TLS connection.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const dgram = require('node:dgram');
const { signinLab, describe } = require('../lib/signin');
const { forms } = require('../lib/browserless');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const tls = require('node:tls');
const { execFileSync } = require('node:child_process');
const { sleep, waitFor, LAB } = require('../lib/env');
const sipp = require('../lib/sipp');
const A = require('../lib/auth');
const { parseSip } = require('../lib/wsclient');

const BLOCK = 53;
const base = 21000 + 100 * BLOCK;
const PHONE_UDP = base + 12;
const PHONE_TCP = base + 12;
const PHONE_TLS = base + 13;

// The phones' TLS certificate, made before imsgw starts (deploy/lab/make-tls-cert.sh).
const TLS_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'imsgw-phone-tls-'));
execFileSync(path.join(LAB, 'make-tls-cert.sh'), [TLS_DIR], { timeout: 20000 });
process.on('exit', () => fs.rmSync(TLS_DIR, { recursive: true, force: true }));

const L = signinLab({
  name: 'phone-code-digest',
  block: BLOCK,
  kamDefines: ['LOG_MSG'],
  extraClients: [{ id: 'sip-phone', grants: ['refresh_token'] }],
  imsgw: {
    // baresip 1.0 (libre) gives up at the first challenge that is not Digest MD5.
    phones: {
      udp_listen: `127.0.0.1:${PHONE_UDP}`,
      tcp_listen: `127.0.0.1:${PHONE_TCP}`,
      tls_listen: `127.0.0.1:${PHONE_TLS}`,
      tls_cert_file: path.join(TLS_DIR, 'server.pem'),
      tls_key_file: path.join(TLS_DIR, 'server.key'),
      digest_algorithms: ['MD5'],
    },
    phoneCode: { client_id: 'sip-phone', max_failures: 3 },
  },
});

let alice; // { browser, code }
let phone; // baresip

/** alice's browser at /phone-code, signed in, makes a code: { browser, code, page }. */
async function makeCode(user) {
  const b = L.browser(user);
  let p = await b.get(`${L.gw.httpUrl}/phone-code`);
  p = await L.drive(b, p, { user, stopAt: () => false });
  assert.equal(p.status, 200, `the /phone-code page${describe(p)}\n${L.gwLogTail()}`);
  const f = forms(p.body).find((x) => x.buttons.some((bt) => bt.value === 'new'));
  assert.ok(f, `a form to make a code${describe(p)}`);
  p = await b.submit(p, { form: (x) => x.html === f.html, button: /make/i });
  const m = /Your phone code:<\/p>.*?<strong>([\d ]+)<\/strong>/s.exec(p.body);
  assert.ok(m, `a code is shown${describe(p)}`);
  return { browser: b, code: m[1].replace(/ /g, ''), page: p };
}

/** A raw UDP SIP client toward imsgw's phone listener (for what baresip would not send). */
async function udpClient() {
  const s = dgram.createSocket('udp4');
  await new Promise((r) => s.bind(0, '127.0.0.1', r));
  const c = { s, port: s.address().port, received: [] };
  s.on('message', (d) => c.received.push(parseSip(d.toString('utf8'))));
  c.send = (text) => new Promise((r) => s.send(text, PHONE_UDP, '127.0.0.1', r));
  c.next = async (pred, ms, what, from = 0) => {
    let hit;
    await waitFor(() => { hit = c.received.slice(from).find(pred); return Boolean(hit); }, ms, what);
    return hit;
  };
  c.close = () => s.close();
  return c;
}

function md5(s) { return crypto.createHash('md5').update(s).digest('hex'); }

/** A REGISTER with an optional Digest answer to `challenge` (parsed WWW-Authenticate value). */
function udpRegister(c, user, o = {}) {
  const branch = `z9hG4bK${crypto.randomBytes(6).toString('hex')}`;
  const lines = [
    'REGISTER sip:ims.example SIP/2.0',
    `Via: SIP/2.0/${c.transport || 'UDP'} 127.0.0.1:${c.port};rport;branch=${branch}`,
    'Max-Forwards: 70',
    `To: <sip:${user}@ims.example>`,
    `From: <sip:${user}@ims.example>;tag=${o.tag || 'p1'}`,
    `Call-ID: ${o.callId}`,
    `CSeq: ${o.cseq || 1} REGISTER`,
    `Contact: <sip:${user}@127.0.0.1:${c.port}${c.transport === 'TLS' ? ';transport=tls' : ''}>;+sip.instance="<urn:uuid:${o.instance}>"`,
    'Expires: 600',
  ];
  if (o.challenge) {
    const nonce = /nonce="([^"]+)"/.exec(o.challenge)[1];
    const realm = /realm="([^"]+)"/.exec(o.challenge)[1];
    const uri = 'sip:ims.example';
    const ha1 = md5(`${o.username}:${realm}:${o.password}`);
    const ha2 = md5(`REGISTER:${uri}`);
    const cnonce = crypto.randomBytes(4).toString('hex');
    const resp = md5(`${ha1}:${nonce}:00000001:${cnonce}:auth:${ha2}`);
    lines.push(`Authorization: Digest username="${o.username}", realm="${realm}", nonce="${nonce}", uri="${uri}", response="${resp}", algorithm=MD5, qop=auth, nc=00000001, cnonce="${cnonce}"`);
  }
  lines.push('Content-Length: 0', '', '');
  return { branch, text: lines.join('\r\n') };
}

/** A phone over TLS to imsgw's phone listener: framed SIP in and out (RFC 3261 §18.3). */
async function tlsClient() {
  const sock = tls.connect({ host: '127.0.0.1', port: PHONE_TLS, ca: fs.readFileSync(path.join(TLS_DIR, 'ca.pem')), servername: 'localhost' });
  await new Promise((resolve, reject) => { sock.once('secureConnect', resolve); sock.once('error', reject); });
  const c = { sock, port: sock.localPort, received: [], transport: 'TLS', onRequest: null };
  let buf = Buffer.alloc(0);
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.slice(0, end).toString('utf8');
      const len = Number((/^content-length:\s*(\d+)/im.exec(head) || [0, 0])[1]);
      if (buf.length < end + 4 + len) return;
      const m = parseSip(buf.slice(0, end + 4 + len).toString('utf8'));
      buf = buf.slice(end + 4 + len);
      c.received.push(m);
      if (m.method && c.onRequest) c.onRequest(m);
    }
  });
  c.send = (text) => new Promise((r) => sock.write(text, r));
  c.next = async (pred, ms, what, from = 0) => {
    let hit;
    await waitFor(() => { hit = c.received.slice(from).find(pred); return Boolean(hit); }, ms, what);
    return hit;
  };
  c.close = () => sock.destroy();
  return c;
}

/** The phone's answer to a request from the IMS side (RFC 3261 §8.2.6, §12.1.1). */
function answerRequest(c, m, code, reason, body = '') {
  const h = (n) => m.get(n).map((v) => `${n}: ${v}`);
  const lines = [`SIP/2.0 ${code} ${reason}`, ...h('Via'), ...h('Record-Route'), ...h('From'),
    `To: ${m.get('To')[0]}${/;tag=/.test(m.get('To')[0]) ? '' : ';tag=tlsphone'}`, ...h('Call-ID'), ...h('CSeq'),
    `Contact: <sip:bob@127.0.0.1:${c.port};transport=tls>`];
  if (body) lines.push('Content-Type: application/sdp');
  lines.push(`Content-Length: ${Buffer.byteLength(body)}`, '', body);
  return lines.join('\r\n');
}

/** REGISTER without credentials, then with the Digest answer; the final response. */
async function digestRegister(c, user, username, password, instance) {
  const callId = crypto.randomBytes(8).toString('hex');
  let from = c.received.length;
  let r = udpRegister(c, user, { callId, instance });
  await c.send(r.text);
  const ch = await c.next((m) => m.status && m.get('Via')[0].includes(r.branch), 3000, 'the challenge', from);
  assert.equal(ch.status, 401, ch.start);
  const digest = ch.get('WWW-Authenticate').find((v) => /^Digest .*algorithm=MD5/.test(v));
  assert.ok(digest, `an MD5 Digest challenge: ${JSON.stringify(ch.get('WWW-Authenticate'))}`);
  from = c.received.length;
  r = udpRegister(c, user, { callId, cseq: 2, instance, challenge: digest, username, password });
  await c.send(r.text);
  const fin = await c.next((m) => m.status >= 200 && m.get('Via')[0].includes(r.branch), 5000, 'the answer', from);
  return { res: fin, callId, challenge: ch };
}

test('1. alice makes a phone code on the web; baresip registers over UDP with it as its Digest password; Kamailio binds alice through imsgw', L.track(async () => {
  alice = await makeCode('alice');
  assert.match(alice.code, /^\d{8}$/);
  phone = await L.baresip(0, {
    user: 'alice',
    registrar: `127.0.0.1:${PHONE_UDP}`,
    extraAccount: `auth_user=alice@ims.example;auth_pass=${alice.code}`,
  });
  const b = await A.bindingExpires(L, 'alice');
  assert.ok(b !== null && b > 0, `Kamailio holds alice's binding:\n${await L.kam.ulDumpText()}`);
  const binding = (await L.kam.bindings('alice'))[0];
  // Through imsgw's flow token (no ;ob: baresip registers without RFC 5626 reg-id).
  assert.match(binding.Path || '', new RegExp(`^<sip:[A-Za-z0-9_-]{27}@127\.0\.0\.1:${base + 2};`), JSON.stringify(binding));
  const regs = L.kam.log().split('\n').filter((l) => l.includes('IMSMSG dir=req')).map((l) => Buffer.from(l.split('b64=')[1] || '', 'base64').toString())
    .filter((t) => t.startsWith('REGISTER'));
  assert.ok(regs.length >= 1, 'Kamailio received the REGISTER');
  for (const t of regs) {
    assert.doesNotMatch(t, /Digest username="alice@ims\.example", realm="ims\.example", nonce="[^"]/, 'the phone\'s Digest never reaches the IMS');
    assert.match(t, /integrity-protected="auth-done"/, t);
  }
}));

test('2. sipp calls alice from the IMS side: the INVITE reaches baresip over its UDP flow and it answers', L.track(async () => {
  assert.ok(phone, 'needs 1');
  const r = await L.sipp({ scenario: 'uac-invite.xml', service: 'alice', timeoutSecs: 15 });
  assert.equal(r.code, 0, `${sipp.describe(r)}\nbaresip log:\n${phone.log().slice(-1500)}`);
}));

test('3. a wrong password, and alice\'s code from a second phone, are refused 401 with nothing at Kamailio', L.track(async () => {
  assert.ok(alice, 'needs 1');
  const c = await udpClient();
  try {
    const wrong = await digestRegister(c, 'alice', 'alice@ims.example', '00000000', crypto.randomUUID());
    assert.equal(wrong.res.status, 401, wrong.res.start);
    assert.match(wrong.res.get('Warning')[0] || '', /wrong user name or password/);
    await A.assertNothingUpstream(L, wrong.callId);
    const second = await digestRegister(c, 'alice', 'alice@ims.example', alice.code, crypto.randomUUID());
    assert.equal(second.res.status, 401, `the code is the first phone's app password only: ${second.res.start}`);
    await A.assertNothingUpstream(L, second.callId);
    // Bob's user name with alice's code, for alice's AOR: 403 before any check.
    const other = await digestRegister(c, 'alice', 'bob@ims.example', alice.code, crypto.randomUUID());
    assert.equal(other.res.status, 403, other.res.start);
  } finally {
    c.close();
  }
}));

test('4. guessing is limited: past waf.phone_code.max_failures the IMPU is refused 403 with Retry-After', L.track(async () => {
  const c = await udpClient();
  try {
    let last;
    for (let i = 0; i < 4; i += 1) {
      last = await digestRegister(c, 'alice', 'alice@ims.example', `1111000${i}`, crypto.randomUUID());
    }
    assert.equal(last.res.status, 403, last.res.start);
    assert.ok(Number(last.res.get('Retry-After')[0]) > 0, last.res.start);
  } finally {
    c.close();
  }
}));

test('5. alice signs out on the web: the code\'s family is revoked; imsgw un-REGISTERs the phone and Kamailio drops the binding', L.track(async () => {
  assert.ok(alice && phone, 'needs 1');
  assert.equal((await L.kam.bindings('alice')).length, 1);
  const out = await alice.browser.request('POST', `${L.gw.httpUrl}/auth/logout`, { form: {}, headers: { origin: L.gw.httpUrl } });
  assert.ok([200, 303].includes(out.status), `sign-out: ${out.status}`);
  await waitFor(async () => (await L.kam.bindings('alice')).length === 0, 5000, `alice's binding gone:\n${L.gwLogTail()}`);
  await sleep(100);
  await L.healthy('the sign-out');
}));

test('6. over TLS: bob\'s phone signs in with his code on imsgw\'s phone TLS listener and takes a call from sipp on that connection', L.track(async () => {
  const bob = await makeCode('bob');
  const c = await tlsClient();
  try {
    const sdp = ['v=0', 'o=- 1 1 IN IP4 127.0.0.1', 's=-', 'c=IN IP4 127.0.0.1', 't=0 0', `m=audio ${base + 90} RTP/AVP 8`, 'a=rtpmap:8 PCMA/8000', ''].join('\r\n');
    c.onRequest = (m) => {
      if (m.method === 'INVITE') c.send(answerRequest(c, m, 200, 'OK', sdp));
      else if (m.method === 'BYE') c.send(answerRequest(c, m, 200, 'OK'));
      else if (m.method !== 'ACK') c.send(answerRequest(c, m, 200, 'OK'));
    };
    const r = await digestRegister(c, 'bob', 'bob@ims.example', bob.code, crypto.randomUUID());
    assert.equal(r.res.status, 200, `${r.res.start}\n${L.gwLogTail()}`);
    const binding = (await L.kam.bindings('bob'))[0];
    assert.ok(binding, `Kamailio holds bob's binding:\n${await L.kam.ulDumpText()}`);
    const call = await L.sipp({ scenario: 'uac-invite.xml', service: 'bob', timeoutSecs: 15 });
    assert.equal(call.code, 0, sipp.describe(call));
    const invite = c.received.find((m) => m.method === 'INVITE');
    assert.ok(invite, 'the INVITE came down the TLS connection');
    assert.match(invite.get('Via')[0], new RegExp(`^SIP/2.0/TLS 127\\.0\\.0\\.1:${PHONE_TLS};rport;branch=`), 'imsgw\'s Via names its phone TLS listener');
    assert.ok(c.received.some((m) => m.method === 'BYE'), 'the BYE too');
  } finally {
    c.close();
  }
}));

test('7. keep-alives: a CRLFCRLF ping over TCP gets its CRLF pong (RFC 5626 §4.4.1) and the connection still takes SIP; a STUN Binding over UDP gets the source address back (RFC 5626 §4.4.2, RFC 5389)', L.track(async () => {
  const net = require('node:net');
  const sock = net.connect(PHONE_TCP, '127.0.0.1');
  await new Promise((r, j) => { sock.once('connect', r); sock.once('error', j); });
  let got = '';
  sock.on('data', (d) => { got += d.toString('utf8'); });
  try {
    sock.write('\r\n\r\n');
    await waitFor(() => got === '\r\n', 2000, 'the CRLF pong');
    const c = { port: sock.localPort, transport: 'TCP' };
    const r = udpRegister(c, 'carol', { callId: crypto.randomBytes(6).toString('hex'), instance: crypto.randomUUID() });
    sock.write(r.text);
    await waitFor(() => /^SIP\/2\.0 401 /m.test(got), 3000, `a 401 over TCP: ${JSON.stringify(got)}`);
    assert.match(got, /WWW-Authenticate: Digest realm="ims\.example", nonce="[^"]+", algorithm=MD5, qop="auth"/);
  } finally {
    sock.destroy();
  }
  const u = dgram.createSocket('udp4');
  await new Promise((r) => u.bind(0, '127.0.0.1', r));
  try {
    const txid = crypto.randomBytes(12);
    const req = Buffer.concat([Buffer.from([0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42]), txid]);
    const reply = new Promise((r) => u.once('message', r));
    u.send(req, PHONE_UDP, '127.0.0.1');
    const m = await Promise.race([reply, sleep(2000).then(() => null)]);
    assert.ok(m, 'a STUN Binding response');
    assert.equal(m.readUInt16BE(0), 0x0101, 'Binding success');
    assert.ok(m.slice(8, 20).equals(txid), 'same transaction id');
    assert.equal(m.readUInt16BE(20), 0x0020, 'XOR-MAPPED-ADDRESS');
    assert.equal(m.readUInt16BE(26) ^ 0x2112, u.address().port, 'our own port');
  } finally {
    u.close();
  }
}));

test('8. sipp as another maker\'s phone: carol\'s code as sipp\'s own Digest password over UDP -> 200, and Kamailio binds carol', L.track(async () => {
  const carol = await makeCode('carol');
  const r = await L.sipp({
    scenario: 'register-digest.xml',
    service: 'carol',
    target: `127.0.0.1:${PHONE_UDP}`,
    args: ['-au', 'carol@ims.example', '-ap', carol.code],
    timeoutSecs: 10,
  });
  assert.equal(r.code, 0, `${sipp.describe(r)}\n${L.gwLogTail()}`);
  assert.equal((await L.kam.bindings('carol')).length, 1, await L.kam.ulDumpText());
}));

test('9. a UDP phone\'s requests ride nothing on their source address: a MESSAGE without Digest -> 407 and Kamailio never sees it; with the password\'s answer it reaches Kamailio (without the Digest); the same answer again -> 407', L.track(async () => {
  const dave = await makeCode('dave');
  const c = await udpClient();
  try {
    const reg = await digestRegister(c, 'dave', 'dave@ims.example', dave.code, crypto.randomUUID());
    assert.equal(reg.res.status, 200, reg.res.start);
    const nonce = /nonce="([^"]+)"/.exec(reg.challenge.get('WWW-Authenticate').find((v) => /MD5/.test(v)))[1];
    const uri = 'sip:carol@ims.example';
    const message = (callId, auth) => {
      const branch = `z9hG4bK${crypto.randomBytes(6).toString('hex')}`;
      const lines = [`MESSAGE ${uri} SIP/2.0`, `Via: SIP/2.0/UDP 127.0.0.1:${c.port};rport;branch=${branch}`,
        'Max-Forwards: 70', `To: <${uri}>`, `From: <sip:dave@ims.example>;tag=d${callId.slice(0, 4)}`,
        `Call-ID: ${callId}`, 'CSeq: 1 MESSAGE', 'Content-Type: text/plain'];
      if (auth) lines.push(auth);
      lines.push('Content-Length: 2', '', 'hi');
      return { branch, text: lines.join('\r\n') };
    };
    const answer = async (m) => {
      const from = c.received.length;
      await c.send(m.text);
      return c.next((x) => x.status >= 200 && x.get('Via')[0].includes(m.branch), 5000, 'an answer', from);
    };
    // What someone forging the phone's source address can send: no Digest answer.
    const forged = crypto.randomBytes(6).toString('hex');
    let r = await answer(message(forged));
    assert.equal(r.status, 407, r.start);
    assert.match(r.get('Proxy-Authenticate')[0] || '', /^Digest realm="ims\.example", nonce="[^"]+", algorithm=MD5/);
    await A.assertNothingUpstream(L, forged);
    // The phone itself answers with its password (RFC 7616 §3.4.1, nc 2 on the sign-in's nonce).
    const ha1 = md5(`dave@ims.example:ims.example:${dave.code}`);
    const resp = md5(`${ha1}:${nonce}:00000002:c9:auth:${md5(`MESSAGE:${uri}`)}`);
    const cred = `Proxy-Authorization: Digest username="dave@ims.example", realm="ims.example", nonce="${nonce}", uri="${uri}", response="${resp}", algorithm=MD5, qop=auth, nc=00000002, cnonce="c9"`;
    const good = crypto.randomBytes(6).toString('hex');
    await c.send(message(good, cred).text);
    const sent = await A.waitKamRequest(L, good, 'MESSAGE');
    assert.deepEqual(sent.get('Proxy-Authorization'), [], 'the phone\'s Digest never reaches the IMS');
    assert.match(sent.get('From')[0], /sip:dave@ims\.example/);
    // The same answer replayed (as a forger who saw it would): 407, Kamailio never sees it.
    const replay = crypto.randomBytes(6).toString('hex');
    r = await answer(message(replay, cred));
    assert.equal(r.status, 407, r.start);
    await A.assertNothingUpstream(L, replay);
  } finally {
    c.close();
  }
}));
