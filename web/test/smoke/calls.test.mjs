// Calls between two WIC pages through fake-gateway.mjs (it relays SIP between them; the media is
// browser to browser WebRTC, not the eIMS-AGW): dial, ring, answer, both directions heard (the
// fake microphones play 1000 Hz and 600 Hz tones; ?audio_processing=off), levels, timer, mute,
// hold, RFC 4733 keys, hang-up; errors in words (486, 488 with Warning, microphone refused,
// network lost during a call); a second caller during a call gets 486; a call cancelled while
// it rings. Two Chromium processes (one tone each).
// Needs Debian's chromium and sox. Run: npm run smoke (after build).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { chromium } from 'playwright-core';
import { startFakeGateway } from './fake-gateway.mjs';

const dist = new URL('../../dist/', import.meta.url).pathname;
const exe = process.env.CHROMIUM || '/usr/bin/chromium';
const hasSox = spawnSync('sox', ['--version']).status === 0;
const skip = !existsSync(exe) ? `no Chromium at ${exe}` : !existsSync(join(dist, 'index.html')) ? 'dist/ is not built' : !hasSox ? 'no sox' : false;

let gw, dir;
const browsers = [];
const problems = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const until = async (f, what, ms = 15000) => {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    last = await f();
    if (last) return last;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
};
const text = async (page, id) => ((await page.getByTestId(id).textContent()) || '').trim();
const level = async (page, id) => Number(await page.getByTestId(id).getAttribute('data-level'));

