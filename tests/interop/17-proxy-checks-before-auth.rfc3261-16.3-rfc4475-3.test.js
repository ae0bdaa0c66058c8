'use strict';
// RFC 3261 §16.3 order at the running gateway: syntax (400, 505 for another SIP version), URI
// scheme (416), Max-Forwards (483), loops (482), Proxy-Require (420 + Unsupported), and only
// then the RFC 8898 Bearer challenge. Every RFC 4475 torture message is sent over its own
// WebSocket without a token; each gets what RFC 4475 §3 says a proxy owes it, and the real
// Kamailio behind the edge receives none of them.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { useLab } = require('../lib/lab');
const { REPO, sleep } = require('../lib/env');

const L = useLab({ name: 'order', block: 29, transport: 'udp', kamailio: { defines: ['FR_TIMER=3000', 'LOG_MSG'] } });
const DIR = path.join(REPO, 'server', 'sip', 'tests', 'rfc4475');

// RFC 4475 §3: the answer a proxy gives (null: a response, or nothing to answer); 401 means
// "a proxy forwards it", which here reaches the Bearer check.
const EXPECTED = {
  wsinv: 401, intmeth: 401, esc01: 401, escnull: 401, esc02: 401, lwsdisp: 401, longreq: 401,
  dblreq: 401, semiuri: 401, transports: 401, mpart01: 401, unreason: null, noreason: null, // 3.1.1
  badinv01: 400, clerr: 400, scalar02: 400, scalarlg: null, quotbal: 400, ltgtruri: 400,
  lwsruri: 400, lwsstart: 400, trws: 400, escruri: 400, baddate: 401, regbadct: 400,
  badaspec: 400, baddn: 400, badvers: 505, mismatch01: 400, mismatch02: 400, bigcode: null, // 3.1.2
  badbranch: 401, // 3.2
  insuf: 400, unkscm: 416, novelsc: 416, unksm2: 401, bext01: 420, invut: 401, regaut01: 401,
  multi01: 400, mcl01: 400, bcast: null, zeromf: 483, cparam01: 401, cparam02: 401,
  regescrt: 401, sdp01: 401, // 3.3
  inv2543: 401, ncl: 400, // 3.4, 3.1.2.2
};

test('every RFC 4475 message over a WebSocket gets the proxy answer of §3, proxy checks before the challenge', L.track(async () => {
  const files = fs.readdirSync(DIR).filter((f) => f.endsWith('.dat') && f !== 'test.dat').map((f) => f.slice(0, -4));
  assert.deepEqual(files.sort(), Object.keys(EXPECTED).sort(), 'every message has an expectation');
  const wrong = [];
  for (const name of files) {
    const c = await L.raw();
    c.send(fs.readFileSync(path.join(DIR, `${name}.dat`)));
    const want = EXPECTED[name];
    let got = null;
    if (want === null) {
      await sleep(250);
      got = c.received.find((m) => m.status) || null;
    } else {
      got = await c.next((m) => m.status >= 200, 3000, `answer to ${name}`).catch(() => null);
    }
    const code = got ? got.status : null;
    if (code !== want) wrong.push(`${name}: want ${want}, got ${code}`);
    if (name === 'bext01' && got) {
      assert.deepEqual(got.get('Unsupported'), ['noProxiesSupportThis, norDoAnyProxiesSupportThis'], 'bext01: Unsupported lists the Proxy-Require tags');
    }
    if (want === 401 && got) {
      assert.equal(got.get('WWW-Authenticate').length, 1, `${name}: the Bearer challenge`);
    }
    await c.close();
  }
  assert.deepEqual(wrong, []);
  await sleep(300);
  const seen = L.kam.log().split('\n').filter((l) => l.includes('IMSMSG'));
  assert.deepEqual(seen, [], 'Kamailio received none of them');
}));
