// The anonymous flood: N requests to the WAF's endpoints that store something for a visitor who
// is not signed in (issue 9 §1), in a fixed weighted mix, each on a fresh TCP connection bound
// to one of many loopback source addresses, with a bounded number in flight. Bounded by count
// and by time; every answer is counted by endpoint and status.
import crypto from 'node:crypto';
import http from 'node:http';

/**
 * The endpoints a signed-out visitor can make the WAF store an entry with. Each builds one
 * request from the flood's context `c` and the request's index `i`.
 */
export const ENDPOINTS = {
  // GET /oauth/authorize, valid client/redirect_uri/PKCE, with a `state` of c.stateBytes:
  // stores the whole request (state included) until sign-in, plus a sign-in return entry
  'authorize-big': (c, i) => get(authorizePath(c, bigState(c, i))),
  // the same with an ordinary 16-byte state
  authorize: (c) => get(authorizePath(c, crypto.randomBytes(12).toString('base64url'))),
  // GET /auth/signed-in signed out: the sign-in page, with a return entry
  'signed-in': () => get('/auth/signed-in'),
  // GET /device?user_code=… signed out: the sign-in page, with a return entry holding the code
  'device-page': () => get(`/device?user_code=${String(crypto.randomInt(0, 1e9)).padStart(9, '0')}`),
  // GET /auth/login?provider=…: a pending login (state, nonce, PKCE verifier) and a redirect
  login: (c) => get(`/auth/login?provider=${encodeURIComponent(c.provider)}`),
  // POST /oauth/device_authorization by a public client: a device code and a user code
  'device-authorization': (c) => post('/oauth/device_authorization', `client_id=${encodeURIComponent(c.deviceClient)}&scope=sip`),
};

export const DEFAULT_MIX = 'authorize-big=10,authorize=30,signed-in=15,device-page=15,login=15,device-authorization=15';

const get = (path) => ({ method: 'GET', path, body: null });
const post = (path, body) => ({ method: 'POST', path, body });

function authorizePath(c, state) {
  const challenge = crypto.randomBytes(32).toString('base64url'); // S256 of an unknown verifier
  const q = new URLSearchParams({
    response_type: 'code', client_id: c.clientId, redirect_uri: c.redirectUri, state,
    code_challenge: challenge, code_challenge_method: 'S256', scope: 'sip',
  });
  return `/oauth/authorize?${q}`;
}

/** A distinct state of exactly c.stateBytes URL-safe characters (index first, then filler). */
function bigState(c, i) {
  const head = `${i.toString(36)}.`;
  return head + c.filler.slice(0, Math.max(0, c.stateBytes - head.length));
}

/** "name=weight,..." -> [{ name, weight }], refusing unknown endpoint names. */
export function parseMix(text) {
  const mix = [];
  for (const part of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const [name, w] = part.split('=');
    if (!ENDPOINTS[name]) throw new Error(`--mix: unknown endpoint "${name}" (known: ${Object.keys(ENDPOINTS).join(', ')})`);
    const weight = w === undefined ? 1 : Number(w);
    if (!Number.isInteger(weight) || weight < 0) throw new Error(`--mix: weight of ${name} must be a whole number >= 0`);
    if (weight > 0) mix.push({ name, weight });
  }
  if (!mix.length) throw new Error('--mix: no endpoint with a weight above 0');
  return mix;
}

/**
 * One cycle of endpoint names in which each appears `weight` times, spread out (smooth
 * weighted round robin), so any stretch of the flood has about the mix's proportions.
 */
export function schedule(mix) {
  const total = mix.reduce((s, m) => s + m.weight, 0);
  const cur = mix.map(() => 0);
  const out = [];
  for (let k = 0; k < total; k += 1) {
    let best = 0;
    for (let j = 0; j < mix.length; j += 1) {
      cur[j] += mix[j].weight;
      if (cur[j] > cur[best]) best = j;
    }
    cur[best] -= total;
    out.push(mix[best].name);
  }
  return out;
}

/**
 * The source address of request i among `count`: 127.1.x.y with y in 1..254 (Linux routes all
 * of 127.0.0.0/8 to lo). 127.0.0.1, where the person signs in from, is never used.
 */
export function sourceAddress(i, count) {
  const k = i % count;
  return `127.1.${Math.floor(k / 254)}.${(k % 254) + 1}`;
}

