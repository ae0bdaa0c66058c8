'use strict';
// Issue 10 §4 (block 43): two calls at once and a long hold, through imsgw's eIMS-AGW.
// - alice (Chromium whose microphone plays 1000 Hz) calls carol (baresip, 440 Hz) while bob
//   (another Chromium, 1500 Hz) calls dave (baresip, 620 Hz), both over PCMA: each page hears
//   only its own phone, each phone's recording only its own browser (no crosstalk);
//   imsgw_media_sessions reads 2 while both calls are up, and 0 with the ports after both ended.
// - a hold of more than 60 s (the only long test of the set): alice holds, waits 65 s, resumes;
//   she hears carol again, her keys reach carol, no console error in the page (SRTP replay or
//   authentication failures would show there) and none in imsgw's log about SRTP.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { mediaLab } = require('../lib/wicmedia');
const { audio, sleep } = require('../lib/baresip');

const W = mediaLab({ name: '43-wic-two-calls-and-long-hold', block: 43 });
const L = W.L;
const PCMA = 'PCMA/8000/1';
const ALICE_HZ = 1000;
const BOB_HZ = 1500;
const CAROL_HZ = 440;
const DAVE_HZ = 620;

let alice;
let bob;

test('0. alice (1000 Hz microphone) and bob (1500 Hz, another Chromium) sign in', L.track(async () => {
  alice = await W.mediaPage('alice', ALICE_HZ);
  bob = await W.mediaPage('bob', BOB_HZ);
  await W.needCallUi(alice);
  await W.assertMediaIdle('before any call');
}));

test('1. two calls at once, different tones both ways: no crosstalk; 2 media sessions, then 0', L.track(async () => {
  await W.needCallUi(alice);
  const since = Date.now();
  const [carol, dave] = [
    await L.baresip(0, { prefix: 'carol', codecs: [PCMA], tone: await audio.toneFor(L.dir, PCMA, CAROL_HZ) }),
    await L.baresip(1, { prefix: 'dave', codecs: [PCMA], tone: await audio.toneFor(L.dir, PCMA, DAVE_HZ) }),
  ];
  try {
    const mc = carol.mark();
    const md = dave.mark();
    await Promise.all([W.dial(alice, carol.aor), W.dial(bob, dave.aor)]);
    await Promise.all([
      carol.waitEstablished({ from: mc, what: 'alice -> carol' }),
      dave.waitEstablished({ from: md, what: 'bob -> dave' }),
    ]);
    await Promise.all([W.waitCall(alice, 'active'), W.waitCall(bob, 'active')]);
    const m = await W.mediaMetrics();
    assert.equal(m.imsgw_media_sessions, 2, `two media sessions while both calls are up: ${JSON.stringify(m)}`);
    assert.ok(m.imsgw_media_ports_in_use >= 2, `IMS-side ports in use for two calls: ${JSON.stringify(m)}`);
    await W.waitHears(alice, CAROL_HZ, 8000, 'alice hears carol');
    await W.waitHears(bob, DAVE_HZ, 8000, 'bob hears dave');
    // sampled over 3 s: each page's peak stays its own phone's tone
    const peaks = { alice: [], bob: [] };
    for (let i = 0; i < 10; i += 1) {
      peaks.alice.push(Math.round(await W.peakHz(alice)));
      peaks.bob.push(Math.round(await W.peakHz(bob)));
      await sleep(300);
    }
    assert.ok(peaks.alice.every((x) => audio.near(x, CAROL_HZ)), `alice hears only carol (${CAROL_HZ} Hz): ${peaks.alice}`);
    assert.ok(peaks.bob.every((x) => audio.near(x, DAVE_HZ)), `bob hears only dave (${DAVE_HZ} Hz): ${peaks.bob}`);

    const hc = carol.mark();
    const hd = dave.mark();
    await W.press(alice, 'call-hangup');
    await carol.waitEvent('CALL_CLOSED', { from: hc, ms: 5000 });
    assert.equal(await W.text(bob, 'call-state'), 'active', 'bob\'s call is untouched by alice\'s hang-up');
    await W.waitHears(bob, DAVE_HZ, 3000, 'bob still hears dave after alice hung up');
    const one = await W.mediaMetrics();
    assert.equal(one.imsgw_media_sessions, 1, `one media session left: ${JSON.stringify(one)}`);
    await dave.hangup();
    await dave.waitEvent('CALL_CLOSED', { from: hd, ms: 5000 });
    await W.waitCall(bob, ['ended', 'idle'], 5000);
    await W.assertMediaIdle('after both calls');
    await sleep(300);
    for (const [ph, hz, other] of [[carol, ALICE_HZ, BOB_HZ], [dave, BOB_HZ, ALICE_HZ]]) {
      const a = ph.analyseDump();
      assert.ok(audio.near(a.hz, hz), `${ph.name} hears its own caller's ${hz} Hz: ${audio.describe(a)}`);
      assert.ok(!audio.near(a.hz, other), `${ph.name} does not hear ${other} Hz: ${audio.describe(a)}`);
    }
    W.assertClean(alice, { since });
    W.assertClean(bob, { since });
  } finally {
    await L.stopPhones();
  }
}));

test('2. a hold of 65 s, then resume: alice hears carol again, her keys reach carol, no SRTP error anywhere', L.track(async () => {
  await W.needCallUi(alice);
  const since = Date.now();
  const gwMark = L.gw.logMark();
  const carol = await L.baresip(0, { prefix: 'carol', codecs: [PCMA], tone: await audio.toneFor(L.dir, PCMA, CAROL_HZ) });
  try {
    const m = carol.mark();
    await W.dial(alice, carol.aor);
    await carol.waitEstablished({ from: m });
    await W.waitCall(alice, 'active');
    await W.waitHears(alice, CAROL_HZ, 8000, 'before the hold');
    await W.press(alice, 'call-hold');
    await W.waitCall(alice, 'held', 5000);
    await sleep(65000);
    assert.equal(await W.text(alice, 'call-state'), 'held', 'still held after 65 s (consent kept alive during the hold)');
    assert.equal(carol.eventsOf('CALL_CLOSED', m).length, 0, 'carol\'s call is still up after 65 s on hold');
    await W.press(alice, 'call-hold');
    await W.waitCall(alice, 'active', 5000, 'active after resume');
    const p0 = (await W.stats(alice)).packetsReceived;
    await W.waitPacketsGrow(alice, p0, 4000, 'after 65 s on hold');
    await W.waitHears(alice, CAROL_HZ, 8000, 'after 65 s on hold');
    const k = carol.mark();
    await W.press(alice, 'dial-key-8');
    await carol.waitEvent('CALL_DTMF_START', { from: k, ms: 5000, what: 'DTMF 8 after the long hold' });
    assert.equal(carol.dtmfReceived(k), '8');
    const hc = carol.mark();
    await W.press(alice, 'call-hangup');
    await carol.waitEvent('CALL_CLOSED', { from: hc, ms: 5000 });
    await W.assertMediaIdle('after the long hold');
    W.assertClean(alice, { since });
    const srtp = L.gw.logSince(gwMark).split('\n').filter((l) => /srtp/i.test(l) && /(WARN|ERROR)/.test(l));
    assert.deepEqual(srtp, [], 'no SRTP warning or error in imsgw\'s log during the call');
  } finally {
    await L.stopPhones();
  }
}));
