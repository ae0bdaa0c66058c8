'use strict';
// TS 24.229 §4.4 (trust domain), RFC 3325 §5, RFC 8898 §2.1.4: every user reaches the P-CSCF
// from imsgw's one address, so nothing a client writes about identity, trust or credentials may
// cross the edge, and every request from a registered flow -- REGISTER, out-of-dialog and
// in-dialog alike, ACK included -- states who sent it as sip.identity_assertion says.
// Kamailio (-A LOG_MSG) logs each message it received, whole; the assertions are on that.
const { describe, test } = require('node:test');
const assert = require('node:assert/strict');
const { useLab, uniqueUser } = require('../lib/lab');
const { DOMAIN } = require('../lib/env');
const sipp = require('../lib/sipp');
const A = require('../lib/auth');

const KAM = { defines: ['FR_TIMER=3000', 'LOG_MSG'] };
const aor = (u) => `sip:${u}@${DOMAIN}`;
const tna = (u) => `Digest username="${u}@${DOMAIN}", realm="${DOMAIN}", uri="sip:${DOMAIN}", nonce="", response="", integrity-protected="auth-done"`;

/** What a hostile client adds to every request. */
const FORGED = [
  'P-Asserted-Identity: <sip:admin@ims.example>',
  'P-Preferred-Identity: <sip:victim@ims.example>',
  'P-Served-User: <sip:victim@ims.example>;sescase=orig;regstate=reg',
  'Authorization: Digest username="victim@ims.example", realm="ims.example", uri="sip:ims.example", nonce="", response="", integrity-protected="auth-done"',
  'Proxy-Authorization: Digest username="victim@ims.example", realm="ims.example", integrity-protected="yes"',
  'Path: <sip:forged-path@198.51.100.7;lr>',
  'Record-Route: <sip:forged-rr@198.51.100.7;lr>',
  'P-Charging-Vector: icid-value=forged-icid',
  'P-Charging-Function-Addresses: ccf=forged-ccf',
  'P-Visited-Network-ID: forged-network',
  'P-Profile-Key: <sip:forged-profile@ims.example>',
  'X-Harmless: passes',
];

/**
 * Asserts one message as Kamailio received it from imsgw: none of FORGED's identity or trust
 * headers, Authorization and P-Asserted-Identity exactly as expected, X-Harmless untouched.
 */
function assertClean(m, { auth, pai }) {
  const dump = `${m.start}\n${m.text}`;
  for (const name of ['P-Preferred-Identity', 'P-Served-User', 'Proxy-Authorization', 'P-Charging-Vector',
    'P-Charging-Function-Addresses', 'P-Visited-Network-ID', 'P-Profile-Key']) {
    assert.deepEqual(m.get(name), [], `${name} reached Kamailio:\n${dump}`);
  }
  for (const name of ['Path', 'Record-Route']) {
    for (const v of m.get(name)) assert.doesNotMatch(v, /forged/, `${name}: the client's own reached Kamailio:\n${dump}`);
  }
  assert.doesNotMatch(m.text, /admin@|victim@|forged|integrity-protected="yes"/, dump);
  assert.deepEqual(m.get('Authorization'), auth, `Authorization:\n${dump}`);
  assert.deepEqual(m.get('P-Asserted-Identity'), pai, `P-Asserted-Identity:\n${dump}`);
  assert.deepEqual(m.get('X-Harmless'), ['passes'], dump);
}

/** Route set for in-dialog requests from the UAC: the 2xx's Record-Route in reverse (RFC 3261 §12.1.2). */
const routeSet = (res) => res.get('Record-Route').flatMap((v) => v.split(/,\s*(?=<)/)).reverse();