export class Flood {
  /**
   * @param {object} o { port, count, concurrency, maxMs, addresses, mix ([{name, weight}]),
   *   stateBytes, clientId, redirectUri, provider, deviceClient, timeoutMs }
   */
  constructor(o) {
    if (o.addresses < 1 || o.addresses > 254 * 256) throw new Error('--addresses must be 1..65024');
    this.o = o;
    this.ctx = {
      clientId: o.clientId, redirectUri: o.redirectUri, provider: o.provider, deviceClient: o.deviceClient,
      stateBytes: o.stateBytes, filler: crypto.randomBytes(Math.ceil(o.stateBytes * 0.75) + 3).toString('base64url'),
    };
    this.cycle = schedule(o.mix);
    this.sent = 0;
    this.answered = 0; // an HTTP response arrived
    this.failed = 0; // no response: connection error or timeout
    this.inFlight = 0;
    this.bytesSent = 0;
    this.byEndpoint = {}; // name -> { sent, status: { '200': n, 'error:ECONNRESET': n }, ms: [] }
    for (const { name } of o.mix) this.byEndpoint[name] = { sent: 0, status: {}, ms: [] };
    this.perSecond = []; // responses (and failures) finished in each second since the start
    this.stopReason = null;
    this.startedAt = null;
    this.endedAt = null;
  }

  /** Starts the flood; resolves when it is over (count reached, time up, or stop()). */
  run() {
    this.startedAt = Date.now();
    const timer = setTimeout(() => this.stop('max-duration'), this.o.maxMs);
    const lanes = Array.from({ length: this.o.concurrency }, () => this.lane());
    return Promise.all(lanes).then(() => {
      clearTimeout(timer);
      if (!this.stopReason) this.stopReason = 'count';
      this.endedAt = Date.now();
    });
  }

  /** Sends no new request from now on (those in flight finish or time out). */
  stop(reason) {
    if (!this.stopReason) this.stopReason = reason;
  }

  get over() { return this.stopReason !== null || this.sent >= this.o.count; }

  async lane() {
    while (!this.over) {
      const i = this.sent;
      this.sent += 1;
      await this.one(i);
    }
  }

  one(i) {
    const name = this.cycle[i % this.cycle.length];
    const ep = this.byEndpoint[name];
    const r = ENDPOINTS[name](this.ctx, i);
    ep.sent += 1;
    this.inFlight += 1;
    const t0 = process.hrtime.bigint();
    return new Promise((resolve) => {
      let finished = false;
      const finish = (status) => {
        if (finished) return;
        finished = true;
        this.inFlight -= 1;
        ep.status[status] = (ep.status[status] || 0) + 1;
        ep.ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
        const sec = Math.floor((Date.now() - this.startedAt) / 1000);
        this.perSecond[sec] = (this.perSecond[sec] || 0) + 1;
        resolve();
      };
      const headers = { 'user-agent': 'imsgw-wafbench/1', accept: 'text/html,application/json' };
      if (r.body !== null) {
        headers['content-type'] = 'application/x-www-form-urlencoded';
        headers['content-length'] = Buffer.byteLength(r.body);
      }
      // agent: false -> a fresh connection with `Connection: close`, so no idle keep-alive
      // connection (and its buffers) sits in the gateway and blurs what the store costs
      const req = http.request({
        host: '127.0.0.1', port: this.o.port, method: r.method, path: r.path, headers,
        localAddress: sourceAddress(i, this.o.addresses), agent: false, timeout: this.o.timeoutMs,
      }, (res) => {
        res.on('data', () => {});
        res.on('end', () => { this.answered += 1; finish(String(res.statusCode)); });
        res.on('error', (e) => { this.failed += 1; finish(`error:${e.code || e.message}`); });
      });
      req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'timeout' })));
      req.on('error', (e) => { this.failed += 1; finish(`error:${e.code || e.message}`); });
      this.bytesSent += r.path.length + (r.body ? r.body.length : 0);
      req.end(r.body === null ? undefined : r.body);
    });
  }

  /** Figures for the report. */
  result() {
    const end = this.endedAt || Date.now();
    const secs = (end - this.startedAt) / 1000;
    const endpoints = {};
    for (const [name, ep] of Object.entries(this.byEndpoint)) {
      endpoints[name] = { sent: ep.sent, status: sortKeys(ep.status), latencyMs: latency(ep.ms) };
    }
    const all = Object.values(this.byEndpoint).flatMap((ep) => ep.ms);
    return {
      stopReason: this.stopReason,
      sent: this.sent,
      answered: this.answered,
      failed: this.failed,
      durationS: round(secs, 3),
      requestsPerS: round(this.sent ? (this.answered + this.failed) / secs : 0, 1),
      mbSent: round(this.bytesSent / 1e6, 1),
      addresses: Math.min(this.o.addresses, this.sent),
      concurrency: this.o.concurrency,
      latencyMs: latency(all),
      endpoints,
      perSecond: Array.from(this.perSecond, (x) => x || 0),
    };
  }
}

function latency(ms) {
  if (!ms.length) return null;
  const s = Float64Array.from(ms).sort();
  const q = (p) => round(s[Math.min(s.length - 1, Math.floor(p * s.length))], 1);
  return { p50: q(0.5), p99: q(0.99), max: round(s[s.length - 1], 1) };
}

const round = (x, d) => Math.round(x * 10 ** d) / 10 ** d;
const sortKeys = (o) => Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));