async function person(tone, impu, label) {
  const wav = join(dir, `${label}.wav`);
  const r = spawnSync('sox', ['-n', '-r', '48000', '-c', '1', '-b', '16', wav, 'synth', '60', 'sine', String(tone), 'vol', '0.5']);
  assert.equal(r.status, 0, String(r.stderr));
  const browser = await chromium.launch({
    executablePath: exe,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
      `--use-file-for-fake-audio-capture=${wav}`, '--autoplay-policy=no-user-gesture-required', '--allow-loopback-in-peer-connection'],
  });
  browsers.push(browser);
  const page = await browser.newPage({ viewport: { width: 800, height: 900 } });
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`${label} ${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`${label} pageerror: ${e.message}`));
  await page.goto(`${gw.url}?audio_processing=off`);
  gw.st.nextImpu = impu;
  await page.getByTestId('signin-button').click();
  await until(async () => (await text(page, 'reg-state')) === 'Registered', `${label} Registered`);
  assert.equal(await text(page, 'impu'), impu);
  return page;
}

before(async () => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'wic-calls-'));
  gw = await startFakeGateway({ dist, ttl: 120 });
});
after(async () => {
  for (const b of browsers) await b.close().catch(() => {});
  gw?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('two pages call each other: audio both ways, levels, timer, mute, hold, keys, hang-up, errors, busy', { skip }, async () => {
  const alice = await person(1000, 'sip:alice@ims.example', 'alice');
  const bob = await person(600, 'sip:bob@ims.example', 'bob');
  assert.equal(await text(alice, 'call-state'), 'idle');
  assert.equal(await text(alice, 'call-timer'), '00:00');
  assert.equal(await level(alice, 'level-out'), 0);
  assert.equal(await alice.evaluate(() => window.wicMedia.pc()), null);

  // rejected calls, in words
  await alice.getByTestId('dial-address').fill('busy');
  await alice.getByTestId('call-start').click();
  await until(async () => /Busy here \(486\)/.test(await text(alice, 'error')), '486 in words');
  assert.equal(await text(alice, 'call-state'), 'ended');
  await alice.getByTestId('dial-address').fill('nocodec');
  await alice.getByTestId('call-start').click();
  await until(async () => /Not acceptable here \(488\): no common codec/.test(await text(alice, 'error')), '488 + Warning in words');

  // dial bob with the keypad's address field; bob rings with alice's identity
  await alice.getByTestId('dial-address').fill('bob');
  await alice.getByTestId('call-start').click();
  await bob.getByTestId('incoming-call').waitFor({ state: 'visible' });
  assert.equal(await bob.getByTestId('incoming-call').getAttribute('data-from'), 'sip:alice@ims.example');
  assert.equal(await text(bob, 'call-state'), 'ringing');
  await until(async () => (await text(alice, 'call-state')) === 'early', 'alice early (180 from bob)');
  assert.equal(await text(alice, 'error'), '', 'the old error is gone with the new call');
  await bob.getByTestId('call-accept').click();
  await until(async () => (await text(alice, 'call-state')) === 'active' && (await text(bob, 'call-state')) === 'active', 'both active');
  assert.equal(await bob.getByTestId('incoming-call').isHidden(), true);
  assert.equal(await bob.evaluate(() => document.activeElement?.getAttribute('data-testid')), 'call-hangup', 'focus follows to the call');

  // both directions: packets, levels, tones
  const tAudio = Date.now();
  await until(async () => (await alice.evaluate(() => window.wicMedia.stats())).packetsReceived > 50
    && (await bob.evaluate(() => window.wicMedia.stats())).packetsReceived > 50, 'RTP both ways');
  await until(async () => (await level(alice, 'level-in')) > 0.1 && (await level(bob, 'level-in')) > 0.1
    && (await level(alice, 'level-out')) > 0.1, 'levels both ways', 10000);
  const hzAtAlice = await until(async () => { const h = await alice.evaluate(() => window.wicMedia.peakHz()); return Math.abs(h - 600) < 15 && h; }, 'alice hears 600 Hz', 10000);
  const hzAtBob = await until(async () => { const h = await bob.evaluate(() => window.wicMedia.peakHz()); return Math.abs(h - 1000) < 15 && h; }, 'bob hears 1000 Hz', 10000);
  const st = await alice.evaluate(() => window.wicMedia.stats());
  assert.match(st.codec, /^audio\//);
  assert.ok(st.packetsSent > 0 && st.bytesReceived > 0, JSON.stringify(st));
  await until(async () => (await alice.evaluate(() => window.wicMedia.stats())).audioLevel > 0.05, 'inbound-rtp audioLevel');
  console.log(`audio in ${Date.now() - tAudio} ms; alice hears ${hzAtAlice} Hz, bob hears ${hzAtBob} Hz; codec ${st.codec}`);
  await until(async () => /^00:0[1-9]$/.test(await text(alice, 'call-timer')), 'the timer runs');
  if (process.env.WIC_SCREENSHOT) await alice.screenshot({ path: process.env.WIC_SCREENSHOT.replace(/(\.png)?$/, '-in-call.png'), fullPage: true });

  // mute: bob hears silence; unmute: the tone again
  await alice.getByTestId('call-mute').click();
  assert.equal(await alice.getByTestId('call-mute').getAttribute('aria-pressed'), 'true');
  await until(async () => (await level(bob, 'level-in')) < 0.02 && (await level(alice, 'level-out')) < 0.02, 'muted', 5000);
  await alice.getByTestId('call-mute').click();
  await until(async () => (await level(bob, 'level-in')) > 0.1, 'unmuted', 5000);

  // hold (re-INVITE a=sendonly) and resume
  await alice.getByTestId('call-hold').click();
  assert.equal(await text(alice, 'call-state'), 'held');
  await until(async () => (await level(bob, 'level-in')) < 0.02, 'bob hears nothing while held', 5000);
  await alice.getByTestId('call-hold').click();
  assert.equal(await text(alice, 'call-state'), 'active');
  await until(async () => (await level(bob, 'level-in')) > 0.1, 'resumed', 5000);
  assert.ok(gw.st.relayed.filter((l) => l.startsWith('INVITE ')).length >= 3, `re-INVITEs relayed: ${gw.st.relayed}`);

  // keys send RFC 4733 tones in a call (not into the address field)
  await alice.getByTestId('dial-key-5').click();
  await alice.getByTestId('dial-key-hash').click();
  await alice.getByTestId('dial-key-star').click();
  assert.match(await alice.locator('#dtmf-sent').textContent(), /5#\*/);
  assert.equal(await alice.getByTestId('dial-address').inputValue(), 'bob');
  assert.equal(await text(alice, 'error'), '');

  // a second caller while in a call hears busy
  const inv = gw.request('INVITE', { toUser: 'bob', from: 'sip:carol@ims.example', body: gw.st.plainRtpOffer, contentType: 'application/sdp' });
  await until(() => gw.st.responses.some((r) => r.startsWith('SIP/2.0 486') && r.includes(inv.callId)), '486 for the second caller');
  assert.equal(await text(bob, 'call-state'), 'active');

  // bob hangs up
  await bob.getByTestId('call-hangup').click();
  await until(async () => (await text(alice, 'call-state')) === 'ended' && (await text(bob, 'call-state')) === 'ended', 'both ended');
  assert.match(await text(alice, 'notice'), /The call with sip:bob@ims\.example ended \(00:\d\d\)/);
  assert.equal(await alice.evaluate(() => window.wicMedia.pc()), null);
  assert.equal(await level(alice, 'level-in'), 0);
  assert.equal(await text(alice, 'error'), '');

  // the keypad types into the address field when there is no call
  await alice.getByTestId('dial-address').fill('');
  for (const k of ['1', '2', 'star', 'hash', '0']) await alice.getByTestId(`dial-key-${k}`).click();
  assert.equal(await alice.getByTestId('dial-address').inputValue(), '12*#0');

  // bob calls alice and gives up while it rings
  await bob.getByTestId('dial-address').fill('alice');
  await bob.getByTestId('call-start').click();
  await alice.getByTestId('incoming-call').waitFor({ state: 'visible' });
  await bob.getByTestId('call-hangup').click();
  await alice.getByTestId('incoming-call').waitFor({ state: 'hidden' });
  await until(async () => /Missed call from/.test(await text(alice, 'notice')), 'missed call');
  await until(async () => (await text(bob, 'call-state')) === 'ended', 'bob ended');
  assert.match(await text(bob, 'notice'), /cancelled/);

  for (const p of [alice, bob]) {
    assert.equal(await p.evaluate(() => window.wicMedia.machine().ignored), 0, 'no event ignored in normal use');
  }

  // the microphone refused: words, no INVITE
  const invites = gw.st.relayed.length;
  await alice.evaluate(() => {
    navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('denied', 'NotAllowedError'));
  });
  await alice.getByTestId('dial-address').fill('bob');
  await alice.getByTestId('call-start').click();
  await until(async () => /Microphone permission was denied/.test(await text(alice, 'error')), 'permission denied in words');
  assert.equal(await text(alice, 'call-state'), 'ended');
  assert.equal(gw.st.relayed.length, invites, 'no INVITE without a microphone');
  await alice.reload(); // the real getUserMedia again (and a new sign-in)
  gw.st.nextImpu = 'sip:alice@ims.example';
  await alice.getByTestId('signin-button').click();
  await until(async () => (await text(alice, 'reg-state')) === 'Registered', 'alice Registered again');

  // the network goes during a call: the call ends as "network lost", the page registers again
  await alice.getByTestId('dial-address').fill('bob');
  await alice.getByTestId('call-start').click();
  await bob.getByTestId('call-accept').click();
  await until(async () => (await text(alice, 'call-state')) === 'active', 'active again');
  gw.restart(500);
  await until(async () => (await text(alice, 'call-state')) === 'ended' && (await text(bob, 'call-state')) === 'ended', 'both ended by the network');
  await until(async () => (await text(alice, 'reg-state')) === 'Registered', 'registered after the loss', 30000);
  await until(async () => /^Network lost/.test(await text(alice, 'error')), 'network lost in words');
  problems.splice(0, problems.length, ...problems.filter((p) => !/WebSocket connection to '.*' failed/.test(p)));
  if (process.env.WIC_SCREENSHOT) await alice.screenshot({ path: process.env.WIC_SCREENSHOT.replace(/(\.png)?$/, '-calls.png'), fullPage: true });
  assert.deepEqual(problems, [], 'no console errors or warnings');
});
