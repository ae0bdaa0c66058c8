// The README's call, done by a headless Chromium against the running lab (deploy/lab/up.sh):
// signs in at http://127.0.0.1:8080/ as alice (demo provider), calls sip:tone@ims.example (the
// lab's baresip phone, 440 Hz), and prints what the page hears; then the phone calls alice
// (deploy/lab/phone.sh call), the page answers, and it prints that too. Exit 0 when both
// directions carried the tone (±2 %). Chromium's fake microphone plays a 1000 Hz tone, which
// the phone records under $LAB_DIR/phone/snd/.
//   NODE_PATH=tests/node_modules node deploy/lab/call-check.mjs
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(path.resolve('tests/package.json'));
const { chromium } = require('playwright-core');
const base = process.env.WIC_URL || 'http://127.0.0.1:8080';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imsgw-call-check-'));
const mic = path.join(dir, 'mic.wav');
execFileSync('sox', ['-n', '-r', '48000', '-c', '1', '-b', '16', mic, 'synth', '60', 'sine', '1000', 'vol', '0.5']);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const el = (page, id) => page.locator(`[data-testid="${id}"]`).first();

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
    `--use-file-for-fake-audio-capture=${mic}`, '--autoplay-policy=no-user-gesture-required'],
});
let ok = true;
try {
  const page = await (await browser.newContext()).newPage();
  await page.goto(`${base}/?audio_processing=off`);
  await el(page, 'signin-button').click();
  for (let i = 0; i < 100 && !page.url().startsWith(`${base}/?`) && page.url() !== `${base}/`; i += 1) {
    if (await page.getByText('Demo account').count()) await page.getByText('Demo account').first().click();
    else if (await page.locator('input[type=password]').count()) {
      await page.fill('input[name=login]', 'alice');
      await page.fill('input[name=password]', 'alice-pw');
      await page.locator('button[value=login]').click();
    } else if (await page.locator('button[value=allow]').count()) await page.locator('button[value=allow]').click();
    await sleep(200);
  }
  await page.waitForFunction(() => document.querySelector('[data-testid="reg-state"]')?.textContent === 'Registered', null, { timeout: 15000 });
  console.log('signed in: Registered as sip:alice@ims.example');

  const hears = async (what) => {
    let hz = 0;
    for (let i = 0; i < 50; i += 1) {
      hz = await page.evaluate(() => window.wicMedia.peakHz());
      if (Math.abs(hz - 440) <= 8.8) break;
      await sleep(200);
    }
    const good = Math.abs(hz - 440) <= 8.8;
    console.log(`${what}: the page hears ${hz.toFixed(1)} Hz (${good ? 'the phone\'s 440 Hz tone' : 'NOT the tone'})`);
    ok &&= good;
  };

  await el(page, 'dial-address').fill('sip:tone@ims.example');
  await el(page, 'call-start').click();
  await page.waitForFunction(() => document.querySelector('[data-testid="call-state"]')?.textContent === 'active', null, { timeout: 15000 });
  await hears('alice calls sip:tone@ims.example');
  await sleep(2000);
  await el(page, 'call-hangup').click();
  await sleep(1000);

  execFileSync('deploy/lab/phone.sh', ['call', 'sip:alice@ims.example'], { stdio: 'ignore' });
  await el(page, 'call-accept').click({ timeout: 15000 });
  await page.waitForFunction(() => document.querySelector('[data-testid="call-state"]')?.textContent === 'active', null, { timeout: 15000 });
  await hears('sip:tone@ims.example calls alice');
  await sleep(2000);
  await el(page, 'call-hangup').click();
  await sleep(500);
  // What the phone heard (baresip's recording of the last call).
  const snd = path.join(process.env.LAB_DIR || '/tmp/imsgw-lab', 'phone', 'snd');
  const last = fs.readdirSync(snd).filter((f) => f.endsWith('-dec.wav')).sort().pop();
  if (last) {
    // sox prints its statistics on stderr.
    const r = spawnSync('sox', [path.join(snd, last), '-n', 'stat'], { encoding: 'utf8' });
    const hz = Number((/Rough\s+frequency:\s+(\d+)/.exec(r.stderr) || [])[1]);
    const good = Math.abs(hz - 1000) <= 30;
    console.log(`the phone heard ~${hz} Hz (${good ? 'the page\'s 1000 Hz microphone' : 'NOT the microphone tone'}; sox's rough estimate), recording ${last}`);
    ok &&= good;
  }
} catch (e) {
  ok = false;
  console.error(`call check failed: ${e.message}`);
} finally {
  await browser.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
process.exit(ok ? 0 : 1);
