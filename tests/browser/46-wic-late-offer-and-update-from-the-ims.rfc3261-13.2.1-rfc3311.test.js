'use strict';
// Offers the other way round (block 46): sipp as an IMS-side caller sends an INVITE without SDP
// (RFC 3261 §13.2.1: the offer comes in the 2xx, the answer in the ACK) and later holds and
// resumes with UPDATE (RFC 3311) in the confirmed dialog (tests/sipp/uac-invite-late-offer-update.xml).
// imsgw must carry each the right way: the page's WebRTC offer becomes a plain RTP/AVP offer in
// the 200 (sipp checks), the ACK's RTP/AVP answer reaches the page as a WebRTC answer (the page
// hears sipp's 440 Hz), each UPDATE's offer reaches the page as a WebRTC re-offer without an ICE
// or DTLS restart, and the page's answers come back as RTP/AVP with the mirrored direction
// (recvonly for sendonly, then sendrecv); audio carries on after the resume.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { mediaLab } = require('../lib/wicmedia');
const { sipFrames } = require('../lib/wic');
const { audio } = require('../lib/baresip');
const sipp = require('../lib/sipp');

const W = mediaLab({ name: '46-wic-late-offer-and-update', block: 46 });
const L = W.L;
const IMS_HZ = 440;

let page;

test('0. alice signs in with a 1000 Hz microphone', L.track(async () => {
  page = await W.mediaPage('alice', 1000);
  await W.needCallUi(page);
  await W.assertMediaIdle('before any call');
}));

test('1. offerless INVITE from the IMS, answer in the ACK, UPDATE hold and resume', L.track(async () => {
  const since = Date.now();
  await audio.makeAlaw(`${L.dir}/tone.al`, { hz: IMS_HZ, secs: 30 });
  const user = page.impu.replace(/^sip:/, '').split('@')[0];
  const caller = sipp.start({
    dir: L.dir, name: 'uac-late-offer', scenario: 'uac-invite-late-offer-update.xml', service: user,
    port: L.p.base + 36, mediaPort: L.p.base + 40, target: `127.0.0.1:${L.p.ims}`, timeoutSecs: 40, cwd: L.dir,
  });
  await W.answer(page);
  await W.waitCall(page, 'active', 10000, 'active after answering the offerless INVITE');
  await W.waitHears(page, IMS_HZ, 8000, 'sipp\'s tone after its answer in the ACK');
  // sipp resumes 5 s after its ACK and hangs up 3 s later: the tone must be back in between.
  const end = Date.now() + 10000;
  while (page.wsFrames.filter((f) => f.dir === '<' && /^UPDATE /.test(f.text)).length < 2) {
    assert.ok(Date.now() < end, `no second UPDATE reached the page: ${sipFrames(page).map((f) => f.start).join(' | ')}`);
    await new Promise((res) => setTimeout(res, 100));
  }
  const p0 = (await W.stats(page)).packetsReceived;
  await W.waitPacketsGrow(page, p0, 2000, 'after the UPDATE resume');
  await W.waitHears(page, IMS_HZ, 2500, 'sipp\'s tone after the UPDATE resume');
  const r = await caller.done;
  assert.equal(r.code, 0, `sipp: RTP/AVP offer in the 200, UPDATE answers recvonly then sendrecv, BYE 200:\n${sipp.describe(r)}`);
  // The page got the offer-less INVITE, answered with its own offer, got the answer in the ACK
  // and two UPDATE re-offers, all as WebRTC SDP (ICE credentials and fingerprint unchanged).
  const frames = page.wsFrames.map((f) => ({ dir: f.dir, text: f.text }));
  const inb = (re) => frames.filter((f) => f.dir === '<' && re.test(f.text.split('\r\n')[0]));
  const ack = inb(/^ACK /).pop();
  assert.ok(ack && /UDP\/TLS\/RTP\/SAVPF/.test(ack.text), `the ACK to the page carries a WebRTC answer:\n${ack && ack.text}`);
  const updates = inb(/^UPDATE /);
  assert.equal(updates.length, 2, `two UPDATEs reached the page: ${sipFrames(page).map((f) => f.start).join(' | ')}`);
  const attr = (t, a) => (new RegExp(`^a=${a}:(.*)$`, 'm').exec(t) || [])[1];
  for (const u of updates) {
    assert.match(u.text, /UDP\/TLS\/RTP\/SAVPF/, u.text);
    assert.equal(attr(u.text, 'ice-ufrag'), attr(ack.text, 'ice-ufrag'), 'no ICE restart on a SIP re-offer');
    assert.equal(attr(u.text, 'fingerprint'), attr(ack.text, 'fingerprint'), 'no DTLS restart on a SIP re-offer');
  }
  await W.waitCall(page, ['ended', 'idle'], 5000);
  await W.assertMediaIdle('after the late-offer call');
  W.assertClean(page, { since });
}));
