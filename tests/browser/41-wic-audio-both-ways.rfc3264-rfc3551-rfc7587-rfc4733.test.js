'use strict';
// Issue 10 §4, audio both ways (block 41): the WIC in Chromium (fake microphone: 1000 Hz) calls a
// baresip phone at the IMS side (440 Hz) through imsgw's eIMS-AGW, and the phone calls the WIC,
// over PCMA, PCMU and opus (the phone offers or accepts only that codec). Each call: the phone's
// recording carries the browser's tone ±2 %; wicMedia.stats() shows packets received and an
// audio level above 0, wicMedia.peakHz() the phone's tone ±2 %, stats().codec the codec; the
// SDP imsgw sent to the IMS is plain RTP/AVP with none of the WebRTC lines; the packet counters
// grew both ways (to_ims by every packet the phone received, to_browser by most it sent: its
// rtp_stats); after the call, imsgw_media_sessions and imsgw_media_ports_in_use read 0.
// Hang-up alternates between the browser and the phone, and each time the other side sees the
// end. DTMF: keys pressed in the page reach the phone as RFC 4733 digits; the phone's digits
// reach the gateway as telephone-event (negotiated in imsgw's SDP) and are not dropped
// (imsgw_media_dropped_total unchanged), the call and its audio carrying on (the WIC has no hook
// that reports received DTMF).
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { mediaLab } = require('../lib/wicmedia');
const { audio, sleep } = require('../lib/baresip');

const W = mediaLab({ name: '41-wic-audio-both-ways', block: 41 });
const L = W.L;
const MIC_HZ = 1000; // the browser's microphone
const PHONE_HZ = 440; // the phone's source
const TO_IMS = 'imsgw_media_packets_total{direction="to_ims"}';
const TO_BROWSER = 'imsgw_media_packets_total{direction="to_browser"}';
const DROPPED = 'imsgw_media_dropped_total';
// DESIGN.md, media: none of these reaches the IMS
const WEBRTC_LINES = /^a=(ice-|candidate|fingerprint|setup|mid|group|msid|ssrc|rtcp-fb|extmap|rtcp-mux)/m;

let page;

test('0. alice signs in with a 1000 Hz microphone; /metrics has the media gauges at 0', L.track(async () => {
  page = await W.mediaPage('alice', MIC_HZ);
  await W.needCallUi(page);
  await W.assertMediaIdle('before any call');
}));

/**
 * One call between alice's page and a fresh phone offering only `codec`.
 * c: { from: 'browser'|'phone', hangup: 'browser'|'phone', keys: ['dial-key-1', ...] pressed in
 * the page (expect: the digits at the phone), phoneDigits: sent by the phone }
 */
