// A stand-in for imsgw, for the WIC's own smoke test only: serves dist/ and config.json, a
// minimal WAF (authorize with PKCE S256, token with rotation, revoke, logout) and a SIP-over-
// WebSocket registrar that checks the Bearer token, and a relay of calls between the pages
// registered to it (browser to browser WebRTC, so the WIC's call flow can be driven without the
// real eIMS-AGW); calls to `busy` get 486 and to `nocodec` 488 with a Warning, as the gateway
// sends them. Not a model of the real gateway.
import { createServer } from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { WebSocketServer } from 'ws';

const b64u = (b) => Buffer.from(b).toString('base64url');
const rnd = () => randomBytes(12).toString('hex');

export async function startFakeGateway({ dist, impu = 'sip:alice@ims.example', ttl = 8 }) {
  const st = {
    ttl,
    codes: new Map(),
    valid: new Set(), // access tokens accepted on REGISTER
    refresh: new Set(),
    revoked: [],
    logouts: 0,
    registers: [], // { token, expires }
    messages: [],
    responses: [], // responses the client sent to our requests
    refuseAll: false,
    sockets: new Set(),
    contact: null,
    /** The IMPU the next sign-in gets (then back to the default). */
    nextImpu: null,
    /** Registered pages: { ws, aorUser, contactUser, contact }. */
    bindings: [],
    /** Top Via branch of a relayed request -> the socket that sent it (its responses go back). */
    branches: new Map(),
    /** Requests relayed between pages: first lines. */
    relayed: [],
  };
  const owner = new Map(); // access/refresh token or code -> impu
  const mint = (who = impu) => {
    const h = b64u(JSON.stringify({ alg: 'none', typ: 'JWT' }));
    const p = b64u(JSON.stringify({ impu: who, exp: Math.floor(Date.now() / 1000) + st.ttl, jti: rnd() }));
    const at = `${h}.${p}.x`;
    const rt = rnd();
    st.valid.add(at);
    st.refresh.add(rt);
    owner.set(at, who);
    owner.set(rt, who);
    return { access_token: at, refresh_token: rt, expires_in: st.ttl, scope: 'sip', token_type: 'Bearer' };
  };

  const server = createServer(async (req, res) => {
    const base = `http://${req.headers.host}`;
    const url = new URL(req.url, base);
    const body = await new Promise((r) => { let d = ''; req.on('data', (c) => (d += c)); req.on('end', () => r(d)); });
    const form = new URLSearchParams(body);
    const json = (code, o) => { res.writeHead(code, { 'content-type': 'application/json', 'cache-control': 'no-store' }); res.end(JSON.stringify(o)); };
    if (url.pathname === '/wic/config.json') {
      return json(200, {
        websocket_url: `ws://${req.headers.host}/sip`, sip_domain: 'ims.example', client_id: 'wic', issuer: base,
        authorization_endpoint: `${base}/oauth/authorize`, token_endpoint: `${base}/oauth/token`,
        revocation_endpoint: `${base}/oauth/revoke`, logout_endpoint: `${base}/auth/logout`, scope: 'sip', redirect_uri: `${base}/`,
      });
    }
    if (url.pathname === '/oauth/authorize') {
      const q = url.searchParams;
      if (q.get('code_challenge_method') !== 'S256' || q.get('client_id') !== 'wic' || q.get('response_type') !== 'code') return json(400, { error: 'invalid_request' });
      const code = rnd();
      st.codes.set(code, q.get('code_challenge'));
      owner.set(code, st.nextImpu || impu);
      st.nextImpu = null;
      res.writeHead(302, { location: `${q.get('redirect_uri')}?code=${code}&state=${encodeURIComponent(q.get('state'))}&iss=${encodeURIComponent(base)}` });
      return res.end();
    }
    if (url.pathname === '/oauth/token' && req.method === 'POST') {
      if (form.get('grant_type') === 'authorization_code') {
        const ch = st.codes.get(form.get('code'));
        st.codes.delete(form.get('code'));
        const ok = ch && b64u(createHash('sha256').update(form.get('code_verifier') || '').digest()) === ch;
        return ok ? json(200, mint(owner.get(form.get('code')))) : json(400, { error: 'invalid_grant' });
      }
      if (form.get('grant_type') === 'refresh_token') {
        const rt = form.get('refresh_token');
        if (!st.refresh.has(rt)) return json(400, { error: 'invalid_grant' });
        st.refresh.delete(rt);
        return json(200, mint(owner.get(rt)));
      }
      return json(400, { error: 'unsupported_grant_type' });
    }
    if (url.pathname === '/oauth/revoke' && req.method === 'POST') {
      st.revoked.push(form.get('token'));
      st.valid.delete(form.get('token'));
      st.refresh.delete(form.get('token'));
      return json(200, {});
    }
    if (url.pathname === '/auth/logout' && req.method === 'POST') { st.logouts += 1; res.writeHead(200); return res.end('ok'); }
    const file = url.pathname === '/' ? 'index.html' : url.pathname.slice(1);
    try {
      const data = await readFile(join(dist, file));
      const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.map': 'application/json' };
      res.writeHead(200, {
        'content-type': types[extname(file)] || 'application/octet-stream',
        'content-security-policy': `default-src 'self'; connect-src 'self' ws://${req.headers.host}; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'`,
      });
      res.end(data);
    } catch {
      res.writeHead(404); res.end();
    }
  });

  const wss = new WebSocketServer({ noServer: true, handleProtocols: (p) => (p.has('sip') ? 'sip' : false) });
  server.on('upgrade', (req, sock, head) => {
    if (!st.up) return sock.destroy();
    wss.handleUpgrade(req, sock, head, (ws) => wss.emit('connection', ws));
  });
  st.up = true;
  wss.on('connection', (ws) => {
    st.sockets.add(ws);
    ws.on('close', () => {
      st.sockets.delete(ws);
      st.bindings = st.bindings.filter((b) => b.ws !== ws);
    });
    ws.on('message', (d) => onSip(ws, d.toString()));
  });

  function hdr(msg, name) {
    const m = new RegExp(`^${name}:\\s*(.*)$`, 'mi').exec(msg);
    return m ? m[1].trim() : null;
  }
  function reply(ws, req, code, reason, extra = []) {
    const to = hdr(req, 'To');
    const lines = [`SIP/2.0 ${code} ${reason}`, ...req.split('\r\n').filter((l) => /^(Via|From|Call-ID|CSeq):/i.test(l)),
      `To: ${/;tag=/.test(to) ? to : `${to};tag=${rnd()}`}`, ...extra, 'Content-Length: 0', '', ''];
    ws.send(lines.join('\r\n'));
  }
  function onSip(ws, msg) {
    if (msg.startsWith('SIP/2.0')) {
      if (!relayResponse(msg)) st.responses.push(msg);
      return;
    }
    const method = msg.split(' ')[0];
    const auth = hdr(msg, 'Authorization') || '';
    const token = auth.startsWith('Bearer ') ? auth.slice(7) : null;
    if (method === 'REGISTER') {
      const contact = hdr(msg, 'Contact');
      const expires = Number(hdr(msg, 'Expires'));
      st.registers.push({ token, expires, contact });
      if (st.refuseAll || !token || !st.valid.has(token)) return reply(ws, msg, 401, 'Unauthorized', ['WWW-Authenticate: Bearer realm="ims.example", error="invalid_token"']);
      st.contact = contact.replace(/;expires=\d+/, '');
      const userOf = (u) => (/sips?:([^@;>]+)@/.exec(u) || [])[1];
      st.bindings = st.bindings.filter((b) => b.ws !== ws);
      if (expires > 0) st.bindings.push({ ws, aorUser: userOf(hdr(msg, 'To')), contactUser: userOf(contact), contact: st.contact });
      return reply(ws, msg, 200, 'OK', [`Contact: ${contact.replace(/;expires=\d+/, '')};expires=${expires}`]);
    }
    if (method === 'MESSAGE') {
      st.messages.push(msg);
      const to = /<?(sip:[^>;]+)/.exec(hdr(msg, 'To'))[1];
      return to.startsWith('sip:nobody@') ? reply(ws, msg, 404, 'Not Found') : reply(ws, msg, 200, 'OK');
    }
    if (method === 'INVITE' || method === 'ACK' || method === 'BYE' || method === 'CANCEL' || method === 'INFO' || method === 'UPDATE') {
      return relay(ws, msg, method);
    }
    reply(ws, msg, 200, 'OK');
  }

  /** Calls between pages: requests by R-URI user (AOR or Contact), responses by Via branch. */
  function relay(ws, msg, method) {
    const user = (/^\S+ sips?:([^@;> ]+)@/.exec(msg) || [])[1];
    const isInitial = method === 'INVITE' && !/;tag=/.test(hdr(msg, 'To') || '');
    if (isInitial && user === 'busy') return reply(ws, msg, 486, 'Busy Here');
    if (isInitial && user === 'nocodec') return reply(ws, msg, 488, 'Not Acceptable Here', ['Warning: 399 imsgw "no common codec"']);
    const b = st.bindings.find((x) => x.ws !== ws && (x.aorUser === user || x.contactUser === user));
    if (!b) {
      if (method === 'ACK') return;
      return reply(ws, msg, method === 'INVITE' ? 404 : 481, method === 'INVITE' ? 'Not Found' : 'Call/Transaction Does Not Exist');
    }
    const branch = (/^Via:.*;branch=([^;\s]+)/mi.exec(msg) || [])[1];
    if (branch) st.branches.set(`${branch} ${method === 'CANCEL' ? 'CANCEL' : ''}`, ws);
    st.relayed.push(msg.split('\r\n')[0]);
    b.ws.send(msg);
  }
  function relayResponse(msg) {
    const branch = (/^Via:.*;branch=([^;\s]+)/mi.exec(msg) || [])[1];
    const method = (/^CSeq:\s*\d+\s+(\S+)/mi.exec(msg) || [])[1];
    const to = branch && st.branches.get(`${branch} ${method === 'CANCEL' ? 'CANCEL' : ''}`);
    if (!to) return false;
    to.send(msg);
    return true;
  }

  /** Sends a request to the registered client: returns its Call-ID etc. */
  function request(method, { from = 'sip:bob@ims.example', toUser = null, body = '', contentType = 'text/plain', callId = rnd(), branch = `z9hG4bK${rnd()}`, fromTag = rnd(), cseq = 1 } = {}) {
    const target = toUser ? st.bindings.find((b) => b.aorUser === toUser) : null;
    const contact = target ? target.contact : st.contact;
    const ruri = /<([^>]+)>/.exec(contact)[1];
    const lines = [`${method} ${ruri} SIP/2.0`, `Via: SIP/2.0/WSS fake.invalid;branch=${branch}`, 'Max-Forwards: 70',
      `From: "Bob" <${from}>;tag=${fromTag}`, `To: <${toUser ? `sip:${toUser}@ims.example` : impu}>`, `Call-ID: ${callId}`, `CSeq: ${cseq} ${method}`,
      'Contact: <sip:bob@fake.invalid;transport=ws>',
      ...(body ? [`Content-Type: ${contentType}`] : []), `Content-Length: ${Buffer.byteLength(body)}`, '', body];
    const ws = (target || st.bindings.find((b) => b.contact === st.contact) || {}).ws || [...st.sockets][0];
    ws.send(lines.join('\r\n'));
    return { callId, branch, fromTag, from };
  }
  function cancel(inv) {
    const ws = [...st.sockets][0];
    const ruri = /<([^>]+)>/.exec(st.contact)[1];
    ws.send([`CANCEL ${ruri} SIP/2.0`, `Via: SIP/2.0/WSS fake.invalid;branch=${inv.branch}`, 'Max-Forwards: 70',
      `From: "Bob" <${inv.from}>;tag=${inv.fromTag}`, `To: <${impu}>`, `Call-ID: ${inv.callId}`, 'CSeq: 1 CANCEL', 'Content-Length: 0', '', ''].join('\r\n'));
  }
  /** Drops every WebSocket and refuses new ones for `ms` (a gateway restart). */
  function restart(ms) {
    st.up = false;
    for (const ws of st.sockets) ws.terminate();
    setTimeout(() => { st.up = true; }, ms);
  }

  /** An IMS-side offer a browser cannot take: plain RTP/AVP, no ICE, no DTLS (as sipp sends). */
  const PLAIN_RTP_OFFER = ['v=0', 'o=caller 53655765 2353687637 IN IP4 127.0.0.1', 's=-', 'c=IN IP4 127.0.0.1', 't=0 0',
    'm=audio 16000 RTP/AVP 0 8 101', 'a=rtpmap:0 PCMU/8000', 'a=rtpmap:8 PCMA/8000', 'a=rtpmap:101 telephone-event/8000', 'a=sendrecv', ''].join('\r\n');
  st.plainRtpOffer = PLAIN_RTP_OFFER;

  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const port = server.address().port;
  return {
    url: `http://127.0.0.1:${port}/`, st, request, cancel, restart,
    close: () => { for (const ws of st.sockets) ws.terminate(); wss.close(); server.close(); },
  };
}
