'use strict';
// The audio tests against the gateway (issue 10; browser/41-44): the WIC in Chromium with a fake
// microphone playing a known tone, imsgw with its [media] section (the eIMS-AGW), Kamailio
// logging every message whole (LOG_MSG: the SDP the IMS side received), and baresip phones
// (lib/baresip.js) at the IMS side.
//
// The contract these tests rely on (issue 10):
// - WIC test hooks (data-testid): dial-address, dial-key-0..9/star/hash, call-start,
//   call-accept, call-reject, call-hangup, call-mute, call-hold (toggles), call-timer,
//   call-state (idle/calling/ringing/early/active/held/ended), level-out, level-in
//   (data-level 0..1), incoming-call, error; window.wicMedia.stats() ->
//   { packetsSent, packetsReceived, bytesReceived, audioLevel, codec }, wicMedia.peakHz(),
//   wicMedia.pc(); the page takes ?audio_processing=off.
// - imsgw [media] keys (lab.js mediaConfig()) and metrics imsgw_media_sessions,
//   imsgw_media_ports_in_use (gauges, 0 after every call), imsgw_media_packets_total{direction=
//   "to_ims"|"to_browser"}, imsgw_media_dropped_total (counters).
//
// Chromium with a fake microphone: fakeAudioArgs() / launchFakeAudioBrowser() are kept apart
// from lib/wic.js on purpose, so that its own `fakeAudio` launch option can replace them
// (one Chromium per tone: --use-file-for-fake-audio-capture is per process).
const { after } = require('node:test');
const assert = require('node:assert/strict');
const dgram = require('node:dgram');
const fs = require('node:fs');
const path = require('node:path');
const { wicLab, CHROMIUM_ARGS } = require('./wic');
const { mediaConfig } = require('./lab');
const { ports, sleep, waitFor, DOMAIN } = require('./env');
const { audio } = require('./baresip');
const { kamMessages } = require('./auth');
const { httpGet } = require('./imsgw');

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const TOL = 0.02; // ±2 %

/** Chromium flags for a fake microphone playing `wav` (PEERS.md, Chromium: media tests). */
function fakeAudioArgs(wav) {
  return ['--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
    `--use-file-for-fake-audio-capture=${wav}`, '--autoplay-policy=no-user-gesture-required',
    '--allow-loopback-in-peer-connection'];
}

/**
 * A Chromium of its own whose microphone plays `wav`; pid file `chromium-<label>.pid` in `dir`.
 * Returns { server, browser, pid, wav, close() } (close: browser, server, then the process
 * group by pid).
 */
async function launchFakeAudioBrowser(dir, wav, label) {
  const { chromium } = require('playwright-core');
  const args = [...new Set([...CHROMIUM_ARGS.filter((a) => !a.startsWith('--use-fake')), ...fakeAudioArgs(wav)])];
  const server = await chromium.launchServer({ executablePath: CHROMIUM, headless: true, args, timeout: 30000 });
  const pid = server.process().pid;
  fs.writeFileSync(path.join(dir, `chromium-${label}.pid`), `${pid}\n`);
  const browser = await chromium.connect(server.wsEndpoint(), { timeout: 30000 });
  const close = async () => {
    try { await browser.close(); } catch { /* gone */ }
    try { await server.close(); } catch { /* gone */ }
    try { process.kill(-pid, 'SIGKILL'); } catch { /* gone: the normal case */ }
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  };
  return { server, browser, pid, wav, close };
}

/**
 * wicLab() with imsgw's [media] on the block's ports (o.media: keys to override, e.g.
 * { inactivity_secs: 5 }), Kamailio with LOG_MSG, and helpers for calls with audio.
 * Returns W (lib/wic.js) with W.L the lab and the methods below.
 */
