'use strict';
// A headless user agent for the sign-in flows: node fetch with manual redirects, a cookie jar
// (RFC 6265: host-only/domain, path, Max-Age/Expires; cookies are not isolated by port, as in
// a browser -- imsgw and the IdP both live on 127.0.0.1), and HTML form/link helpers (small
// regexes, enough for the plain pages of imsgw and lib/idp-server.mjs). No JavaScript runs.
const crypto = require('node:crypto');

/** Decodes the HTML entities that appear in attribute values. */
function unescapeHtml(s) {
  return String(s)
    .replace(/&#(\d+);/g, (_, d) => String.fromCodePoint(Number(d)))
    .replace(/&#x([0-9a-f]+);/gi, (_, h) => String.fromCodePoint(parseInt(h, 16)))
    .replace(/&quot;/g, '"').replace(/&#39;|&apos;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

/** The attributes of one start tag: { name: value } (lower-case names; bare attributes -> ''). */
function attrs(tag) {
  const out = {};
  const re = /([^\s"'<>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;
  const inner = tag.replace(/^<\s*[a-z0-9]+/i, '').replace(/\/?>$/, '');
  let m;
  while ((m = re.exec(inner))) {
    const v = m[2] ?? m[3] ?? m[4];
    out[m[1].toLowerCase()] = v === undefined ? '' : unescapeHtml(v);
  }
  return out;
}

const stripTags = (s) => unescapeHtml(String(s).replace(/<(style|script)\b[^>]*>[\s\S]*?<\/\1>/gi, ' ').replace(/<[^>]*>/g, ' ')).replace(/\s+/g, ' ').trim();

/**
 * The forms of a page: [{ action, method, fields: {name: value} (hidden/text/... inputs, checked
 * boxes, first option of selects), inputs: [{name, type, value}], buttons: [{name, value, text}], html }].
 */
function forms(html) {
  const out = [];
  const re = /<form\b[^>]*>([\s\S]*?)<\/form>/gi;
  let m;
  while ((m = re.exec(html))) {
    const a = attrs(/<form\b[^>]*>/i.exec(m[0])[0]);
    const body = m[1];
    const fields = {};
    const inputs = [];
    const buttons = [];
    for (const t of body.match(/<input\b[^>]*>/gi) || []) {
      const ia = attrs(t);
      const type = (ia.type || 'text').toLowerCase();
      if (type === 'submit' || type === 'image') {
        buttons.push({ name: ia.name, value: ia.value ?? '', text: ia.value ?? '' });
        continue;
      }
      inputs.push({ name: ia.name, type, value: ia.value ?? '' });
      if (!ia.name) continue;
      if ((type === 'checkbox' || type === 'radio') && !('checked' in ia)) continue;
      fields[ia.name] = ia.value ?? (type === 'checkbox' ? 'on' : '');
    }
    for (const b of body.match(/<button\b[^>]*>[\s\S]*?<\/button>/gi) || []) {
      const ba = attrs(/<button\b[^>]*>/i.exec(b)[0]);
      if (ba.type && ba.type.toLowerCase() !== 'submit') continue;
      buttons.push({ name: ba.name, value: ba.value ?? '', text: stripTags(b) });
    }
    for (const s of body.match(/<select\b[^>]*>[\s\S]*?<\/select>/gi) || []) {
      const sa = attrs(/<select\b[^>]*>/i.exec(s)[0]);
      const opts = s.match(/<option\b[^>]*>/gi) || [];
      const sel = opts.find((o) => 'selected' in attrs(o)) || opts[0];
      if (sa.name && sel) fields[sa.name] = attrs(sel).value ?? '';
    }
    for (const t of body.match(/<textarea\b[^>]*>[\s\S]*?<\/textarea>/gi) || []) {
      const ta = attrs(/<textarea\b[^>]*>/i.exec(t)[0]);
      if (ta.name) fields[ta.name] = unescapeHtml(t.replace(/^<textarea\b[^>]*>/i, '').replace(/<\/textarea>$/i, ''));
    }
    out.push({ action: a.action ?? '', method: (a.method || 'get').toLowerCase(), fields, inputs, buttons, html: m[0] });
  }
  return out;
}

/** The links of a page: [{ href, text }]. */
function links(html) {
  const out = [];
  const re = /<a\b[^>]*>([\s\S]*?)<\/a>/gi;
  let m;
  while ((m = re.exec(html))) {
    const a = attrs(/<a\b[^>]*>/i.exec(m[0])[0]);
    if (a.href !== undefined) out.push({ href: a.href, text: stripTags(m[1]) });
  }
  return out;
}

/** PKCE (RFC 7636 §4.1, §4.2): a fresh verifier and its S256 challenge. */
function pkce() {
  const verifier = crypto.randomBytes(32).toString('base64url');
  const challenge = crypto.createHash('sha256').update(verifier).digest('base64url');
  return { verifier, challenge, method: 'S256' };
}

class CookieJar {
  constructor() { this.cookies = []; } // { name, value, domain, hostOnly, path, expires, httpOnly, sameSite, raw }

  /** Stores the Set-Cookie headers of a response to `url`. */
  store(url, setCookies) {
    const u = new URL(url);
    for (const raw of setCookies) {
      const parts = raw.split(';');
      const eq = parts[0].indexOf('=');
      if (eq < 1) continue;
      const c = { name: parts[0].slice(0, eq).trim(), value: parts[0].slice(eq + 1).trim(), domain: u.hostname, hostOnly: true, path: null, expires: null, httpOnly: false, secure: false, sameSite: null, raw };
      for (const p of parts.slice(1)) {
        const [k, ...v] = p.split('=');
        const key = k.trim().toLowerCase();
        const val = v.join('=').trim();
        if (key === 'domain' && val) { c.domain = val.replace(/^\./, '').toLowerCase(); c.hostOnly = false; }
        else if (key === 'path' && val.startsWith('/')) c.path = val;
        else if (key === 'max-age') c.expires = Date.now() + Number(val) * 1000;
        else if (key === 'expires' && c.expires === null) c.expires = Date.parse(val);
        else if (key === 'httponly') c.httpOnly = true;
        else if (key === 'secure') c.secure = true;
        else if (key === 'samesite') c.sameSite = val;
      }
      if (!c.path) {
        const dir = u.pathname.lastIndexOf('/');
        c.path = dir > 0 ? u.pathname.slice(0, dir) : '/';
      }
      this.cookies = this.cookies.filter((x) => !(x.name === c.name && x.domain === c.domain && x.path === c.path));
      if (c.expires === null || c.expires > Date.now()) this.cookies.push(c);
    }
  }

  /** The Cookie header for a request to `url` (null when none). */
  header(url) {
    const u = new URL(url);
    const now = Date.now();
    this.cookies = this.cookies.filter((c) => c.expires === null || c.expires > now);
    const host = u.hostname.toLowerCase();
    const hit = this.cookies.filter((c) => {
      const dom = c.hostOnly ? host === c.domain : host === c.domain || host.endsWith(`.${c.domain}`);
      const pth = u.pathname === c.path || u.pathname.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`) || c.path === '/';
      return dom && pth && (!c.secure || u.protocol === 'https:');
    });
    return hit.length ? hit.map((c) => `${c.name}=${c.value}`).join('; ') : null;
  }

  clear() { this.cookies = []; }
}

class Browser {
  /** @param {object} o { name (for the trace) } */
  constructor(o = {}) {
    this.name = o.name || 'browser';
    this.jar = new CookieJar();
    this.trace = []; // { method, url, status, location }
  }

  /** One request, no redirect following. Returns { status, url, headers (Headers), location, body, setCookies }. */
  async request(method, url, { form, headers = {}, timeoutMs = 5000 } = {}) {
    const h = { 'user-agent': 'imsgw-interop-browserless/1', accept: 'text/html,application/json;q=0.9,*/*;q=0.5', ...headers };
    const cookie = this.jar.header(url);
    if (cookie) h.cookie = cookie;
    let body;
    if (form) {
      body = new URLSearchParams(form).toString();
      h['content-type'] = 'application/x-www-form-urlencoded';
    }
    const res = await fetch(url, { method, headers: h, body, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    const setCookies = typeof res.headers.getSetCookie === 'function' ? res.headers.getSetCookie() : [];
    this.jar.store(url, setCookies);
    const loc = res.headers.get('location');
    const location = loc ? new URL(loc, url).toString() : null;
    const r = { status: res.status, url, headers: res.headers, location, body: text, setCookies, method };
    this.trace.push({ method, url, status: res.status, location });
    return r;
  }

  /**
   * Sends the request and follows redirects (303/302/301 -> GET, 307/308 keep the method)
   * until a non-redirect or a Location for which stopAt(url) is true (the client's
   * redirect_uri, where nothing listens). Returns the last response with `chain` (all hops)
   * and `stoppedAt` (the URL it stopped at, or null).
   */
  async go(method, url, { form, headers, stopAt = () => false, max = 20 } = {}) {
    const chain = [];
    let r = await this.request(method, url, { form, headers });
    chain.push(r);
    for (let i = 0; i < max && r.status >= 300 && r.status < 400 && r.location; i += 1) {
      if (stopAt(r.location)) return Object.assign(r, { chain, stoppedAt: r.location });
      const keep = r.status === 307 || r.status === 308;
      r = await this.request(keep ? r.method : 'GET', r.location, keep ? { form, headers } : {});
      chain.push(r);
    }
    return Object.assign(r, { chain, stoppedAt: null });
  }

  get(url, o = {}) { return this.go('GET', url, o); }

  /**
   * Submits a form of `page` (chosen by o.form: index, RegExp on the action, or predicate) with
   * o.fields merged over its fields, pressing the button whose name/value/text matches o.button
   * (RegExp) or the first one. Follows redirects like go().
   */
  async submit(page, o = {}) {
    const all = forms(page.body);
    let f;
    if (typeof o.form === 'number') f = all[o.form];
    else if (o.form instanceof RegExp) f = all.find((x) => o.form.test(x.action) || o.form.test(x.html));
    else if (typeof o.form === 'function') f = all.find(o.form);
    else f = all[0];
    if (!f) throw new Error(`no form ${o.form || ''} on ${page.url} (status ${page.status}):\n${page.body.slice(0, 1500)}`);
    const fields = { ...f.fields, ...(o.fields || {}) };
    let btn = null;
    if (o.button) {
      btn = f.buttons.find((b) => o.button.test(b.text) || o.button.test(b.value || '') || o.button.test(b.name || ''));
      if (!btn) throw new Error(`no button ${o.button} in form ${f.action} on ${page.url}: ${JSON.stringify(f.buttons)}`);
    } else {
      btn = f.buttons[0] || null;
    }
    if (btn && btn.name) fields[btn.name] = btn.value;
    const action = new URL(f.action || page.url, page.url).toString();
    if (f.method === 'post') return this.go('POST', action, { form: fields, stopAt: o.stopAt });
    const u = new URL(action);
    for (const [k, v] of Object.entries(fields)) u.searchParams.set(k, v);
    return this.go('GET', u.toString(), { stopAt: o.stopAt });
  }

  /** Follows the first link whose href or text matches `re`. */
  async click(page, re, o = {}) {
    const l = links(page.body).find((x) => re.test(x.href) || re.test(x.text));
    if (!l) throw new Error(`no link ${re} on ${page.url} (status ${page.status}):\n${page.body.slice(0, 1500)}`);
    return this.get(new URL(l.href, page.url).toString(), o);
  }
}

module.exports = { Browser, CookieJar, forms, links, attrs, pkce, stripTags, unescapeHtml };
