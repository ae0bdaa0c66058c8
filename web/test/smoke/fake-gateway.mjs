// A stand-in for imsgw, for the WIC's own smoke test only: serves dist/ and config.json, a
// minimal WAF (authorize with PKCE S256, token with rotation, revoke, logout) and a SIP-over-
// WebSocket registrar that checks the Bearer token. Not a model of the real gateway.
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
  };
  const mint = () => {
    const h = b64u(JSON.stringify({ alg: 'none', typ: 'JWT' }));
    const p = b64u(JSON.stringify({ impu, exp: Math.floor(Date.now() / 1000) + st.ttl, jti: rnd() }));
    const at = `${h}.${p}.x`;
    const rt = rnd();
    st.valid.add(at);
    st.refresh.add(rt);
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
      res.writeHead(302, { location: `${q.get('redirect_uri')}?code=${code}&state=${encodeURIComponent(q.get('state'))}&iss=${encodeURIComponent(base)}` });
      return res.end();
    }
    if (url.pathname === '/oauth/token' && req.method === 'POST') {
      if (form.get('grant_type') === 'authorization_code') {
        const ch = st.codes.get(form.get('code'));
        st.codes.delete(form.get('code'));
        const ok = ch && b64u(createHash('sha256').update(form.get('code_verifier') || '').digest()) === ch;
        return ok ? json(200, mint()) : json(400, { error: 'invalid_grant' });
      }
      if (form.get('grant_type') === 'refresh_token') {
        const rt = form.get('refresh_token');
        if (!st.refresh.has(rt)) return json(400, { error: 'invalid_grant' });
        st.refresh.delete(rt);
        return json(200, mint());
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
    ws.on('close', () => st.sockets.delete(ws));
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
    if (msg.startsWith('SIP/2.0')) { st.responses.push(msg); return; }
    const method = msg.split(' ')[0];
    const auth = hdr(msg, 'Authorization') || '';
    const token = auth.startsWith('Bearer ') ? auth.slice(7) : null;
    if (method === 'REGISTER') {
      const contact = hdr(msg, 'Contact');
      const expires = Number(hdr(msg, 'Expires'));
      st.registers.push({ token, expires, contact });
      if (st.refuseAll || !token || !st.valid.has(token)) return reply(ws, msg, 401, 'Unauthorized', ['WWW-Authenticate: Bearer realm="ims.example", error="invalid_token"']);
      st.contact = contact.replace(/;expires=\d+/, '');
      return reply(ws, msg, 200, 'OK', [`Contact: ${contact.replace(/;expires=\d+/, '')};expires=${expires}`]);
    }
    if (method === 'MESSAGE') {
      st.messages.push(msg);
      const to = /<?(sip:[^>;]+)/.exec(hdr(msg, 'To'))[1];
      return to.startsWith('sip:nobody@') ? reply(ws, msg, 404, 'Not Found') : reply(ws, msg, 200, 'OK');
    }
    if (method === 'ACK') return;
    reply(ws, msg, 200, 'OK');
  }

  /** Sends a request to the registered client: returns its Call-ID etc. */
  function request(method, { from = 'sip:bob@ims.example', body = '', callId = rnd(), branch = `z9hG4bK${rnd()}`, fromTag = rnd(), cseq = 1 } = {}) {
    const ws = [...st.sockets][0];
    const ruri = /<([^>]+)>/.exec(st.contact)[1];
    const lines = [`${method} ${ruri} SIP/2.0`, `Via: SIP/2.0/WSS fake.invalid;branch=${branch}`, 'Max-Forwards: 70',
      `From: "Bob" <${from}>;tag=${fromTag}`, `To: <${impu}>`, `Call-ID: ${callId}`, `CSeq: ${cseq} ${method}`,
      'Contact: <sip:bob@fake.invalid;transport=ws>',
      ...(body ? ['Content-Type: text/plain'] : []), `Content-Length: ${Buffer.byteLength(body)}`, '', body];
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

  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const port = server.address().port;
  return {
    url: `http://127.0.0.1:${port}/`, st, request, cancel, restart,
    close: () => { for (const ws of st.sockets) ws.terminate(); wss.close(); server.close(); },
  };
}