function mediaLab(o) {
  const p = ports(o.block);
  const W = wicLab({
    name: o.name,
    block: o.block,
    imsgw: { media: mediaConfig(p, o.media || {}) },
    kamDefines: ['LOG_MSG'],
  });
  const L = W.L;
  W.fake = {};

  after(async () => {
    for (const f of Object.values(W.fake)) await f.close();
  });

  /** The Chromium whose microphone plays a `hz` tone (48 kHz mono), started on first use. */
  W.micBrowser = async (hz) => {
    if (!W.fake[hz]) {
      const wav = await audio.makeTone(path.join(L.dir, `mic-${hz}hz.wav`), { hz, rate: 48000, channels: 1, secs: 60 });
      W.fake[hz] = await launchFakeAudioBrowser(L.dir, wav, `mic-${hz}`);
    }
    return W.fake[hz];
  };

  /**
   * A page of the WIC in the Chromium whose microphone plays `hz`, opened with
   * ?audio_processing=off, signed in as `user` and Registered. page.micHz = hz.
   */
  W.mediaPage = async (user, hz, label = `${user}-${hz}hz`) => {
    const fb = await W.micBrowser(hz);
    const main = W.browser;
    W.browser = fb.browser; // W.newPage() opens its context in W.browser
    let page;
    try {
      page = await W.newPage({ label, open: false });
    } finally {
      W.browser = main;
    }
    await page.goto(`${W.gwBase}/?audio_processing=off`, { waitUntil: 'load' });
    await W.signIn(page, user);
    await W.waitRegistered(page, 20000, `${user} Registered`);
    page.micHz = hz;
    page.impu = `sip:${user}@${DOMAIN}`;
    return page;
  };

  /** Fails at once, and says why, when the WIC has no calling UI (issue 10's hooks). */
  W.needCallUi = async (page) => {
    if (page.noCallUi) throw new Error(page.noCallUi); // said once with the details; fail fast
    try {
      await W.el(page, 'dial-address').waitFor({ state: 'visible', timeout: 5000 });
    } catch {
      page.noCallUi = `the WIC shows no [data-testid=dial-address]: its calling UI (issue 10's test hooks) is not there`;
      throw new Error(`${page.noCallUi} (waited 5 s)\nscreenshot: ${await W.shot(page, 'no-calling-ui')}\n${W.describe(page)}`);
    }
  };

  /** Types `aor` into dial-address and presses call-start. */
  W.dial = async (page, aor) => {
    await W.needCallUi(page);
    await W.el(page, 'dial-address').fill(aor);
    await W.el(page, 'call-start').click({ timeout: 5000 });
  };

  /** Presses one of the call buttons (call-hangup, call-hold, call-accept, dial-key-5 ...). */
  W.press = async (page, name) => {
    const l = W.el(page, name);
    try {
      await l.click({ timeout: 5000 });
    } catch (e) {
      throw new Error(`cannot press [data-testid=${name}]: ${e.message.split('\n')[0]}\nscreenshot: ${await W.shot(page, `no-${name}`)}\n${W.describe(page)}`);
    }
  };

  /** Waits until call-state is `states` (one or a list); returns it. */
  W.waitCall = (page, states, ms = 10000, what) => {
    const want = [].concat(states);
    return W.waitText(page, 'call-state', (t) => want.includes(t), ms, what || `call-state ${want.join('|')}`);
  };

  /** The incoming-call notice shows; call-accept pressed. */
  W.answer = async (page, ms = 10000) => {
    await W.el(page, 'incoming-call').waitFor({ state: 'visible', timeout: ms }).catch(async (e) => {
      throw new Error(`no incoming-call notice within ${ms} ms: ${e.message.split('\n')[0]}\nscreenshot: ${await W.shot(page, 'no-incoming-call')}\n${W.describe(page)}`);
    });
    await W.press(page, 'call-accept');
  };

  /** Calls window.wicMedia[fn]() in the page; a clear error when the hook is missing. */
  W.wicMedia = async (page, fn) => {
    const r = await page.evaluate(async (f) => {
      const m = window.wicMedia;
      if (!m || typeof m[f] !== 'function') return { missing: true };
      return { value: await m[f]() };
    }, fn);
    if (r.missing) throw new Error(`window.wicMedia.${fn}() is not in the page (issue 10's WIC media hooks)\n${W.describe(page)}`);
    return r.value;
  };
  W.stats = (page) => W.wicMedia(page, 'stats');
  W.peakHz = (page) => W.wicMedia(page, 'peakHz');

  /**
   * Waits until the page hears `hz` ±2 % (wicMedia.peakHz()) with packets arriving and an
   * audio level above 0; returns { hz, stats }. Fails with the readings it saw.
   */
  W.waitHears = async (page, hz, ms = 8000, what = '') => {
    const seen = [];
    const end = Date.now() + ms;
    let first = null;
    for (;;) {
      const s = await W.stats(page);
      const peak = await W.peakHz(page);
      seen.push(`${peak === null || peak === undefined ? '-' : Math.round(peak)}Hz/${s && s.packetsReceived}pk/${s && s.audioLevel}`);
      if (first === null && s) first = s.packetsReceived;
      if (s && s.packetsReceived > 0 && s.audioLevel > 0 && audio.near(peak, hz, TOL)) return { hz: peak, stats: s };
      if (Date.now() > end) {
        throw new Error(`${page.label} ${what}: did not hear ${hz} Hz ±2 % within ${ms} ms; readings (peak/packetsReceived/audioLevel): ${seen.slice(-12).join(' ')}; ` +
          `last stats ${JSON.stringify(s)}\nscreenshot: ${await W.shot(page, 'not-hearing')}\n${W.describe(page)}`);
      }
      await sleep(250);
    }
  };

  /** Waits until wicMedia.stats().packetsReceived passes `p0` (stats may lag a second). */
  W.waitPacketsGrow = async (page, p0, ms = 4000, what = '') => {
    let last = null;
    await waitFor(async () => {
      last = await W.stats(page);
      return last && last.packetsReceived > p0;
    }, ms, `${page.label}: packetsReceived past ${p0} ${what}; last stats ${JSON.stringify(last)}`);
  };

  /** The imsgw_media_* lines of /metrics: { 'name' or 'name{labels}': number }. */
  W.mediaMetrics = async () => {
    const r = await httpGet(`${L.gw.metricsUrl}/metrics`);
    assert.equal(r.status, 200, `/metrics: ${r.status}`);
    const out = {};
    for (const line of r.body.split('\n')) {
      const m = /^(imsgw_media_[a-z_]+(?:\{[^}]*\})?)\s+([0-9.eE+-]+)$/.exec(line.trim());
      if (m) out[m[1]] = Number(m[2]);
    }
    return out;
  };

  /**
   * After a call: imsgw_media_sessions and imsgw_media_ports_in_use are present and read 0
   * (polled for up to `ms`: teardown may take a moment).
   */
  W.assertMediaIdle = async (what, ms = 5000) => {
    let m = {};
    try {
      await waitFor(async () => {
        m = await W.mediaMetrics();
        return m.imsgw_media_sessions === 0 && m.imsgw_media_ports_in_use === 0;
      }, ms, 'media gauges 0');
    } catch {
      assert.fail(`${what}: imsgw_media_sessions and imsgw_media_ports_in_use should be present and 0 within ${ms} ms; /metrics has ${JSON.stringify(m)}\n${L.gwLogTail(1500)}`);
    }
  };

  /** A counter's value (0 when absent), e.g. W.counter('imsgw_media_packets_total{direction="to_ims"}'). */
  W.counter = async (key) => (await W.mediaMetrics())[key] || 0;

  /**
   * The SDP imsgw sent toward the IMS for Call-ID `callId` (Kamailio LOG_MSG: the INVITE's
   * offer, or the answer in a reply, from imsgw's SIP address): { text, addr, port, codecs }.
   */
  W.imsgwSdp = (callId) => {
    const from = `127.0.0.1:${L.p.sip}`;
    const msgs = kamMessages(L.kam, callId).filter((x) => x.src === from && /\r?\n\r?\nv=0/.test(x.text));
    if (!msgs.length) return null;
    const text = msgs[msgs.length - 1].text;
    const body = text.slice(text.search(/\r?\n\r?\nv=0/)).trim();
    const c = /^c=IN IP4 (\S+)/m.exec(body);
    const mm = /^m=audio (\d+) (\S+)((?: \d+)*)/m.exec(body);
    return {
      text, sdp: body, addr: c && c[1], port: mm && Number(mm[1]), proto: mm && mm[2],
      codecs: [...body.matchAll(/^a=rtpmap:\d+ ([^/\s]+)/gm)].map((x) => x[1]),
    };
  };

  /** The final response Kamailio received from imsgw for Call-ID `callId` (LOG_MSG), or null. */
  W.imsgwReply = (callId) => {
    const from = `127.0.0.1:${L.p.sip}`;
    return kamMessages(L.kam, callId).filter((x) => x.dir === 'rpl' && x.src === from && /^SIP\/2\.0 [2-6]\d\d/.test(x.text)).pop() || null;
  };

  /** Sends `n` UDP datagrams of `payload(i)` to 127.0.0.1:port from a fresh socket, 20 ms apart. */
  W.sendUdp = async (port, n, payload) => {
    const s = dgram.createSocket('udp4');
    await new Promise((r) => s.bind(0, '127.0.0.1', r));
    try {
      for (let i = 0; i < n; i += 1) {
        await new Promise((r) => s.send(payload(i), port, '127.0.0.1', () => r()));
        await sleep(20);
      }
    } finally {
      s.close();
    }
  };

  return W;
}

