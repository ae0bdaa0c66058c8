'use strict';
// A raw SIP-over-WebSocket client (no JsSIP) for inputs JsSIP would never send: garbage,
// broken headers, oversize messages, upgrades without the `sip` subprotocol.
const crypto = require('node:crypto');
const WebSocket = require('ws');
const { within, DOMAIN } = require('./env');

/** Parses one SIP message (enough for assertions): start line, headers, body. */
function parseSip(text) {
  const i = text.indexOf('\r\n\r\n');
  const head = i >= 0 ? text.slice(0, i) : text;
  const body = i >= 0 ? text.slice(i + 4) : '';
  const lines = head.split('\r\n');
  const headers = [];
  for (const l of lines.slice(1)) {
    const c = l.indexOf(':');
    if (c > 0) headers.push([l.slice(0, c).trim(), l.slice(c + 1).trim()]);
  }
  const get = (n) => headers.filter(([k]) => k.toLowerCase() === n.toLowerCase()).map(([, v]) => v);
  const m = /^SIP\/2\.0 (\d{3}) ?(.*)$/.exec(lines[0]);
  return {
    start: lines[0], headers, get, body,
    status: m ? Number(m[1]) : null, reason: m ? m[2] : null,
    method: m ? null : lines[0].split(' ')[0],
  };
}

const rand = (n = 6) => crypto.randomBytes(n).toString('hex');

class RawSipClient {
  /** Opens a WebSocket (subprotocol `sip` unless protocols says otherwise). */
  static open(url, { protocols = ['sip'], timeoutMs = 5000, ...opts } = {}) {
    const c = new RawSipClient();
    c.ws = new WebSocket(url, protocols, { handshakeTimeout: timeoutMs, ...opts });
    c.host = `${rand(4)}.invalid`;
    c.tag = rand(4);
    c.received = []; // parsed messages
    c.closeInfo = null;
    c.closed = new Promise((resolve) => {
      c.ws.on('close', (code, reason) => { c.closeInfo = { code, reason: reason.toString() }; resolve(c.closeInfo); });
    });
    c.ws.on('error', (e) => { c.error = e; });
    c.ws.on('message', (data) => {
      const m = parseSip(data.toString('utf8'));
      c.received.push(m);
      for (const w of [...c.waiters]) w();
    });
    c.waiters = new Set();
    return within(new Promise((resolve, reject) => {
      c.ws.once('open', () => resolve(c));
      c.ws.once('error', reject);
    }), timeoutMs + 1000, `WebSocket open ${url}`);
  }

  send(text) { this.ws.send(text); }

  /** Next received message (after `from`) matching pred. */
  next(pred, ms, what, from = 0) {
    const find = () => this.received.slice(from).find(pred);
    const hit = find();
    if (hit) return Promise.resolve(hit);
    let check;
    return within(new Promise((resolve) => {
      check = () => { const m = find(); if (m) resolve(m); };
      this.waiters.add(check);
    }), ms, what).finally(() => this.waiters.delete(check));
  }

  /** Sends a request; resolves with its final response (matched by Via branch). */
  async request(text, ms = 5000) {
    const branch = /branch=([^;\s\r]+)/.exec(text)[1];
    const from = this.received.length;
    this.send(text);
    return this.next((m) => m.status >= 200 && m.get('Via').some((v) => v.includes(branch)), ms, `final response to ${text.split('\r\n')[0]}`, from);
  }

  /** A request in JsSIP's shape; `over` replaces or (with null) removes header lines. */
  build(method, ruri, { user = 'raw', domain = DOMAIN, cseq = `1 ${method}`, over = {}, body = '', extra = [] } = {}) {
    const h = {
      Via: `SIP/2.0/WS ${this.host};branch=z9hG4bK${rand()}`,
      'Max-Forwards': '69',
      To: `<sip:${user}@${domain}>`,
      From: `<sip:${user}@${domain}>;tag=${this.tag}`,
      'Call-ID': rand(8),
      CSeq: cseq,
      ...over,
    };
    const lines = [`${method} ${ruri} SIP/2.0`];
    for (const [k, v] of Object.entries(h)) if (v !== null) lines.push(`${k}: ${v}`);
    lines.push(...extra, `Content-Length: ${Buffer.byteLength(body)}`, '', body);
    return lines.join('\r\n');
  }

  close() {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(1000);
    return within(this.closed, 3000, 'close').catch(() => this.ws.terminate());
  }

  terminate() { try { this.ws.terminate(); } catch { /* gone */ } }
}

/**
 * Tries a WebSocket upgrade and returns what the server answered when it refused:
 * { status, headers, body } (or { upgraded: true, protocol } if it accepted). opts go to `ws`
 * (localAddress, headers).
 */
function tryUpgrade(url, protocols, ms = 5000, opts = {}) {
  return within(new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, { handshakeTimeout: ms, ...opts });
    ws.on('unexpected-response', (req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => { resolve({ status: res.statusCode, headers: res.headers, body }); req.destroy(); });
    });
    ws.on('open', () => { resolve({ upgraded: true, protocol: ws.protocol }); ws.close(); });
    ws.on('error', (e) => { if (!/Unexpected server response/.test(e.message)) reject(e); });
  }), ms + 1000, `upgrade ${url}`);
}

module.exports = { RawSipClient, parseSip, tryUpgrade };
