'use strict';
// Issue 10 §4, what happens around the audio (block 42): the WIC (microphone 1000 Hz) and baresip
// phones (440 Hz, PCMA) or sipp at the IMS side, through imsgw's eIMS-AGW.
// - hold and resume from the browser (call-hold toggles): imsgw's re-INVITE toward the IMS says
//   sendonly, then sendrecv again; after resume the browser hears the phone again and keys
//   pressed in the page reach the phone (the browser -> IMS leg is alive: baresip 1.0 stops
//   recording at a re-INVITE, so its DTMF report and rtp_stats stand in for its recording);
// - hold and resume from the phone: the same checks after its resume;
// - early media: sipp answers 183 + SDP and streams 440 Hz before its 200: the page shows
//   `early` and hears 440 Hz before the answer, then `active`;
// - cancel before answer, from the browser (the phone rings, manual answer) and from the phone
//   (the page shows incoming-call, which goes away);
// - a phone with AMR-WB only: called by the browser it answers 488, the page's error shows the
//   reason (488 / Not Acceptable); calling the browser, imsgw answers 488 itself with a Warning
//   (399) and the page never rings;
// - RTP from a foreign source (another socket, another SSRC, a 3000 Hz tone, and junk) sent to
//   the IMS-side port named in imsgw's SDP: the call carries on, the browser hears 440 Hz, not
//   3000 Hz, and imsgw_media_dropped_total grows.
// After every call imsgw_media_sessions and imsgw_media_ports_in_use read 0.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { mediaLab, rtpPacket, pcmaTone } = require('../lib/wicmedia');
const { audio, sleep } = require('../lib/baresip');
const { uniqueUser, waitFor, DOMAIN } = require('../lib/env');
const sipp = require('../lib/sipp');

const W = mediaLab({ name: '42-wic-call-control', block: 42 });
const L = W.L;
const MIC_HZ = 1000;
const PHONE_HZ = 440;
const PCMA = 'PCMA/8000/1';

let page;

test('0. alice signs in with a 1000 Hz microphone', L.track(async () => {
  page = await W.mediaPage('alice', MIC_HZ);
  await W.needCallUi(page);
  await W.assertMediaIdle('before any call');
}));

/** A fresh PCMA phone (instance i) playing PHONE_HZ; o: more Baresip options. */
async function phone(i = 0, o = {}) {
  return L.baresip(i, { prefix: 'carol', codecs: [PCMA], tone: await audio.toneFor(L.dir, PCMA, PHONE_HZ), ...o });
}

/** alice calls `ph` and both see the call established; returns the phone's event (id = Call-ID). */
async function browserCalls(ph) {
  const m = ph.mark();
  await W.dial(page, ph.aor);
  const est = await ph.waitEstablished({ from: m, what: 'the browser\'s call established at the phone' });
  await W.waitCall(page, 'active', 10000);
  await W.waitHears(page, PHONE_HZ, 8000, 'once active');
  return est;
}

/** The SDP directions in imsgw's INVITEs (initial and re-INVITEs) toward the IMS, in order. */
function imsgwInviteDirections(callId) {
  const from = `127.0.0.1:${L.p.sip}`;
  const { kamMessages } = require('../lib/auth');
  return kamMessages(L.kam, callId)
    .filter((x) => x.dir === 'req' && x.src === from && /^INVITE /.test(x.text) && /\nv=0/.test(x.text))
    .map((x) => (/^a=(sendrecv|sendonly|recvonly|inactive)/m.exec(x.text) || [null, 'sendrecv'])[1]);
}

/** Keys pressed in the page reach the phone as RFC 4733 digits. */
async function keysReachPhone(ph, keys, what) {
  const k = ph.mark();
  for (const key of keys) {
    await W.press(page, `dial-key-${key}`);
    await sleep(400);
  }
  const want = keys.join('');
  await ph.waitEvent('CALL_DTMF_END', { from: k, ms: 8000, pred: () => ph.dtmfReceived(k).length >= want.length, what: `DTMF ${want} ${what}` });
  assert.equal(ph.dtmfReceived(k), want, `digits at the phone ${what}`);
}