/** An RTP packet (RFC 3550): version 2, payload type `pt`, the given seq/ts/ssrc and payload. */
function rtpPacket({ pt = 8, seq = 0, ts = 0, ssrc = 0x1badcafe, payload = Buffer.alloc(160, 0xd5) }) {
  const h = Buffer.alloc(12);
  h[0] = 0x80;
  h[1] = pt & 0x7f;
  h.writeUInt16BE(seq & 0xffff, 2);
  h.writeUInt32BE(ts >>> 0, 4);
  h.writeUInt32BE(ssrc >>> 0, 8);
  return Buffer.concat([h, payload]);
}

/** G.711 A-law of one 16-bit sample (ITU-T G.711). */
function alaw(sample) {
  const sign = sample >= 0 ? 0x80 : 0;
  let s = Math.min(Math.abs(sample), 32635);
  let exp = 7;
  for (let mask = 0x4000; (s & mask) === 0 && exp > 0; mask >>= 1) exp -= 1;
  const mant = exp === 0 ? (s >> 4) & 0x0f : (s >> (exp + 3)) & 0x0f;
  s = sign | (exp << 4) | mant;
  return s ^ 0x55;
}

/** 20 ms (160 samples) of a PCMA sine at `hz`, starting at sample `n0`. */
function pcmaTone(hz, n0, vol = 0.5) {
  const b = Buffer.alloc(160);
  for (let i = 0; i < 160; i += 1) b[i] = alaw(Math.round(vol * 32767 * Math.sin((2 * Math.PI * hz * (n0 + i)) / 8000)));
  return b;
}

module.exports = { mediaLab, fakeAudioArgs, launchFakeAudioBrowser, rtpPacket, pcmaTone, TOL };
