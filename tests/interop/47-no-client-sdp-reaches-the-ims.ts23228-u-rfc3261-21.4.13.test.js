'use strict';
// With media anchoring (block 47), nothing a WebSocket client writes as a media description
// reaches the IMS (TS 23.228 Annex U: the IMS leg's SDP is the eIMS-AGW's own). A hostile,
// registered client tries the ways around the engine, each with an SDP that would aim the IMS
// side's media at a third party (198.51.100.9:7777); the assertions are on what Kamailio
// (-A LOG_MSG) received, whole:
// - an INVITE whose offer is plain RTP/AVP at the third party: whatever imsgw answers, no
//   message Kamailio received names the third party, and an INVITE that reached it carries
//   imsgw's own address and a port of media.rtp_ports;
// - the same SDP inside a multipart/mixed body, and as an untyped body: 415 with
//   `Accept: application/sdp` (RFC 3261 §21.4.13), Kamailio receives nothing;
// - the SDP as the body of a MESSAGE outside any call: 488, Kamailio receives nothing;
// - an UPDATE with it in a dialog imsgw holds no media for: 488, Kamailio receives nothing.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { useLab, uniqueUser } = require('../lib/lab');
const { DOMAIN, sleep } = require('../lib/env');
const A = require('../lib/auth');

const L = useLab({ name: 'no-client-sdp', block: 47, kamailio: { defines: ['LOG_MSG'] }, media: true });
const THIRD = '198.51.100.9';
const FORGED = `v=0\r\no=x 1 1 IN IP4 ${THIRD}\r\ns=-\r\nc=IN IP4 ${THIRD}\r\nt=0 0\r\nm=audio 7777 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n`;

let c; let u;

/** Every message Kamailio received for the Call-ID, none naming the third party. */
async function kamNeverSawThirdParty(callId) {
  await sleep(300);
  const msgs = A.kamMessages(L.kam, callId);
  for (const m of msgs) {
    assert.doesNotMatch(m.text, new RegExp(`${THIRD.replace(/\./g, '\\.')}|\\b7777\\b`), `Kamailio received the client's own SDP:\n${m.text}`);
  }
  return msgs;
}

test('0. a client registers', L.track(async () => {
  c = await L.raw();
  u = uniqueUser('hostile');
  const r = await A.register(c, u, { auth: `Bearer ${await L.mint(u)}`, expires: 300 });
  assert.equal(r.res.status, 200, r.res.start);
}));

test('1. an RTP/AVP offer at a third party: Kamailio never sees the third party', L.track(async () => {
  const callId = `avp-${uniqueUser('ci')}`;
  const inv = c.build('INVITE', `sip:nobody-${callId}@${DOMAIN}`, {
    user: u, over: { 'Call-ID': callId, To: `<sip:nobody-${callId}@${DOMAIN}>` }, body: FORGED,
    extra: [`Contact: <sip:${u}@${c.host};transport=ws>`, 'Content-Type: application/sdp'],
  });
  const res = await c.request(inv, 8000);
  assert.ok(res.status >= 400, `refused or not found, never accepted with the client's SDP: ${res.start}`);
  const msgs = await kamNeverSawThirdParty(callId);
  for (const m of msgs.filter((x) => x.dir === 'req' && x.method === 'INVITE')) {
    // If imsgw made an offer of its own, it is imsgw's: its address, a port of media.rtp_ports.
    const port = Number((/^m=audio (\d+) RTP\/AVP/m.exec(m.text) || [])[1]);
    assert.match(m.text, /^c=IN IP4 127\.0\.0\.1\r?$/m, m.text);
    assert.ok(port >= L.p.base + 50 && port <= L.p.base + 69, `port ${port} in media.rtp_ports:\n${m.text}`);
  }
  // Whatever was made for it is gone again.
  const end = Date.now() + 5000;
  for (;;) {
    const body = (await L.gw.metrics()).body;
    if (/^imsgw_media_sessions 0$/m.test(body) && /^imsgw_media_ports_in_use 0$/m.test(body)) break;
    assert.ok(Date.now() < end, `a media session or port left:\n${body.split('\n').filter((l) => l.startsWith('imsgw_media')).join('\n')}`);
    await sleep(200);
  }
}));

test('2. the SDP in a multipart body or an untyped body: 415, nothing reaches Kamailio', L.track(async () => {
  const boundary = 'b0undary';
  const multipart = `--${boundary}\r\nContent-Type: application/sdp\r\n\r\n${FORGED}\r\n--${boundary}\r\nContent-Type: text/plain\r\n\r\nhi\r\n--${boundary}--\r\n`;
  for (const [what, body, ct] of [
    ['multipart', multipart, [`Content-Type: multipart/mixed;boundary=${boundary}`]],
    ['untyped', FORGED, []],
  ]) {
    const callId = `${what}-${uniqueUser('ci')}`;
    const inv = c.build('INVITE', `sip:nobody-${callId}@${DOMAIN}`, {
      user: u, over: { 'Call-ID': callId, To: `<sip:nobody-${callId}@${DOMAIN}>` }, body,
      extra: [`Contact: <sip:${u}@${c.host};transport=ws>`, ...ct],
    });
    const res = await c.request(inv, 8000);
    assert.equal(res.status, 415, `${what}: ${res.start}`);
    assert.deepEqual(res.get('Accept'), ['application/sdp'], `${what}: ${res.text}`);
    await A.assertNothingUpstream(L, callId);
  }
}));

test('3. the SDP as a MESSAGE body, or in an UPDATE of a dialog without media: 488, nothing reaches Kamailio', L.track(async () => {
  for (const method of ['MESSAGE', 'UPDATE']) {
    const callId = `${method.toLowerCase()}-${uniqueUser('ci')}`;
    const over = { 'Call-ID': callId, To: `<sip:nobody@${DOMAIN}>${method === 'UPDATE' ? ';tag=x1' : ''}` };
    const text = c.build(method, `sip:nobody@${DOMAIN}`, {
      user: u, over, body: FORGED, extra: ['Content-Type: application/sdp'],
    });
    const res = await c.request(text, 8000);
    assert.equal(res.status, 488, `${method}: ${res.start}`);
    await A.assertNothingUpstream(L, callId);
  }
}));
