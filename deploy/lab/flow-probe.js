#!/usr/bin/env node
// Which connection does Kamailio use to reach a registered Path URI?
// Plays an edge proxy over TCP or TLS (node built-ins only):
//  1. connects to the IMS side (HOST:PORT) and keeps that connection open,
//  2. REGISTERs USER with "Path: <sip:probe@127.0.0.1:LISTEN;lr;ob;transport=T>",
//  3. listens on 127.0.0.1:LISTEN (same transport; TLS with CERTDIR/server.{pem,key}),
//  4. prints where the next request for USER arrives (our registering connection
//     or a new inbound one), its Route header and, for TLS, the SNI Kamailio sent,
//     and answers it with 480.  Exits 0 when a request arrived.
//
//   node flow-probe.js tcp 127.0.0.1:5070 USER 5094 [WAIT_SECONDS]
//   node flow-probe.js tls 127.0.0.1:5071 USER 5093 WAIT_SECONDS CERTDIR
// Then send an INVITE/MESSAGE to USER@ims.example (e.g. sipp uac-invite-480.xml).
'use strict';
const net = require('net');
const tls = require('tls');
const fs = require('fs');
const crypto = require('crypto');

const [transport, target, user, listenPort, waitSec = '10', certDir] = process.argv.slice(2);
if (!['tcp', 'tls'].includes(transport) || !target || !user || !listenPort) {
  console.error('usage: flow-probe.js tcp|tls HOST:PORT USER LISTEN_PORT [WAIT_SECONDS] [CERTDIR]');
  process.exit(2);
}
const [host, port] = target.split(':');
const T = transport.toUpperCase();
let done = false;

function onData(label, sock) {
  let buf = '';
  sock.on('data', (d) => {
    buf += d.toString();
    for (;;) {
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.slice(0, end);
      const cl = Number((/\r\nContent-Length:\s*(\d+)/i.exec(head) || [0, 0])[1]);
      if (buf.length < end + 4 + cl) return;
      buf = buf.slice(end + 4 + cl);
      const lines = head.split('\r\n');
      const get = (n) => lines.filter((l) => l.toLowerCase().startsWith(n.toLowerCase() + ':')).map((l) => l.slice(n.length + 1).trim());
      console.log(`[${label}] ${lines[0]}`);
      if (lines[0].startsWith('SIP/2.0')) {
        console.log(`[${label}]   Path: ${get('Path').join(', ')}  Require: ${get('Require').join(', ')}`);
        continue;
      }
      console.log(`[${label}]   Route: ${get('Route').join(', ')}`);
      if (sock.servername !== undefined) console.log(`[${label}]   TLS SNI from Kamailio: ${sock.servername || '(none)'}`);
      const method = lines[0].split(' ')[0];
      if (method === 'ACK') continue;
      const keep = lines.slice(1).filter((l) => /^(via|from|to|call-id|cseq):/i.test(l))
        .map((l) => (/^to:/i.test(l) && !/;tag=/.test(l) ? l + ';tag=probe' : l));
      sock.write(['SIP/2.0 480 Temporarily Unavailable', ...keep, 'Content-Length: 0', '', ''].join('\r\n'));
      done = true;
    }
  });
}

const serverOpts = transport === 'tls'
  ? { key: fs.readFileSync(`${certDir}/server.key`), cert: fs.readFileSync(`${certDir}/server.pem`) } : {};
const server = transport === 'tls'
  ? tls.createServer(serverOpts, (s) => { console.log(`[inbound] new TLS connection from ${s.remoteAddress}:${s.remotePort}`); onData('inbound', s); })
  : net.createServer((s) => { console.log(`[inbound] new TCP connection from ${s.remoteAddress}:${s.remotePort}`); onData('inbound', s); });
server.listen(Number(listenPort), '127.0.0.1', () => {
  const connect = transport === 'tls'
    ? (cb) => tls.connect({ host, port: Number(port), ca: fs.readFileSync(`${certDir}/ca.pem`), servername: 'localhost' }, cb)
    : (cb) => net.connect({ host, port: Number(port) }, cb);
  const c = connect(() => {
    console.log(`[registering] connected ${c.localAddress}:${c.localPort} -> ${host}:${port}` +
      (transport === 'tls' ? ` (cert verified: ${c.authorized})` : ''));
    const me = `${c.localAddress}:${c.localPort}`;
    c.write([
      'REGISTER sip:ims.example SIP/2.0',
      `Via: SIP/2.0/${T} ${me};branch=z9hG4bK${crypto.randomBytes(6).toString('hex')};rport`,
      'Max-Forwards: 70',
      `From: <sip:${user}@ims.example>;tag=${crypto.randomBytes(4).toString('hex')}`,
      `To: <sip:${user}@ims.example>`,
      `Call-ID: ${crypto.randomBytes(8).toString('hex')}`,
      'CSeq: 1 REGISTER',
      `Path: <sip:probe@127.0.0.1:${listenPort};lr;ob;transport=${transport}>`,
      'Supported: path, outbound',
      `Contact: <sip:${user}@abcd.invalid;transport=ws;ob>;reg-id=1;+sip.instance="<urn:uuid:${crypto.randomUUID()}>"`,
      'Expires: 600',
      'Content-Length: 0', '', ''].join('\r\n'));
  });
  c.on('error', (e) => { console.error('registering connection error', e.message); process.exit(1); });
  onData('registering', c);
});
setTimeout(() => { console.log(done ? 'request arrived' : 'no request arrived'); process.exit(done ? 0 : 1); }, Number(waitSec) * 1000);
