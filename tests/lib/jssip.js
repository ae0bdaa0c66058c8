'use strict';
// JsSIP 3 in Node: a `ws`-based socket, a UA factory with auto-answer hooks, and a stand-in
// for the browser's RTCPeerConnection.
//
// Why a stand-in RTCPeerConnection: Node has no WebRTC, and without `window.RTCPeerConnection`
// JsSIP answers every INVITE with 488 and refuses to call. These tests are about signalling
// through imsgw (Path, flow tokens, Record-Route, in-dialog routing), so JsSIP's own SIP stack
// -- transactions, dialogs, route sets, ACK, BYE -- must run unmodified. Only the media engine
// is replaced: FakeRTCPeerConnection hands JsSIP a fixed, plain-RTP SDP (no ICE, no DTLS) and
// accepts any remote SDP that starts with v=0. Nothing at the SIP level is faked, so a wrong
// Route set or a lost ACK/BYE still fails the tests. (The alternative, replying through
// JsSIP's internal `session._request.reply()`, would bypass JsSIP's dialog state machine and
// test less.)
const WebSocket = require('ws');
const { within, DOMAIN } = require('./env');

/** The SDP the stand-in media engine offers and answers with: plain RTP, audio PCMU. */
function dummySdp(type, port) {
  const id = Math.floor(Math.random() * 1e9);
  return [
    'v=0', `o=- ${id} 1 IN IP4 127.0.0.1`, `s=imsgw-interop ${type}`, 'c=IN IP4 127.0.0.1', 't=0 0',
    `m=audio ${port} RTP/AVP 0 101`, 'a=rtpmap:0 PCMU/8000', 'a=rtpmap:101 telephone-event/8000',
    'a=fmtp:101 0-15', 'a=sendrecv', '',
  ].join('\r\n');
}

let nextRtpPort = 40000;
class FakeRTCPeerConnection extends EventTarget {
  constructor(config) {
    super();
    this.config = config;
    this.signalingState = 'stable';
    this.iceGatheringState = 'complete'; // nothing to gather: JsSIP sends the SDP at once
    this.iceConnectionState = 'new';
    this.connectionState = 'new';
    this.localDescription = null;
    this.remoteDescription = null;
    this.port = (nextRtpPort += 2);
  }
  createOffer() { return Promise.resolve({ type: 'offer', sdp: dummySdp('offer', this.port) }); }
  createAnswer() {
    if (!this.remoteDescription) return Promise.reject(new Error('createAnswer without a remote offer'));
    return Promise.resolve({ type: 'answer', sdp: dummySdp('answer', this.port) });
  }
  setLocalDescription(d) {
    this.localDescription = { type: d.type, sdp: d.sdp };
    this.signalingState = d.type === 'offer' ? 'have-local-offer' : 'stable';
    return Promise.resolve();
  }
  setRemoteDescription(d) {
    if (!d || typeof d.sdp !== 'string' || !d.sdp.startsWith('v=0')) {
      return Promise.reject(new Error(`remote description is not SDP: ${JSON.stringify(d && d.sdp).slice(0, 80)}`));
    }
    this.remoteDescription = { type: d.type, sdp: d.sdp };
    this.signalingState = d.type === 'offer' ? 'have-remote-offer' : 'stable';
    return Promise.resolve();
  }
  addTrack() { return {}; }
  getSenders() { return []; }
  getReceivers() { return []; }
  getTransceivers() { return []; }
  close() { this.signalingState = 'closed'; }
}
class FakeRTCSessionDescription {
  constructor({ type, sdp }) { this.type = type; this.sdp = sdp; }
}

if (typeof globalThis.window === 'undefined') globalThis.window = globalThis;
if (!globalThis.RTCPeerConnection) {
  globalThis.RTCPeerConnection = FakeRTCPeerConnection;
  globalThis.RTCSessionDescription = FakeRTCSessionDescription;
}

const JsSIP = require('jssip');

if (process.env.JSSIP_DEBUG) JsSIP.debug.enable('JsSIP:*');
else JsSIP.debug.disable();

/**
 * JsSIP's WebSocketInterface on the `ws` package (Node 20 has no global WebSocket). Keeps a
 * log of every frame, the close code, and can be killed so that JsSIP cannot reconnect.
 */
class NodeWebSocketInterface extends JsSIP.WebSocketInterface {
  constructor(url, opts = {}) {
    super(url);
    this.opts = opts;
    this.frames = []; // { dir: 'in'|'out', t, text }
    this.closes = []; // { code, reason }
    this.dead = false;
  }