/** The browser hangs up; the phone sees BYE; the gauges return to 0. */
async function hangUp(ph, what) {
  const h = ph.mark();
  await W.press(page, 'call-hangup');
  await ph.waitEvent('CALL_CLOSED', { from: h, ms: 5000, what: 'BYE at the phone' });
  await W.waitCall(page, ['ended', 'idle'], 5000);
  await W.assertMediaIdle(what);
}

test('1. hold and resume from the browser: sendonly re-INVITE, then audio both ways again', L.track(async () => {
  await W.needCallUi(page);
  const since = Date.now();
  const ph = await phone();
  try {
    const t0 = Date.now();
    const est = await browserCalls(ph);
    await W.press(page, 'call-hold');
    await W.waitCall(page, 'held', 5000, 'held after call-hold');
    await ph.waitEvent('CALL_REMOTE_SDP', { from: ph.events.indexOf(est) + 1, ms: 5000, pred: (e) => e.param === 'offer', what: 're-INVITE (hold) at the phone' });
    await sleep(2000);
    await W.press(page, 'call-hold');
    await W.waitCall(page, 'active', 5000, 'active after the second call-hold (resume)');
    // the page may say active as soon as it sends the resume: wait for the re-INVITE upstream
    let dirs = [];
    await waitFor(() => (dirs = imsgwInviteDirections(est.id)).length >= 3, 5000, 'imsgw\'s resume re-INVITE at Kamailio').catch(() => {});
    assert.ok(dirs.length >= 3 && dirs[0] === 'sendrecv' && ['sendonly', 'inactive'].includes(dirs[1]) && dirs[2] === 'sendrecv',
      `imsgw's INVITE, hold and resume re-INVITE toward the IMS: sendrecv, sendonly (or inactive), sendrecv; got ${dirs}`);
    const p0 = (await W.stats(page)).packetsReceived;
    await W.waitPacketsGrow(page, p0, 4000, 'after resume');
    await W.waitHears(page, PHONE_HZ, 8000, 'after resume');
    await keysReachPhone(ph, ['7', '3'], 'after resume');
    await hangUp(ph, 'after hold/resume from the browser');
    await sleep(300);
    const st = ph.rtpStats().pop();
    assert.ok(st && st.rxErrors === 0, `the phone counted no RTP errors: ${JSON.stringify(st)}`);
    assert.ok(st.rxPackets > 50 * 3, `the phone received RTP (${JSON.stringify(st)} in ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    W.assertClean(page, { since });
  } finally {
    await L.stopPhones();
  }
}));

test('2. hold and resume from the phone: after its resume the browser hears it and its keys reach it', L.track(async () => {
  await W.needCallUi(page);
  const since = Date.now();
  const ph = await phone();
  try {
    await browserCalls(ph);
    await ph.hold();
    await sleep(2000);
    assert.ok(['active', 'held'].includes(await W.text(page, 'call-state')), 'the call goes on while the phone holds');
    await ph.resume();
    await sleep(500);
    await W.waitCall(page, 'active', 5000, 'active after the phone resumed');
    const p0 = (await W.stats(page)).packetsReceived;
    await W.waitPacketsGrow(page, p0, 4000, 'after the phone resumed');
    await W.waitHears(page, PHONE_HZ, 8000, 'after the phone resumed');
    await keysReachPhone(ph, ['9', '0'], 'after the phone resumed');
    await hangUp(ph, 'after hold/resume from the phone');
    W.assertClean(page, { since });
  } finally {
    await L.stopPhones();
  }
}));

test('3. early media: sipp answers 183 + SDP and streams 440 Hz; the page shows early and hears it before the 200, then active', L.track(async () => {
  await W.needCallUi(page);
  const since = Date.now();
  const sip = L.p.base + 36; // the UAS (base+37 registers it); RTP base+40 (sipp -mp)
  const user = uniqueUser('early');
  await audio.makeAlaw(`${L.dir}/early-tone.al`, { hz: PHONE_HZ, secs: 20 });
  const reg = await sipp.run({
    dir: L.dir, name: 'register-early', scenario: 'register-with-path.xml', service: user, port: L.p.base + 37,
    target: `127.0.0.1:${L.p.ims}`, timeoutSecs: 5,
    keys: { path: `sip:uas@127.0.0.1:${sip};lr;ob`, contact: `sip:${user}@127.0.0.1:${sip};ob`, expires: 300, instance: '00000000-0000-4000-8000-000000004236' },
  });
  assert.equal(reg.code, 0, sipp.describe(reg));
  const uas = sipp.start({ dir: L.dir, name: 'uas-early-media', scenario: 'uas-early-media.xml', port: sip, mediaPort: L.p.base + 40, timeoutSecs: 30, cwd: L.dir });
  const t0 = Date.now();
  await W.dial(page, `sip:${user}@${DOMAIN}`);
  await W.waitCall(page, 'early', 4000, 'call-state early after the 183');
  await W.waitHears(page, PHONE_HZ, 4500 - (Date.now() - t0), 'during early media (sipp answers 5 s after its 183)');
  assert.equal(await W.text(page, 'call-state'), 'early', 'still early while hearing the early media');
  await W.waitCall(page, 'active', 8000, 'active after sipp\'s 200');
  await W.waitHears(page, PHONE_HZ, 5000, 'after the answer');
  await W.press(page, 'call-hangup');
  const r = await uas.done;
  assert.equal(r.code, 0, `sipp's early-media callee got the BYE: ${sipp.describe(r)}`);
  await W.assertMediaIdle('after the early-media call');
  W.assertClean(page, { since });
}));

test('4. cancel before answer: from the browser (the phone rings), then from the phone (the page rings)', L.track(async () => {
  await W.needCallUi(page);
  const since = Date.now();
  const ph = await phone(0, { answermode: 'manual' });
  try {
    // the browser cancels
    let m = ph.mark();
    await W.dial(page, ph.aor);
    await ph.waitEvent('CALL_INCOMING', { from: m, ms: 10000, what: 'the browser\'s INVITE ringing at the phone' });
    await W.waitCall(page, 'early', 5000, 'early: an outgoing call after the phone\'s 180 (the WIC\'s machine.ts)');
    await W.press(page, 'call-hangup');
    const closed = await ph.waitEvent('CALL_CLOSED', { from: m, ms: 5000, what: 'CANCEL at the phone' });
    assert.equal(ph.eventsOf('CALL_ESTABLISHED', m).length, 0, `never established: ${closed.param}`);
    await W.waitCall(page, ['ended', 'idle'], 5000);
    await W.assertMediaIdle('after the browser cancelled');

    // the phone cancels
    m = ph.mark();
    await ph.dial(page.impu);
    await W.el(page, 'incoming-call').waitFor({ state: 'visible', timeout: 10000 });
    await W.waitCall(page, 'ringing', 3000, 'ringing: an incoming call');
    await ph.hangup();
    await ph.waitEvent('CALL_CLOSED', { from: m, ms: 5000 });
    await W.el(page, 'incoming-call').waitFor({ state: 'hidden', timeout: 5000 }).catch(async () => {
      throw new Error(`the incoming-call notice stayed after the phone's CANCEL\nscreenshot: ${await W.shot(page, 'incoming-after-cancel')}\n${W.describe(page)}`);
    });
    assert.ok(['idle', 'ended', ''].includes(await W.text(page, 'call-state')), 'no call on the page after the CANCEL');
    await W.assertMediaIdle('after the phone cancelled');
    W.assertClean(page, { since });
  } finally {
    await L.stopPhones();
  }
}));

test('5. a phone with AMR-WB only: called by the browser it answers 488 and the page says so; calling the browser, imsgw answers 488 with a Warning and the page never rings', L.track(async () => {
  await W.needCallUi(page);
  const since = Date.now();
  const codec = 'AMR-WB/16000/1';
  const ph = await L.baresip(0, { prefix: 'amrwb', codecs: [codec], tone: await audio.toneFor(L.dir, codec, PHONE_HZ) });
  try {
    // browser -> AMR-WB phone: the phone refuses the offer imsgw made
    let m = ph.mark();
    await W.dial(page, ph.aor);
    const closed = await ph.waitEvent('CALL_CLOSED', { from: m, ms: 10000, what: 'the phone refusing the offer' });
    assert.match(closed.param, /codec/i, `the phone found no common codec: ${closed.param}`);
    await W.waitText(page, 'error', (t) => /488|not acceptable/i.test(t), 5000, 'the page shows the 488 reason');
    await W.waitCall(page, ['ended', 'idle'], 5000);
    await W.assertMediaIdle('after the 488 to the browser');

    // AMR-WB phone -> browser: imsgw cannot give the browser that offer
    m = ph.mark();
    const frames0 = page.wsFrames.length;
    await ph.dial(page.impu);
    const c2 = await ph.waitEvent('CALL_CLOSED', { from: m, ms: 10000, what: 'a final answer to the AMR-WB-only offer' });
    assert.match(c2.param, /^488/, `the phone sees 488: ${c2.param}`);
    const callId = c2.id;
    const rpl = W.imsgwReply(callId);
    assert.ok(rpl, `Kamailio received imsgw's final answer for ${callId}`);
    assert.match(rpl.text, /^SIP\/2\.0 488 /, rpl.text);
    assert.match(rpl.text, /^Warning:\s*399 \S+ "[^"]+"/mi, `imsgw's 488 says why in a Warning (RFC 3261 §20.43, code 399):\n${rpl.text}`);
    const invites = page.wsFrames.slice(frames0).filter((f) => f.dir === '<' && f.text.startsWith('INVITE '));
    assert.equal(invites.length, 0, `imsgw answered itself: no INVITE reached the page's WebSocket:\n${invites.map((f) => f.text.slice(0, 400)).join('\n')}`);
    assert.equal(await W.visible(page, 'incoming-call'), false, 'the page never showed an incoming call it cannot take');
    await W.assertMediaIdle('after imsgw refused the AMR-WB offer');
    W.assertClean(page, { since, allow: [/488|not acceptable/i] });
  } finally {
    await L.stopPhones();
  }
}));

test('6. RTP from a foreign source to the IMS-side port: the call carries on with the right tone, the packets are dropped', L.track(async () => {
  await W.needCallUi(page);
  const since = Date.now();
  const ph = await phone();
  try {
    const est = await browserCalls(ph);
    const sdp = W.imsgwSdp(est.id);
    assert.ok(sdp && sdp.port, `imsgw's SDP for ${est.id} names its IMS-side port`);
    const d0 = await W.counter('imsgw_media_dropped_total');
    // 2 s of a 3000 Hz PCMA stream with its own SSRC, then junk, from another socket; the
    // page's peak frequency sampled all the while
    const peaks = [];
    let sending = true;
    const sent = (async () => {
      await W.sendUdp(sdp.port, 100, (i) => rtpPacket({ pt: 8, seq: 1000 + i, ts: 160 * i, ssrc: 0x0bad0bad, payload: pcmaTone(3000, 160 * i) }));
      await W.sendUdp(sdp.port, 20, (i) => Buffer.from(`junk ${i} `.repeat(10 + i)));
    })().finally(() => { sending = false; });
    while (sending) {
      peaks.push(Math.round(await W.peakHz(page)));
      await sleep(200);
    }
    await sent;
    assert.ok(!peaks.some((x) => audio.near(x, 3000, 0.05)), `the page never heard the foreign 3000 Hz; its peaks meanwhile: ${peaks}`);
    const h = await W.waitHears(page, PHONE_HZ, 5000, 'after the foreign RTP');
    assert.ok(!audio.near(h.hz, 3000, 0.05), `the browser does not hear the foreign 3000 Hz: ${h.hz}`);
    assert.equal(await W.text(page, 'call-state'), 'active', 'the call carries on');
    const d1 = await W.counter('imsgw_media_dropped_total');
    assert.ok(d1 > d0, `imsgw_media_dropped_total grew with the foreign packets: ${d0} -> ${d1}`);
    await keysReachPhone(ph, ['4'], 'after the foreign RTP');
    await hangUp(ph, 'after the foreign RTP');
    await sleep(300);
    const a = ph.analyseDump();
    assert.ok(audio.near(a.hz, MIC_HZ), `the phone heard the browser's ${MIC_HZ} Hz all along: ${audio.describe(a)}`);
    W.assertClean(page, { since });
  } finally {
    await L.stopPhones();
  }
}));
