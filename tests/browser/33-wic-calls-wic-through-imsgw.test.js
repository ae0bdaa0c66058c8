'use strict';
// Two WIC pages call each other through imsgw and Kamailio (INVITE, 180, 200, ACK, re-INVITE
// for hold, BYE all cross the edge twice: page -> imsgw -> Kamailio -> imsgw -> page), with
// imsgw's media gateway on: each page's WebRTC ends at imsgw, and the two IMS-side legs (plain
// RTP/AVP on imsgw's own ports) meet through the IMS, so the audio crosses the eIMS-AGW twice
// (two sessions at once on the one WebRTC port; both gone after the hang-up).
// Each person is a Chromium process of its own whose fake microphone plays its own tone (alice
// 1000 Hz, bob 600 Hz; ?audio_processing=off): each must hear the other's tone.
// Artifacts: tests/artifacts/wic-call/.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { wicLab } = require('../lib/wic');
const { sleep, ports } = require('../lib/env');
const { mediaConfig } = require('../lib/lab');

const TONES = path.join(require('node:os').tmpdir(), `wic-call-tones-${process.pid}`);
const tone = (hz) => {
  fs.mkdirSync(TONES, { recursive: true });
  const f = path.join(TONES, `${hz}.wav`);
  if (!fs.existsSync(f)) {
    const r = spawnSync('sox', ['-n', '-r', '48000', '-c', '1', '-b', '16', f, 'synth', '60', 'sine', String(hz), 'vol', '0.5']);
    assert.equal(r.status, 0, `sox: ${r.stderr}`);
  }
  return f;
};

const W = wicLab({ name: 'wic-call', block: 49, fakeAudio: tone(1000), imsgw: { media: mediaConfig(ports(49)) } });
const L = W.L;

let alice;
let bob;

before(async () => {
  const other = await W.launch({ fakeAudio: tone(600), label: 'chromium-bob' });
  bob = await other.newPage({ label: 'bob', query: '?audio_processing=off' });
  alice = await W.newPage({ label: 'alice', query: '?audio_processing=off' });
});

after(() => fs.rmSync(TONES, { recursive: true, force: true }));

const until = async (page, f, what, ms = 15000) => {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; screenshot ${await W.shot(page, 'timeout')}\n${W.describe(page)}`);
    await sleep(100);
  }
};
const level = async (page, id) => Number(await W.el(page, id).getAttribute('data-level'));
const peak = (page) => page.evaluate(() => window.wicMedia.peakHz());
const stats = (page) => page.evaluate(() => window.wicMedia.stats());

test('1. alice (1000 Hz) calls bob (600 Hz) through imsgw: ring, answer, each hears the other, hold, keys, hang-up', L.track(async () => {
  await W.signIn(alice, 'alice');
  await W.signIn(bob, 'bob');
  await W.waitRegistered(alice);
  await W.waitRegistered(bob);
  assert.equal(await W.text(alice, 'call-state'), 'idle');

  const t0 = Date.now();
  await W.el(alice, 'dial-address').fill('bob');
  await W.el(alice, 'call-start').click();
  await W.el(bob, 'incoming-call').waitFor({ state: 'visible', timeout: 10000 });
  assert.equal(await W.el(bob, 'incoming-call').getAttribute('data-from'), 'sip:alice@ims.example');
  await W.waitText(alice, 'call-state', (t) => t === 'early' || t === 'calling', 5000);
  const tRing = Date.now();
  await W.shot(bob, 'ringing');
  await W.el(bob, 'call-accept').click();
  await W.waitText(alice, 'call-state', 'active', 10000);
  await W.waitText(bob, 'call-state', 'active', 10000);
  const tUp = Date.now();

  await until(alice, async () => (await stats(alice)).packetsReceived > 50 && (await stats(bob)).packetsReceived > 50, 'RTP both ways');
  const hzA = await until(alice, async () => { const h = await peak(alice); return Math.abs(h - 600) < 15 && h; }, 'alice hears 600 Hz');
  const hzB = await until(bob, async () => { const h = await peak(bob); return Math.abs(h - 1000) < 15 && h; }, 'bob hears 1000 Hz');
  await until(alice, async () => (await level(alice, 'level-in')) > 0.1 && (await level(alice, 'level-out')) > 0.1, 'alice meters');
  const s = await stats(alice);
  await W.shot(alice, 'in-call');
  // Both legs anchored: two media sessions and two IMS-side port pairs.
  const m = await L.gw.metrics();
  assert.match(m.body, /^imsgw_media_sessions 2$/m, 'two media sessions during the call');
  assert.match(m.body, /^imsgw_media_ports_in_use [1-9]/m, 'IMS-side ports in use during the call');
  console.log(`timing: dial -> ringing ${tRing - t0} ms, accept -> active ${tUp - tRing} ms; alice hears ${hzA} Hz, bob hears ${hzB} Hz; ` +
    `alice ${JSON.stringify(s)}`);

  await W.el(alice, 'call-hold').click();
  await W.waitText(alice, 'call-state', 'held', 3000);
  await until(bob, async () => (await level(bob, 'level-in')) < 0.02, 'bob hears nothing while alice holds', 8000);
  await W.el(alice, 'call-hold').click();
  await W.waitText(alice, 'call-state', 'active', 3000);
  await until(bob, async () => (await level(bob, 'level-in')) > 0.1, 'bob hears alice again', 8000);

  for (const k of ['1', 'star', 'hash']) await W.el(alice, `dial-key-${k}`).click();
  assert.match(await alice.locator('#dtmf-sent').textContent(), /1\*#/);
  assert.equal(await W.text(alice, 'error'), '');
  await W.waitText(alice, 'call-timer', (t) => /^00:0[1-9]|^00:[1-5]\d$/.test(t), 5000);

  await W.el(bob, 'call-hangup').click();
  await W.waitText(alice, 'call-state', 'ended', 5000);
  await W.waitText(bob, 'call-state', 'ended', 5000);
  assert.match(await W.text(alice, 'notice'), /The call with .*bob.* ended \(\d\d:\d\d\)/);
  assert.equal(await W.text(alice, 'error'), '');
  assert.equal(await alice.evaluate(() => window.wicMedia.pc()), null);
  assert.equal(await W.text(alice, 'reg-state'), 'Registered');
  assert.equal(await W.text(bob, 'reg-state'), 'Registered');
  await until(alice, async () => {
    const after = (await L.gw.metrics()).body;
    return /^imsgw_media_sessions 0$/m.test(after) && /^imsgw_media_ports_in_use 0$/m.test(after);
  }, 'no media session or port left after the hang-up', 5000);
  for (const p of [alice, bob]) {
    assert.equal(await p.evaluate(() => window.wicMedia.machine().ignored), 0, `${p.label}: no event ignored`);
    W.assertClean(p);
  }
}));

test('2. bob calls alice and alice rejects: bob sees "Busy here (486)"', L.track(async () => {
  await W.el(bob, 'dial-address').fill('alice');
  await W.el(bob, 'call-start').click();
  await W.el(alice, 'incoming-call').waitFor({ state: 'visible', timeout: 10000 });
  await W.el(alice, 'call-reject').click();
  await W.waitText(bob, 'error', (t) => /Busy here \(486\)/.test(t), 10000, 'the 486 in words at bob');
  assert.equal(await W.text(bob, 'call-state'), 'ended');
  assert.equal(await W.text(alice, 'call-state'), 'ended');
  W.assertClean(alice);
  W.assertClean(bob);
}));
