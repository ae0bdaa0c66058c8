'use strict';
// The media lab proves itself before the gateway is involved (block 40): two baresip phones
// registered at the lab's Kamailio call each other with different tones (carol 1000 Hz, dave
// 440 Hz) over PCMA, PCMU and opus, and over AMR-WB only; each side's recording of the call
// (sndfile's decoded dump) carries the other side's tone within 2 %. RFC 4733 DTMF between them
// is reported by the receiving phone; sipp's early-media callee (183 + RTP stream) is heard by
// a baresip caller before the answer. If this fails, the audio tests against imsgw (41-) cannot
// be believed either way.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { useLab, uniqueUser, DOMAIN } = require('../lib/lab');
const { audio, sleep } = require('../lib/baresip');
const sipp = require('../lib/sipp');

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

test('sipp early media (tests/sipp/uas-early-media.xml): a baresip caller hears its RTP stream during 183, then the call is answered', L.track(async () => {
  await L.stopPhones();
  const sip = L.p.base + 36; // the UAS; base+37 registers it
  const user = uniqueUser('early');
  await audio.makeAlaw(`${L.dir}/early-tone.al`, { hz: CALLEE_HZ, secs: 10 });
  const reg = await sipp.run({
    dir: L.dir, name: 'register-early', scenario: 'register-with-path.xml', service: user, port: L.p.base + 37,
    target: `127.0.0.1:${L.p.ims}`, timeoutSecs: 5,
    keys: { path: `sip:uas@127.0.0.1:${sip};lr;ob`, contact: `sip:${user}@127.0.0.1:${sip};ob`, expires: 300, instance: '00000000-0000-4000-8000-000000004036' },
  });
  assert.equal(reg.code, 0, sipp.describe(reg));
  const uas = sipp.start({ dir: L.dir, name: 'uas-early-media', scenario: 'uas-early-media.xml', port: sip, mediaPort: L.p.base + 40, timeoutSecs: 20, cwd: L.dir });
  const carol = await L.baresip(0, { prefix: 'carol', codecs: ['PCMA/8000/1'], tone: await audio.toneFor(L.dir, 'PCMA/8000/1', CALLER_HZ) });
  try {
    await carol.dial(`sip:${user}@${DOMAIN}`);
    const progress = await carol.waitEvent('CALL_PROGRESS', { ms: 5000, what: '183 Session Progress' });
    const est = await carol.waitEvent('CALL_ESTABLISHED', { ms: 10000 });
    assert.ok(est.at - progress.at > 4000, `answered about 5 s after the 183 (${est.at - progress.at} ms)`);
    await sleep(1000);
    await carol.hangup();
    const r = await uas.done;
    assert.equal(r.code, 0, sipp.describe(r));
    await sleep(200);
    const a = carol.analyseDump([], { from: 0.5, to: (est.at - progress.at) / 1000 - 0.5 });
    assertHeard(a, CALLEE_HZ, 'carol during early media', 'PCMA');
  } finally {
    await L.stopPhones();
  }
}));

test('hold and resume between two phones: RTP flows on after resume (rtp_stats), the callee\'s dump stops at the first re-INVITE (a baresip 1.0 limit the gateway tests work around)', L.track(async () => {
  await L.stopPhones();
  const codec = 'PCMA/8000/1';
  const [carol, dave] = await Promise.all([
    L.baresip(0, { prefix: 'carol', codecs: [codec], tone: await audio.toneFor(L.dir, codec, CALLER_HZ) }),
    L.baresip(1, { prefix: 'dave', codecs: [codec], tone: await audio.toneFor(L.dir, codec, CALLEE_HZ) }),
  ]);
  try {
    const t0 = Date.now();
    await carol.dial(dave.aor);
    await carol.waitEvent('CALL_ESTABLISHED', { ms: 10000 });
    await sleep(1500);
    await dave.hold();
    await sleep(1500);
    await dave.resume();
    await sleep(2000);
    const m = dave.mark();
    await carol.sendDigits('42');
    await dave.waitEvent('CALL_DTMF_END', { from: m, ms: 5000, pred: () => dave.dtmfReceived(m).length >= 2, what: 'DTMF after resume' });
    assert.equal(dave.dtmfReceived(m), '42', 'DTMF after resume reaches dave');
    await carol.hangup();
    await dave.waitEvent('CALL_CLOSED', { ms: 5000 });
    const secs = (Date.now() - t0) / 1000;
    await sleep(300);
    const st = dave.rtpStats().pop();
    assert.ok(st, `dave logged rtp_stats at the call's end:\n${dave.log().slice(-1500)}`);
    assert.ok(st.rxPackets > (secs - 1.5) * 50 * 0.8, `dave received RTP all along (${JSON.stringify(st)} in ${secs.toFixed(1)} s)`);
    assert.equal(st.rxErrors, 0, JSON.stringify(st));
    const a = dave.analyseDump();
    assert.ok(a.secs < 3, `dave's dump stopped at the hold's re-INVITE (${audio.describe(a)}); if baresip now records on, the gateway tests can check the dump after resume`);
    assertHeard(a, CALLER_HZ, 'dave before the hold', codec);
  } finally {
    await L.stopPhones();
  }
}));