async function call(codec, c) {
  assert.ok(page, 'signed in (test 0)');
  await W.needCallUi(page);
  const name = codec.split('/')[0];
  const since = Date.now();
  const phone = await L.baresip(0, { prefix: 'carol', codecs: [codec], tone: await audio.toneFor(L.dir, codec, PHONE_HZ) });
  try {
    const c0 = { toIms: await W.counter(TO_IMS), toBrowser: await W.counter(TO_BROWSER) };
    const m = phone.mark();
    if (c.from === 'browser') {
      await W.dial(page, phone.aor);
    } else {
      await phone.dial(page.impu);
      await W.answer(page);
    }
    const est = await phone.waitEstablished({ from: m, ms: 15000, what: `the ${name} call (${c.from} calling) established at the phone` });
    await W.waitCall(page, 'active', 10000, `call-state active (${name}, ${c.from} calling)`);

    // the IMS leg imsgw wrote: plain RTP/AVP with the codec, no WebRTC attributes
    const sdp = W.imsgwSdp(est.id);
    assert.ok(sdp, `Kamailio received no SDP from imsgw for Call-ID ${est.id}`);
    assert.equal(sdp.proto, 'RTP/AVP', `imsgw's SDP toward the IMS is RTP/AVP:\n${sdp.sdp}`);
    assert.doesNotMatch(sdp.sdp, WEBRTC_LINES, 'no ICE/DTLS/BUNDLE/mid/msid/ssrc/rtcp-fb/extmap line reaches the IMS');
    assert.ok(sdp.codecs.some((x) => x.toLowerCase() === name.toLowerCase()), `imsgw's SDP carries ${name}: ${sdp.codecs}`);
    assert.equal(sdp.addr, '127.0.0.1', 'the IMS-side RTP address is media.ims_address');
    const [lo, hi] = [L.p.base + 50, L.p.base + 69];
    assert.ok(sdp.port >= lo && sdp.port <= hi && sdp.port % 2 === 0, `IMS-side RTP port ${sdp.port} is even and in media.rtp_ports ${lo}-${hi}`);
    assert.deepEqual(phone.decoders(), [name], `the phone decodes ${name}`);

    // the browser hears the phone
    const heard = await W.waitHears(page, PHONE_HZ, 8000, `${name}, ${c.from} calling`);
    assert.match(String(heard.stats.codec), new RegExp(name, 'i'), `wicMedia.stats().codec names ${name}`);
    assert.ok(heard.stats.packetsSent > 0, `the browser sends: ${JSON.stringify(heard.stats)}`);
    await sleep(2000);

    if (c.keys) {
      const k = phone.mark();
      for (const key of c.keys) {
        await W.press(page, key);
        await sleep(250);
      }
      const want = c.keys.map((x) => x.replace('dial-key-', '').replace('star', '*').replace('hash', '#')).join('');
      await phone.waitEvent('CALL_DTMF_END', { from: k, ms: 8000, pred: () => phone.dtmfReceived(k).length >= want.length, what: `DTMF ${want} from the page` });
      assert.equal(phone.dtmfReceived(k), want, 'RFC 4733 digits the phone reports, in order');
    }
    if (c.phoneDigits) {
      assert.ok(sdp.codecs.includes('telephone-event'), `imsgw's SDP negotiates telephone-event:\n${sdp.sdp}`);
      const d0 = await W.counter(DROPPED);
      const b0 = await W.counter(TO_BROWSER);
      await phone.sendDigits(c.phoneDigits);
      await sleep(1500);
      assert.equal(await W.counter(DROPPED), d0, `the phone's telephone-event packets were not dropped (${DROPPED})`);
      assert.ok(await W.counter(TO_BROWSER) > b0, 'packets still go to the browser');
      assert.equal(await W.text(page, 'call-state'), 'active', 'the call carries on after the phone\'s DTMF');
      await W.waitHears(page, PHONE_HZ, 5000, 'after the phone\'s DTMF');
    }

    // hang up; the other side sees it
    const h = phone.mark();
    if (c.hangup === 'browser') {
      await W.press(page, 'call-hangup');
      await phone.waitEvent('CALL_CLOSED', { from: h, ms: 5000, what: 'BYE from the browser at the phone' });
    } else {
      await phone.hangup();
      await W.waitCall(page, ['ended', 'idle'], 5000, 'the page sees the phone\'s BYE');
    }
    await sleep(300);
    const a = phone.analyseDump();
    assert.ok(a.rms > 0.02, `${name}: the phone's recording has the browser's audio: ${audio.describe(a)}`);
    assert.ok(audio.near(a.hz, MIC_HZ), `${name}: the phone hears ${MIC_HZ} Hz ±2 %: ${audio.describe(a)}`);
    await W.assertMediaIdle(`after the ${name} call`);
    // every packet the phone received came through imsgw; most of what it sent went on
    const st = phone.rtpStats().pop();
    assert.ok(st, `the phone logged its RTP counts:\n${phone.log().slice(-1000)}`);
    assert.equal(st.rxErrors, 0, `the phone counted no RTP errors: ${JSON.stringify(st)}`);
    const c1 = { toIms: await W.counter(TO_IMS), toBrowser: await W.counter(TO_BROWSER) };
    assert.ok(c1.toIms - c0.toIms >= st.rxPackets * 0.95, `${TO_IMS} grew by the phone's ${st.rxPackets} received packets: ${c0.toIms} -> ${c1.toIms}`);
    assert.ok(c1.toBrowser - c0.toBrowser >= st.txPackets * 0.5, `${TO_BROWSER} grew by most of the phone's ${st.txPackets} sent packets: ${c0.toBrowser} -> ${c1.toBrowser}`);
    W.assertClean(page, { since });
  } finally {
    await L.stopPhones();
  }
}

test('1. browser -> phone over PCMA; keys 1 5 # * reach the phone as RFC 4733; the browser hangs up', L.track(async () => {
  await call('PCMA/8000/1', { from: 'browser', hangup: 'browser', keys: ['dial-key-1', 'dial-key-5', 'dial-key-hash', 'dial-key-star'] });
}));

test('2. phone -> browser over PCMA; the phone\'s DTMF 123 reaches the gateway as telephone-event, not dropped; the phone hangs up', L.track(async () => {
  await call('PCMA/8000/1', { from: 'phone', hangup: 'phone', phoneDigits: '123' });
}));

test('3. browser -> phone over PCMU; the phone hangs up', L.track(async () => {
  await call('PCMU/8000/1', { from: 'browser', hangup: 'phone' });
}));

test('4. phone -> browser over PCMU; the browser hangs up', L.track(async () => {
  await call('PCMU/8000/1', { from: 'phone', hangup: 'browser' });
}));

test('5. browser -> phone over opus; the browser hangs up', L.track(async () => {
  await call('opus/48000/2', { from: 'browser', hangup: 'browser' });
}));

test('6. phone -> browser over opus; the phone hangs up', L.track(async () => {
  await call('opus/48000/2', { from: 'phone', hangup: 'phone' });
}));