  connect() {
    if (this.dead || this.isConnected() || this.isConnecting()) return;
    if (this._ws) this.disconnect();
    const ws = new WebSocket(this._url, 'sip', { handshakeTimeout: 5000, ...this.opts });
    this._ws = ws;
    ws.binaryType = 'arraybuffer';
    ws.onopen = this._onOpen.bind(this);
    ws.onclose = (e) => {
      this.closes.push({ code: e.code, reason: e.reason });
      this._onClose(e);
    };
    ws.onmessage = (e) => {
      const text = typeof e.data === 'string' ? e.data : Buffer.from(e.data).toString('utf8');
      this.frames.push({ dir: 'in', t: Date.now(), text });
      this._onMessage(e);
    };
    ws.onerror = (e) => this._onError(e.message || e);
  }

  send(message) {
    this.frames.push({ dir: 'out', t: Date.now(), text: String(message) });
    return super.send(message);
  }

  /** Closes the WebSocket (close frame 1000) and keeps JsSIP from opening a new one. */
  kill() {
    this.dead = true;
    const ws = this._ws;
    if (!ws) return Promise.resolve();
    return new Promise((resolve) => {
      if (ws.readyState === WebSocket.CLOSED) return resolve();
      ws.once('close', () => resolve());
      ws.close(1000, 'test closes the flow');
      setTimeout(() => { ws.terminate(); resolve(); }, 2000);
    });
  }

  /** Frames as text, for failure messages and logs. */
  dump() {
    return this.frames.map((f) => `=== ${f.dir === 'in' ? '<-' : '->'} ${new Date(f.t).toISOString()}\n${f.text}`).join('\n');
  }
}

/** All values of a header in a JsSIP IncomingRequest/Response (each comma-separated entry). */
function headerValues(msg, name) {
  const out = [];
  for (const raw of msg.getHeaders(name)) {
    // split on commas outside <...> and quotes
    let depth = 0; let quote = false; let cur = '';
    for (const ch of raw) {
      if (ch === '"') quote = !quote;
      if (!quote && ch === '<') depth++;
      if (!quote && ch === '>') depth--;
      if (ch === ',' && !quote && depth === 0) { out.push(cur.trim()); cur = ''; } else cur += ch;
    }
    if (cur.trim()) out.push(cur.trim());
  }
  return out;
}

/**
 * A JsSIP UA for one user, connected to imsgw's WebSocket.
 *   const a = new TestUA({ wsUrl, user });  await a.start();  // resolves once registered
 * Incoming INVITEs are answered 200 (through JsSIP's own answer()) unless `onInvite` returns
 * 'manual'; incoming MESSAGEs get JsSIP's automatic 200. Everything received is recorded.
 */
class TestUA {
  constructor(o) {
    this.o = o;
    this.user = o.user;
    this.domain = o.domain || DOMAIN;
    this.aor = `sip:${this.user}@${this.domain}`;
    this.socket = new NodeWebSocketInterface(o.wsUrl, o.wsOptions);
    this.events = []; // [name, detail]
    this.incomingSessions = []; // { session, request, events: [], confirmed, ended }
    this.outgoingSessions = [];
    this.messages = []; // { request, body, from }
    this.waiters = new Set();
    this.ua = new JsSIP.UA({
      sockets: [this.socket],
      uri: this.aor,
      display_name: this.user,
      register: o.register !== false,
      register_expires: o.registerExpires || 600,
      session_timers: false,
      no_answer_timeout: 30,
      user_agent: 'imsgw-interop JsSIP',
      connection_recovery_min_interval: 1,
      connection_recovery_max_interval: 5,
      // RFC 8898: the access token rides on every request JsSIP sends (PEERS.md)
      ...(o.token ? { authorization_jwt: `Bearer ${o.token}` } : {}),
      ...(o.config || {}),
    });
    this.token = o.token || null;
    for (const ev of ['connected', 'disconnected', 'registered', 'unregistered', 'registrationFailed']) {
      this.ua.on(ev, (e) => { this.events.push([ev, e]); this._poke(); });
    }
    this.ua.on('newRTCSession', (e) => this._onSession(e));
    this.ua.on('newMessage', (e) => {
      if (e.originator !== 'remote') return;
      const m = { request: e.request, body: e.request.body, from: e.request.from.uri.toString(), at: Date.now() };
      this.messages.push(m);
      if (this.o.onMessage) this.o.onMessage(m, e.message);
      this._poke();
    });
  }

