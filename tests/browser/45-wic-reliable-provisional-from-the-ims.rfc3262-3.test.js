'use strict';
// RFC 3262 on the browser's behalf (block 45): JsSIP has no 100rel, so when the IMS side's
// INVITE requires it (`Require: 100rel`), imsgw sends the browser's 180 reliably (Require +
// RSeq), answers the IMS side's PRACK itself (the page never sees it), and holds the browser's
// 200 until that PRACK came (§3). sipp plays the IMS-side caller
// (tests/sipp/uac-invite-100rel.xml): it checks the 180's Require and RSeq, PRACKs it, needs the
// PRACK's 200 before the INVITE's, gets an RTP/AVP answer, then streams 440 Hz (PCMA) that the
// page must hear, and hangs up. A PRACK with a wrong RAck gets 481 (in-memory edge test
// rfc3262_3_the_edge_makes_the_browsers_18x_reliable_and_answers_the_prack_itself).
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { mediaLab } = require('../lib/wicmedia');
const { sipFrames } = require('../lib/wic');
const { audio } = require('../lib/baresip');
const { kamMessages } = require('../lib/auth');
const sipp = require('../lib/sipp');

const W = mediaLab({ name: '45-wic-reliable-provisional', block: 45 });
const L = W.L;
const MIC_HZ = 1000;
const IMS_HZ = 440;

let page;

test('0. alice signs in with a 1000 Hz microphone', L.track(async () => {
  page = await W.mediaPage('alice', MIC_HZ);
  await W.needCallUi(page);
  await W.assertMediaIdle('before any call');
}));

test('1. an IMS caller requiring 100rel: reliable 180, PRACK answered by imsgw, 200 after it, audio', L.track(async () => {
  const since = Date.now();
  await audio.makeAlaw(`${L.dir}/tone.al`, { hz: IMS_HZ, secs: 20 });
  const user = page.impu.replace(/^sip:/, '').split('@')[0];
  const caller = sipp.start({
    dir: L.dir, name: 'uac-100rel', scenario: 'uac-invite-100rel.xml', service: user,
    port: L.p.base + 36, mediaPort: L.p.base + 40, target: `127.0.0.1:${L.p.ims}`, timeoutSecs: 40, cwd: L.dir,
  });
  await W.el(page, 'incoming-call').waitFor({ state: 'visible', timeout: 10000 });
  // Answer after the PRACK had time to pass: its 200 must precede the INVITE's either way.
  await W.answer(page);
  await W.waitCall(page, 'active', 10000, 'active after answering the 100rel call');
  await W.waitHears(page, IMS_HZ, 8000, 'the IMS caller\'s tone after the PRACK dance');
  const r = await caller.done;
  assert.equal(r.code, 0, `sipp's 100rel caller: reliable 180, PRACK 200 before INVITE 200, RTP/AVP answer, BYE 200:\n${sipp.describe(r)}`);
  // What the IMS side received from imsgw: a 180 with Require: 100rel and RSeq; no PRACK
  // ever went down the page's WebSocket (Kamailio forwarded the PRACK to imsgw, which answered).
  const callId = (/^Call-ID:\s*(\S+)/mi.exec(r.messages) || [])[1];
  assert.ok(callId, `the Call-ID in sipp's trace:\n${r.messages.slice(0, 2000)}`);
  const msgs = kamMessages(L.kam, callId);
  const ringing = msgs.find((m) => m.dir === 'rpl' && /^SIP\/2\.0 180 /.test(m.text));
  assert.ok(ringing, `Kamailio received the 180 from imsgw: ${msgs.map((m) => m.text.split('\r\n')[0]).join(' | ')}`);
  assert.match(ringing.text, /^Require:\s*100rel\r?$/mi, ringing.text);
  assert.match(ringing.text, /^RSeq:\s*\d+\r?$/mi, ringing.text);
  const prackOk = msgs.find((m) => m.dir === 'rpl' && /^CSeq:\s*2 PRACK/mi.test(m.text));
  assert.ok(prackOk && /^SIP\/2\.0 200 /.test(prackOk.text), `imsgw answered the PRACK 200: ${prackOk && prackOk.text}`);
  const frames = sipFrames(page);
  assert.ok(frames.some((f) => f.dir === '<' && /^INVITE /.test(f.start)), `the page's WebSocket frames are recorded: ${frames.length}`);
  assert.ok(!frames.some((f) => /^PRACK /.test(f.start)), 'no PRACK reached the page');
  await W.waitCall(page, ['ended', 'idle'], 5000);
  await W.assertMediaIdle('after the 100rel call');
  W.assertClean(page, { since });
}));
