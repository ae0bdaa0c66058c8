'use strict';
// RFC 3261 §16.9 (a transport error toward the next hop counts as 503) and §17.1.4: with
// Kamailio stopped, the client's REGISTER and MESSAGE get 503 at once -- over UDP from the ICMP
// port-unreachable, over TCP from the refused connect -- instead of 408 after 64*T1. When Kamailio
// is back, registering works again through the same imsgw process (no restart).
const { describe, test } = require('node:test');
const assert = require('node:assert/strict');
const { useLab } = require('../lib/lab');
const { assertRegisteredWithPath, assertIncomingMessage } = require('../lib/checks');

const PROMPT_MS = 1000; // "promptly": far below 64*T1 (here 64*100 ms = 6.4 s)

for (const [transport, block] of [['udp', 5], ['tcp', 6]]) {
  describe(`upstream over ${transport}`, () => {
    // t1_ms=100 so that a wrong 408 costs 6.4 s, not 32 s
    const L = useLab({ name: `upstream-down-${transport}`, block, transport, imsgw: { t1Ms: 100 } });
    let ua;

    test('baseline: registered through imsgw', L.track(async () => {
      ua = await L.ua(`down${transport}`);
      await assertRegisteredWithPath(L, ua);
    }));

    test('Kamailio stopped -> REGISTER gets 503 promptly', L.track(async () => {
      await L.kam.stop();
      assert.equal(L.kam.running(), false);
      const mark = L.gw.logMark();
      const t0 = process.hrtime.bigint();
      const err = await ua.register(15000).then(() => null, (e) => e);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      console.log(`[${transport}] REGISTER with Kamailio down: ${err && err.response ? err.response.status_code : err && err.cause} after ${ms.toFixed(1)} ms`);
      assert.ok(err, 'REGISTER must not succeed with Kamailio down');
      assert.ok(err.response, `JsSIP got no response at all (${err.cause}); imsgw log:\n${L.gw.logSince(mark)}`);
      assert.equal(err.response.status_code, 503, `REGISTER answered ${err.response.status_code} after ${ms.toFixed(0)} ms; imsgw log:\n${L.gw.logSince(mark)}`);
      assert.ok(ms < PROMPT_MS, `503 took ${ms.toFixed(0)} ms (limit ${PROMPT_MS})`);
    }));

    test('Kamailio stopped -> MESSAGE gets 503 promptly', L.track(async () => {
      const mark = L.gw.logMark();
      const t0 = process.hrtime.bigint();
      const r = await ua.message(`sip:nobody@ims.example`, 'is anyone there?', 15000);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      console.log(`[${transport}] MESSAGE with Kamailio down: ${r.code || r.cause} after ${ms.toFixed(1)} ms`);
      assert.equal(r.code, 503, `MESSAGE answered ${r.code} (${r.cause}) after ${ms.toFixed(0)} ms; imsgw log:\n${L.gw.logSince(mark)}`);
      assert.ok(ms < PROMPT_MS, `503 took ${ms.toFixed(0)} ms (limit ${PROMPT_MS})`);
    }));

    test('Kamailio back -> REGISTER works again without restarting imsgw', L.track(async () => {
      const pidBefore = L.gw.child.pid;
      await L.kam.start();
      // the restarted Kamailio has an empty location table
      assert.equal((await L.kam.bindings(ua.user)).length, 0);
      const t0 = Date.now();
      ua.registerResponse = await ua.register(10000);
      console.log(`[${transport}] REGISTER after Kamailio restart: 200 after ${Date.now() - t0} ms`);
      await assertRegisteredWithPath(L, ua);
      assert.equal(L.gw.exit, null, 'imsgw kept running');
      assert.equal(L.gw.child.pid, pidBefore);
      // and the way back down the WebSocket works too
      await assertIncomingMessage(L, ua);
    }));
  });
}
