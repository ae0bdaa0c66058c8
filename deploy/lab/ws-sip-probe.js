#!/usr/bin/env node
// Minimal SIP-over-WebSocket client for the lab (no JsSIP): registers USER the way
// JsSIP does (reg-id, +sip.instance, ;ob, "Supported: path, outbound, gruu"), prints
// the 200's Path/Require headers, then optionally stays as a UAS that answers
// INVITE with 200 + SDP, MESSAGE and BYE with 200, printing the Route it saw.
//
//   NODE_PATH=/tmp/x/node_modules node ws-sip-probe.js ws://127.0.0.1:8090/sip alice [STAY_SECONDS]
//   TOKEN=<access token> ... : adds Authorization: Bearer <token> to the REGISTER
// (needs the npm package "ws"; install it in a temp dir: npm install --prefix /tmp/x ws)
// Exit 0 when the REGISTER got 200 (and, with STAY_SECONDS, a call or MESSAGE ended well).
'use strict';
const WebSocket = require('ws');
const crypto = require('crypto');

const [url, user, staySec] = process.argv.slice(2);
if (!url || !user) { console.error('usage: ws-sip-probe.js WS_URL USER [STAY_SECONDS]'); process.exit(2); }
const host = crypto.randomBytes(4).toString('hex') + '.invalid';
const ctag = crypto.randomBytes(4).toString('hex');
const callId = crypto.randomBytes(8).toString('hex');
const instance = crypto.randomUUID();
const contact = `<sip:${ctag}@${host};transport=ws;ob>`;
let sawCallOrMessage = false, registered = false;

function parse(text) {
  const [head, ...rest] = text.split('\r\n\r\n');
  const lines = head.split('\r\n');
  const hdrs = [];
  for (const l of lines.slice(1)) { const i = l.indexOf(':'); hdrs.push([l.slice(0, i).trim(), l.slice(i + 1).trim()]); }
  const get = (n) => hdrs.filter(([k]) => k.toLowerCase() === n.toLowerCase()).map(([, v]) => v);
  return { start: lines[0], hdrs, get, body: rest.join('\r\n\r\n') };
}

function reply(ws, req, code, reason, extra = [], body = '') {
  const lines = [`SIP/2.0 ${code} ${reason}`];
  for (const [k, v] of req.hdrs) {
    if (['via', 'from', 'call-id', 'cseq', 'record-route'].includes(k.toLowerCase())) lines.push(`${k}: ${v}`);
    if (k.toLowerCase() === 'to') lines.push(`${k}: ${v}${/;tag=/.test(v) ? '' : ';tag=' + ctag}`);
  }
  lines.push(`Contact: ${contact}`, ...extra, `Content-Length: ${Buffer.byteLength(body)}`, '', body);
  ws.send(lines.join('\r\n'));
}

const ws = new WebSocket(url, 'sip', { handshakeTimeout: 5000 });
const timer = setTimeout(() => { console.error('timeout'); process.exit(1); }, (Number(staySec || 0) + 10) * 1000);
ws.on('error', (e) => { console.error('ws error', e.message); process.exit(1); });
ws.on('open', () => {
  console.log('ws open, protocol', ws.protocol);
  ws.send([
    'REGISTER sip:ims.example SIP/2.0',
    `Via: SIP/2.0/WS ${host};branch=z9hG4bK${crypto.randomBytes(6).toString('hex')}`,
    'Max-Forwards: 69',
    `To: <sip:${user}@ims.example>`,
    `From: <sip:${user}@ims.example>;tag=${ctag}`,
    `Call-ID: ${callId}`,
    'CSeq: 1 REGISTER',
    `Contact: ${contact};+sip.ice;reg-id=1;+sip.instance="<urn:uuid:${instance}>";expires=600`,
    'Expires: 600',
    'Allow: INVITE,ACK,CANCEL,BYE,UPDATE,MESSAGE,OPTIONS,REFER,INFO,NOTIFY',
    'Supported: path,gruu,outbound',
    'User-Agent: ws-sip-probe',
    // RFC 8898: imsgw wants a Bearer token (mint one with `imsgw token mint`); Kamailio's
    // own edge ignores it.
    ...(process.env.TOKEN ? [`Authorization: Bearer ${process.env.TOKEN}`] : []),
    'Content-Length: 0', '', ''].join('\r\n'));
});
ws.on('message', (data) => {
  const m = parse(data.toString());
  if (m.start.startsWith('SIP/2.0')) {
    console.log('<-', m.start, '| Path:', m.get('Path').join(', '), '| Require:', m.get('Require').join(', '));
    if (/^SIP\/2.0 [2-6]/.test(m.start)) {
      if (!m.start.startsWith('SIP/2.0 200')) process.exit(1);
      registered = true;
      if (!staySec) { ws.close(); clearTimeout(timer); process.exit(0); }
      setTimeout(() => { ws.close(); clearTimeout(timer); process.exit(sawCallOrMessage ? 0 : 1); }, Number(staySec) * 1000);
    }
    return;
  }
  const method = m.start.split(' ')[0];
  console.log('->', m.start, '| Route:', m.get('Route').join(', ') || '-', '| Record-Route:', m.get('Record-Route').join(', ') || '-');
  if (method === 'INVITE') {
    reply(ws, m, 200, 'OK', ['Content-Type: application/sdp'],
      'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 16400 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n');
  } else if (method === 'BYE' || method === 'MESSAGE' || method === 'OPTIONS') {
    reply(ws, m, 200, 'OK');
    if (method !== 'OPTIONS') sawCallOrMessage = true;
  } else if (method !== 'ACK') {
    reply(ws, m, 501, 'Not Implemented');
  }
});
