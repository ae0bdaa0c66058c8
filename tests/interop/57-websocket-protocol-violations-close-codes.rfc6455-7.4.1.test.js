'use strict';
// Issue 11 §1: a WebSocket client that breaks RFC 6455 is failed with the close frame RFC 6455
// §7.1.7 and §7.4.1 ask for, not dropped without one: 1002 (protocol error) for an unmasked
// frame, a reserved opcode, an oversize or fragmented control frame, RSV1 without an
// extension, a continuation with nothing to continue; 1007 for a text frame that is not
// UTF-8; 1009 for a message over websocket.max_message_size (also when fragmented). Raw TCP
// with hand-made frames, since no WebSocket library sends these. Block 57.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const net = require('node:net');
const { useLab } = require('../lib/lab');

const L = useLab({ name: 'ws-close-codes', block: 57 });

/** A raw WebSocket: the upgrade by hand, then frames as given; resolves the close code. */
async function rawSocket() {
  const u = new URL(L.gw.wsUrl);
  const sock = net.connect(Number(u.port), u.hostname);
  await new Promise((r, j) => { sock.once('connect', r); sock.once('error', j); });
  const key = crypto.randomBytes(16).toString('base64');
  sock.write(`GET ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sip\r\n\r\n`);
  let buf = Buffer.alloc(0);
  let upgraded = false;
  const c = { sock };
  c.closed = new Promise((resolve) => {
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.slice(0, end).toString();
        assert.match(head, /^HTTP\/1\.1 101/, head);
        upgraded = true;
        buf = buf.slice(end + 4);
        c.onUpgrade();
      }
      // Frames from the server are unmasked: look for a Close (opcode 8).
      while (buf.length >= 2) {
        const op = buf[0] & 0x0f;
        let len = buf[1] & 0x7f;
        let off = 2;
        if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
        if (buf.length < off + len) return;
        const payload = buf.slice(off, off + len);
        buf = buf.slice(off + len);
        if (op === 8) resolve({ code: payload.length >= 2 ? payload.readUInt16BE(0) : null, reason: payload.slice(2).toString() });
      }
    });
    sock.on('close', () => resolve(null));
  });
  await new Promise((r) => { c.onUpgrade = r; });
  return c;
}

/** A client frame: FIN, opcode, payload; masked unless told otherwise; rsv1 if asked. */
function frame(op, payload, { fin = true, mask = true, rsv1 = false } = {}) {
  const p = Buffer.from(payload);
  const head = [((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | op)];
  const m = mask ? 0x80 : 0;
  if (p.length < 126) head.push(m | p.length);
  else if (p.length < 65536) head.push(m | 126, p.length >> 8, p.length & 0xff);
  else {
    head.push(m | 127, 0, 0, 0, 0);
    head.push((p.length >>> 24) & 0xff, (p.length >>> 16) & 0xff, (p.length >>> 8) & 0xff, p.length & 0xff);
  }
  if (!mask) return Buffer.concat([Buffer.from(head), p]);
  const key = crypto.randomBytes(4);
  const masked = Buffer.from(p.map((b, i) => b ^ key[i % 4]));
  return Buffer.concat([Buffer.from(head), key, masked]);
}

const CASES = [
  ['an unmasked frame (§5.1)', () => frame(1, 'OPTIONS', { mask: false }), 1002],
  ['a reserved data opcode 0x3 (§5.2)', () => frame(3, 'x'), 1002],
  ['a control frame over 125 bytes (§5.5)', () => frame(9, Buffer.alloc(126, 0x61)), 1002],
  ['a fragmented control frame (§5.5)', () => frame(9, 'x', { fin: false }), 1002],
  ['RSV1 without an extension (§5.2)', () => frame(1, 'x', { rsv1: true }), 1002],
  ['a continuation with nothing to continue (§5.4)', () => frame(0, 'x'), 1002],
  ['a text frame that is not UTF-8 (§8.1)', () => frame(1, Buffer.from([0x53, 0x49, 0x50, 0xc3, 0x28])), 1007],
  ['a 1 MiB message in 64 KiB fragments (over websocket.max_message_size)', () => Buffer.concat(
    Array.from({ length: 16 }, (_, i) => frame(i === 0 ? 1 : 0, Buffer.alloc(65536, 0x61), { fin: i === 15 })),
  ), 1009],
];

for (const [what, make, code] of CASES) {
  test(`RFC 6455 §7.4.1: ${what} -> close frame ${code}`, L.track(async () => {
    const c = await rawSocket();
    c.sock.write(make());
    const closed = await Promise.race([c.closed, new Promise((r) => setTimeout(() => r('timeout'), 5000))]);
    c.sock.destroy();
    assert.notEqual(closed, 'timeout', 'the connection is ended');
    assert.ok(closed, 'a close frame came before the TCP connection ended');
    assert.equal(closed.code, code, JSON.stringify(closed));
  }));
}