  _onSession(e) {
    const s = { session: e.session, request: e.request, originator: e.originator, events: [] };
    s.done = new Promise((resolve) => {
      for (const ev of ['progress', 'accepted', 'confirmed', 'ended', 'failed']) {
        e.session.on(ev, (d) => {
          s.events.push([ev, d]);
          if (ev === 'ended' || ev === 'failed') resolve([ev, d]);
          this._poke();
        });
      }
    });
    if (e.originator === 'remote') {
      this.incomingSessions.push(s);
      const mode = this.o.onInvite ? this.o.onInvite(s) : undefined;
      if (mode !== 'manual') {
        // give JsSIP a tick to send its 180 (it does so in init_incoming)
        setImmediate(() => {
          try {
            e.session.answer({ mediaConstraints: { audio: false, video: false } });
          } catch (err) {
            s.events.push(['answer-error', err]);
          }
        });
      }
    } else {
      this.outgoingSessions.push(s);
    }
    this._poke();
  }

  _poke() { for (const w of [...this.waiters]) w(); }

  /** Resolves with cond()'s truthy value once an event made it true; rejects after ms. */
  until(cond, ms, what) {
    const v = cond();
    if (v) return Promise.resolve(v);
    let check;
    const p = new Promise((resolve) => {
      check = () => { const r = cond(); if (r) resolve(r); };
      this.waiters.add(check);
    });
    return within(p, ms, `${this.user}: ${what}`).finally(() => this.waiters.delete(check));
  }

  lastEvent(names) {
    for (let i = this.events.length - 1; i >= 0; i--) if (names.includes(this.events[i][0])) return this.events[i];
    return null;
  }

  /** Starts the UA; with register (default) resolves with the 200 to REGISTER, rejects on failure. */
  async start(ms = 8000) {
    const n = this.events.length;
    this.ua.start();
    if (this.o.register === false) {
      await this.until(() => this.events.slice(n).find(([ev]) => ev === 'connected'), ms, 'connected');
      return null;
    }
    return this.waitRegistration(n, ms);
  }

  /** Replaces the Bearer token JsSIP sends from now on (RFC 8898 refresh). */
  setToken(token) {
    this.token = token;
    this.ua.set('authorization_jwt', token ? `Bearer ${token}` : null);
  }

  /** Sends a REGISTER now and waits for its outcome (200 -> response; failure -> throws). */
  register(ms = 8000) {
    const n = this.events.length;
    this.ua.register();
    return this.waitRegistration(n, ms);
  }

  async waitRegistration(fromIndex, ms) {
    const [ev, d] = await this.until(
      () => this.events.slice(fromIndex).find(([e]) => e === 'registered' || e === 'registrationFailed'), ms, 'registered');
    if (ev === 'registered') return d.response;
    const err = new Error(`${this.user}: registrationFailed: ${d.cause} ${d.response ? d.response.status_code : ''}`);
    err.cause = d.cause;
    err.response = d.response;
    throw err;
  }

  /** sendMessage; resolves with the final response ({ ok, code, response, cause }). */
  message(target, body, ms = 8000) {
    return within(new Promise((resolve) => {
      this.ua.sendMessage(target, body, {
        eventHandlers: {
          succeeded: (e) => resolve({ ok: true, code: e.response.status_code, response: e.response }),
          failed: (e) => resolve({ ok: false, code: e.response ? e.response.status_code : null, cause: e.cause, response: e.response }),
        },
      });
    }), ms, `${this.user}: MESSAGE to ${target}`);
  }

  /** Calls `target`; returns the session record (see _onSession). */
  call(target) {
    const n = this.outgoingSessions.length;
    this.ua.call(target, { mediaConstraints: { audio: false, video: false }, pcConfig: { iceServers: [] } });
    return this.outgoingSessions[n];
  }

  /** Stops the UA (un-registers when still connected) and closes its socket. */
  async stop() {
    try {
      if (this.ua.isConnected()) {
        const n = this.events.length;
        this.ua.stop();
        await this.until(() => this.events.slice(n).find(([e]) => e === 'disconnected'), 3000, 'stopped').catch(() => {});
      } else {
        this.ua.stop();
      }
    } catch { /* already stopped */ }
    await this.socket.kill();
  }
}

module.exports = { JsSIP, TestUA, NodeWebSocketInterface, FakeRTCPeerConnection, headerValues, dummySdp };
