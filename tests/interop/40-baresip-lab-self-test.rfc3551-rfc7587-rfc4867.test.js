'use strict';
// The media lab proves itself before the gateway is involved (block 40): two baresip phones
// registered at the lab's Kamailio call each other with different tones (carol 1000 Hz, dave
// 440 Hz) over PCMA, PCMU and opus, and over AMR-WB only; each side's recording of the call
// (sndfile's decoded dump) carries the other side's tone within 2 %. RFC 4733 DTMF between them
// is reported by the receiving phone. If this fails, the audio tests against imsgw (41-) cannot
// be believed either way.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { useLab } = require('../lib/lab');
const { audio, sleep } = require('../lib/baresip');

const L = useLab({ name: '40-baresip-lab-self-test', block: 40, gateway: false });

const CALLER_HZ = 1000;
const CALLEE_HZ = 440;

/**
 * carol (CALLER_HZ) calls dave (CALLEE_HZ, auto-answer), both offering only `codec`; talk for
 * `talkMs`; carol hangs up. Returns both phones and both measured dumps.
 */
async function callBetween(codec, { talkMs = 2500, digits } = {}) {
  await L.stopPhones(); // the previous test's, if it failed half-way
  const [carol, dave] = await Promise.all([
    L.baresip(0, { prefix: 'carol', codecs: [codec], tone: await audio.toneFor(L.dir, codec, CALLER_HZ) }),
    L.baresip(1, { prefix: 'dave', codecs: [codec], tone: await audio.toneFor(L.dir, codec, CALLEE_HZ) }),
  ]);
  try {
    await carol.dial(dave.aor);
    await carol.waitEvent('CALL_ESTABLISHED', { ms: 10000, what: `${codec} call from carol to dave established` });
    await dave.waitEvent('CALL_ESTABLISHED', { ms: 5000 });
    await sleep(talkMs);
    let dtmf = null;
    if (digits) {
      const m = dave.mark();
      await carol.sendDigits(digits);
      await dave.waitEvent('CALL_DTMF_END', { from: m, ms: 5000, pred: () => dave.dtmfReceived(m).length >= digits.length, what: `DTMF ${digits} at dave` });
      dtmf = dave.dtmfReceived(m);
    }
    await carol.hangup();
    await carol.waitEvent('CALL_CLOSED', { ms: 5000 });
    await dave.waitEvent('CALL_CLOSED', { ms: 5000, what: 'BYE at dave' });
    await sleep(200); // sndfile closes its files as the call's audio stops
    const heard = { carol: carol.analyseDump(), dave: dave.analyseDump() };
    const name = codec.split('/')[0];
    for (const b of [carol, dave]) assert.deepEqual(b.decoders(), [name], `${b.name} decoded only ${name}`);
    return { carol, dave, heard, dtmf };
  } finally {
    await L.stopPhones();
  }
}

function assertHeard(a, hz, who, codec) {
  const d = audio.describe(a);
  assert.ok(a.rms > 0.05, `${codec}: ${who}'s recording is silent or too quiet: ${d}`);
  assert.ok(audio.near(a.hz, hz), `${codec}: ${who} should hear ${hz} Hz ±2 %: ${d}`);
}

for (const codec of ['PCMA/8000/1', 'PCMU/8000/1', 'opus/48000/2']) {
  test(`${codec}: each phone's recording carries the other's tone ±2 %`, L.track(async () => {
    const { heard } = await callBetween(codec);
    assertHeard(heard.carol, CALLEE_HZ, 'carol (caller)', codec);
    assertHeard(heard.dave, CALLER_HZ, 'dave (callee)', codec);
  }));
}

test('PCMA with RFC 4733 DTMF: the receiving phone reports the digits sent', L.track(async () => {
  const { dtmf } = await callBetween('PCMA/8000/1', { talkMs: 500, digits: '1234567890*#' });
  assert.equal(dtmf, '1234567890*#', 'digits reported by CALL_DTMF_START at dave');
}));

test('AMR-WB only on both sides: the amr module loads and carries both tones ±2 %', L.track(async () => {
  const codec = 'AMR-WB/16000/1';
  const { heard } = await callBetween(codec);
  assertHeard(heard.carol, CALLEE_HZ, 'carol (caller)', codec);
  assertHeard(heard.dave, CALLER_HZ, 'dave (callee)', codec);
}));
