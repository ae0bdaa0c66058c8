'use strict';
// Issue 10 §4 (block 44, media.inactivity_secs = 5): the tab is closed in the middle of a call
// with a baresip phone. Nothing is said over SIP by the page; the WebSocket closes, and the
// browser's STUN consent checks (RFC 7675) stop. The eIMS-AGW notices within inactivity_secs,
// the call ends and imsgw sends BYE toward the IMS: the phone sees the call closed within
// inactivity_secs (+ 3 s of slack) of the close, Kamailio received that BYE from imsgw, and the
// media gauges read 0. A second call, from a fresh page, works afterwards.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { mediaLab } = require('../lib/wicmedia');
const { audio, sleep } = require('../lib/baresip');
const { kamMessages } = require('../lib/auth');

const INACTIVITY_SECS = 5;
const W = mediaLab({ name: '44-wic-tab-closed', block: 44, media: { inactivity_secs: INACTIVITY_SECS } });
const L = W.L;
const PCMA = 'PCMA/8000/1';
const MIC_HZ = 1000;
const PHONE_HZ = 440;

test('1. tab closed mid-call: the phone gets BYE from imsgw within inactivity_secs; gauges 0; a new page calls again', L.track(async () => {
  const page = await W.mediaPage('alice', MIC_HZ, 'alice-closed');
  await W.needCallUi(page);
  const carol = await L.baresip(0, { prefix: 'carol', codecs: [PCMA], tone: await audio.toneFor(L.dir, PCMA, PHONE_HZ) });
  try {
    const m = carol.mark();
    await W.dial(page, carol.aor);
    const est = await carol.waitEstablished({ from: m });
    await W.waitCall(page, 'active');
    await W.waitHears(page, PHONE_HZ, 8000, 'before the tab closes');
    await sleep(1000);
    const h = carol.mark();
    const t0 = Date.now();
    await page.close({ runBeforeUnload: false });
    const closed = await carol.waitEvent('CALL_CLOSED', { from: h, ms: (INACTIVITY_SECS + 3) * 1000, what: `the call ended within inactivity_secs (${INACTIVITY_SECS}) + 3 s of the tab closing` });
    const secs = (closed.at - t0) / 1000;
    const bye = kamMessages(L.kam, est.id).find((x) => x.dir === 'req' && /^BYE /.test(x.text));
    assert.ok(bye, `Kamailio received a BYE for the call (${est.id})`);
    assert.equal(bye.src, `127.0.0.1:${L.p.sip}`, `the BYE came from imsgw:\n${bye.text}`);
    await W.assertMediaIdle('after the tab closed');
    console.log(`timing: tab closed -> BYE at the phone in ${secs.toFixed(2)} s (inactivity_secs ${INACTIVITY_SECS})`);

    // the phone and the gateway are fine: a fresh page calls again
    const again = await W.mediaPage('alice', MIC_HZ, 'alice-again');
    const m2 = carol.mark();
    await W.dial(again, carol.aor);
    await carol.waitEstablished({ from: m2, what: 'a call from a new page' });
    await W.waitCall(again, 'active');
    await W.waitHears(again, PHONE_HZ, 8000, 'the new page');
    const h2 = carol.mark();
    await W.press(again, 'call-hangup');
    await carol.waitEvent('CALL_CLOSED', { from: h2, ms: 5000 });
    await W.assertMediaIdle('after the second call');
    W.assertClean(again);
  } finally {
    await L.stopPhones();
  }
}));