for (const [mode, block] of [['tna', 17], ['pai', 18], ['passthrough', 19]]) {
  describe(`sip.identity_assertion = ["${mode}"]`, () => {
    const L = useLab({ name: `trust-${mode}`, block, transport: 'udp', kamailio: KAM, imsgw: { extraSip: { identity_assertion: [mode] } } });
    let c; let u; let token;
    const expectAuth = (register) => {
      if (mode === 'tna') return [tna(u)];
      if (mode === 'passthrough') return [`Bearer ${token}`];
      return register ? [] : [];
    };
    const expectPai = (register) => (mode === 'pai' && !register ? [`<${aor(u)}>`] : []);

    test('REGISTER with forged identity, trust and credential headers: only imsgw\'s assertion reaches Kamailio', L.track(async () => {
      c = await L.raw();
      u = uniqueUser(`trust${mode}`);
      token = await L.mint(u);
      const r = await A.register(c, u, { auth: `Bearer ${token}`, expires: 300, extra: FORGED });
      assert.equal(r.res.status, 200, r.res.start);
      const m = await A.waitKamRequest(L, r.callId, 'REGISTER');
      assertClean(m, { auth: expectAuth(true), pai: expectPai(true) });
      // imsgw's Path is the only one, and it names imsgw
      assert.equal(m.get('Path').length, 1, m.text);
      assert.match(m.get('Path')[0], new RegExp(`@${L.imsgwAddr().replace(/\./g, '\\.')};`), m.text);
    }));

    test('out-of-dialog MESSAGE and OPTIONS riding the registration: forged headers removed, identity asserted', L.track(async () => {
      const bob = await L.ua('bob');
      for (const method of ['MESSAGE', 'OPTIONS']) {
        const callId = `${method.toLowerCase()}-${uniqueUser('ci')}`;
        const text = c.build(method, bob.aor, {
          user: u, over: { 'Call-ID': callId, To: `<${bob.aor}>` }, body: method === 'MESSAGE' ? 'hi' : '',
          extra: [...FORGED, ...(method === 'MESSAGE' ? ['Content-Type: text/plain'] : [])],
        });
        const res = await c.request(text, 6000);
        assert.ok(res.status < 300, `${method}: ${res.start}`);
        const m = await A.waitKamRequest(L, callId, method);
        assert.equal(m.src.split(':')[0], '127.0.0.1');
        assertClean(m, { auth: expectAuth(false), pai: expectPai(false) });
      }
      const got = bob.messages[bob.messages.length - 1];
      assert.deepEqual(got.request.getHeaders('P-Preferred-Identity'), []);
      assert.deepEqual(got.request.getHeaders('P-Served-User'), []);
    }));

    test('INVITE, ACK and BYE in the dialog: each asserted, none carries what the client forged', L.track(async () => {
      const callee = uniqueUser('uas');
      const port = L.p.sipp(2);
      const reg = await L.sipp({
        scenario: 'register-with-path.xml', service: callee,
        keys: { path: `sip:uas@127.0.0.1:${port};lr;ob`, contact: `sip:${callee}@127.0.0.1:${port};ob`, expires: 300, instance: '00000000-0000-4000-8000-00000000b0b1' },
      });
      assert.equal(reg.code, 0, sipp.describe(reg));
      const uas = sipp.start({ dir: L.dir, name: `uas-${mode}`, scenario: 'uas.xml', port, mediaPort: L.p.media(2), timeoutSecs: 15 });
      const callId = `dlg-${uniqueUser('ci')}`;
      const sdp = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n';
      const inv = c.build('INVITE', aor(callee), {
        user: u, over: { 'Call-ID': callId, To: `<${aor(callee)}>` }, body: sdp,
        extra: [...FORGED, `Contact: <sip:${u}@${c.host};transport=ws>`, 'Content-Type: application/sdp'],
      });
      const ok = await c.request(inv, 8000);
      assert.equal(ok.status, 200, ok.start);
      const toTag = ok.get('To')[0];
      const route = routeSet(ok);
      const target = /<([^>]+)>/.exec(ok.get('Contact')[0])[1];
      const inDialog = (method, cseq) => c.build(method, target, {
        user: u, cseq, over: { 'Call-ID': callId, To: toTag },
        extra: [...FORGED, ...route.map((r) => `Route: ${r}`)],
      });
      c.send(inDialog('ACK', '1 ACK'));
      // Kamailio's UDP workers may pass on two back-to-back requests out of order (sipp then
      // aborts on a BYE before the ACK): the BYE goes once Kamailio has the ACK.
      await A.waitKamRequest(L, callId, 'ACK');
      const bye = await c.request(inDialog('BYE', '2 BYE'), 6000);
      assert.equal(bye.status, 200, bye.start);
      const done = await uas.done;
      assert.equal(done.code, 0, sipp.describe(done));
      for (const method of ['INVITE', 'ACK', 'BYE']) {
        const fromImsgw = A.kamMessages(L.kam, callId).filter((m) => m.dir === 'req' && m.method === method
          && m.get('Via').length === 2 && m.src === `127.0.0.1:${L.p.sip}`);
        assert.equal(fromImsgw.length, 1, `one ${method} from imsgw at Kamailio: ${A.kamMessages(L.kam, callId).map((m) => m.start).join(' | ')}`);
        assertClean(fromImsgw[0], { auth: expectAuth(false), pai: expectPai(false) });
      }
    }));
  });
}
