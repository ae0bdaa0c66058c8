'use strict';
// The sign-in flows (files 20-23): a lab with a real OpenID provider (lib/idp.js) in front of
// imsgw's WAF, the clients of the spec (wic: public + PKCE; phone: device grant; svc:
// confidential), and helpers that drive the headless user agent (lib/browserless.js) through
// imsgw's sign-in page, the provider's login and consent forms and back.
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { useLab, sleep } = require('./lab');
const { Idp } = require('./idp');
const { Browser, pkce, forms, links, stripTags } = require('./browserless');
const { httpGet, httpPostForm, jwtClaims } = require('./imsgw');

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

/**
 * useLab() plus the IdP (port base+5) and the [oidc]/[identity]/[waf.clients] config.
 * o: { name, block, waf: {...}, identity: {...} (merged), idpUsers, clients (replace the default
 *      [[waf.clients]]), extraClients (added to the default ones), imsgw: {...} (more Imsgw
 *      options, e.g. wwsf), kamailio: { defines } }
 * Adds L.idp, L.cb (wic's redirect_uri), L.svcCb, L.browser(name), L.signIn(...), ...
 */
function signinLab(o) {
  let L;
  const base = 21000 + 100 * o.block;
  const cb = `http://127.0.0.1:${base + 6}/cb`;
  const svcCb = `http://127.0.0.1:${base + 6}/svc-cb`;
  const idpPort = base + 5;
  const idpSecret = `idp-secret-${crypto.randomBytes(8).toString('hex')}`;
  const gwHttp = base; // env.ports(): http = base
  L = useLab({
    name: o.name,
    block: o.block,
    transport: 'udp',
    kamailio: o.kamailio || { defines: ['FR_TIMER=3000', 'LOG_AUTH'] },
    beforeStart: async (lab) => {
      lab.idp = new Idp(lab.dir, { port: idpPort, clientSecret: idpSecret, redirectUris: [`http://127.0.0.1:${gwHttp}/auth/callback`], users: o.idpUsers });
      await lab.idp.start();
      lab.onStop(() => lab.idp.stop());
    },
    imsgw: {
      logFilter: 'imsgw=debug,info',
      waf: { device_poll_secs: 1, ...(o.waf || {}) },
      clients: o.clients || [
        { id: 'wic', first_party: true, redirect_uris: [cb], grants: ['authorization_code', 'refresh_token', DEVICE_GRANT] },
        { id: 'phone', grants: [DEVICE_GRANT, 'refresh_token'] },
        { id: 'svc', secret: 'svc-secret', first_party: true, redirect_uris: [svcCb], grants: ['authorization_code', 'refresh_token'] },
        { id: 'rs', secret: 'rs-secret', introspect: true },
        ...(o.extraClients || []),
      ],
      oidcProviders: [{
        name: 'demo',
        display_name: 'Demo IdP',
        issuer: `http://127.0.0.1:${idpPort}`,
        client_id: 'imsgw',
        client_secret: idpSecret,
        scopes: ['openid', 'profile', 'email'],
      }],
      identity: {
        impu: 'sip:{preferred_username}@{sip.domain}',
        impi: '{preferred_username}@{sip.domain}',
        required_claims: { email_verified: true },
        ...(o.identity || {}),
      },
      ...(o.imsgw || {}),
    },
  });
  L.cb = cb;
  L.svcCb = svcCb;
  L.browsers = [];
  L.browser = (name) => { const b = new Browser({ name }); L.browsers.push(b); return b; };

  /** The /oauth/authorize URL; o: client_id, redirect_uri, state, code_challenge, method, scope (undefined keys left out). */
  L.authorizeUrl = (q = {}) => {
    const p = pkce();
    const params = {
      response_type: 'code', client_id: 'wic', redirect_uri: cb, state: crypto.randomBytes(12).toString('base64url'),
      code_challenge: p.challenge, code_challenge_method: 'S256', scope: 'sip', ...q,
    };
    const u = new URL(`${L.gw.httpUrl}/oauth/authorize`);
    for (const [k, v] of Object.entries(params)) if (v !== undefined) u.searchParams.set(k, v);
    return { url: u.toString(), state: params.state, verifier: p.verifier, params };
  };

  /**
   * Drives a browser from a page through imsgw's sign-in page (provider link), the IdP's login
   * form (user/password) and consent form, until a redirect to a URL for which stopAt() is true
   * or a page that is none of those. Returns the last response (with .steps: what was done).
   */
  L.drive = async (browser, page, { user = 'alice', password, stopAt = (u) => u.startsWith(cb) || u.startsWith(svcCb), onCallback } = {}) => {
    const steps = [];
    const pw = password || (L.idp.users[user] && L.idp.users[user].password);
    for (let i = 0; i < 8; i += 1) {
      if (page.stoppedAt) {
        if (onCallback && page.stoppedAt.startsWith(`${L.gw.httpUrl}/auth/callback`)) {
          steps.push('callback');
          const next = await onCallback(page.stoppedAt);
          page = await browser.get(next, { stopAt });
          continue;
        }
        break;
      }
      const onIdp = page.url.startsWith(L.idp.issuer);
      const fs = forms(page.body);
      if (onIdp && fs.some((f) => f.inputs.some((x) => x.type === 'password'))) {
        if (steps.includes('idp-login')) break; // the form again: the password was refused
        steps.push('idp-login');
        page = await browser.submit(page, { form: (f) => f.inputs.some((x) => x.type === 'password'), fields: { login: user, password: pw }, stopAt: wrapStop(stopAt, onCallback, L) });
        continue;
      }
      if (onIdp && fs.some((f) => /\/confirm$/.test(f.action))) {
        steps.push('idp-consent');
        page = await browser.submit(page, { form: /\/confirm$/, button: /allow/i, stopAt: wrapStop(stopAt, onCallback, L) });
        continue;
      }
      if (!onIdp && page.status === 200) {
        const link = providerLink(page);
        if (link) {
          steps.push('imsgw-signin-page');
          page = await browser.get(new URL(link, page.url).toString(), { stopAt: wrapStop(stopAt, onCallback, L) });
          continue;
        }
      }
      break;
    }
    page.steps = steps;
    return page;
  };

  /** GET /oauth/authorize with `q` and drive it to the client; returns { page, code, state, sent, location }. */
  L.signIn = async (browser, q = {}, d = {}) => {
    const a = L.authorizeUrl(q);
    const first = await browser.get(a.url, { stopAt: wrapStop(d.stopAt || ((u) => u.startsWith(cb) || u.startsWith(svcCb)), d.onCallback, L) });
    const page = await L.drive(browser, first, d);
    const loc = page.stoppedAt ? new URL(page.stoppedAt) : null;
    return {
      page, first, sent: a, location: page.stoppedAt,
      code: loc && loc.searchParams.get('code'), state: loc && loc.searchParams.get('state'), error: loc && loc.searchParams.get('error'),
    };
  };

  /** POST /oauth/token (form; o.basic: [id, secret] for HTTP Basic). */
  L.token = (form, o = {}) => {
    const headers = o.basic ? { authorization: `Basic ${Buffer.from(`${o.basic[0]}:${o.basic[1]}`).toString('base64')}` } : {};
    return httpPostForm(`${L.gw.httpUrl}/oauth/token`, form, headers);
  };

  /** Sign in (wic) and exchange the code: { tokens (json), claims, res, signin }. */
  L.tokensFor = async (user, o = {}) => {
    const b = o.browser || L.browser(user);
    const clientId = o.client_id || 'wic';
    const redirect = o.redirect_uri || (clientId === 'svc' ? svcCb : cb);
    const s = await L.signIn(b, { client_id: clientId, redirect_uri: redirect }, { user });
    assert.ok(s.code, `sign-in of ${user} gave no code: ${describe(s.page)}`);
    const form = { grant_type: 'authorization_code', code: s.code, redirect_uri: redirect, code_verifier: s.sent.verifier };
    if (!o.basic) form.client_id = clientId;
    const res = await L.token(form, { basic: o.basic });
    assert.equal(res.status, 200, `token exchange for ${user}: ${res.status} ${res.body}\n${L.gwLogTail()}`);
    return { tokens: res.json, claims: jwtClaims(res.json.access_token), res, signin: s, browser: b };
  };

  /**
   * The person's side of RFC 8628 §3.3: opens d.verification_uri_complete, signs in as `user` if
   * asked, and presses approve or deny ('approve' | 'deny') on imsgw's /device page; returns
   * the response to that press.
   */
  L.decideDevice = async (browser, d, user, decision) => {
    let p = await browser.get(d.verification_uri_complete);
    p = await L.drive(browser, p, { user, stopAt: () => false });
    const want = decision === 'approve' ? /approve|allow|confirm|authori[sz]e|yes/i : /deny|reject|cancel|no\b/i;
    for (let i = 0; i < 3; i += 1) {
      assert.equal(p.status, 200, `/device page for ${user}${describe(p)}\n${L.gwLogTail()}`);
      assert.ok(p.url.startsWith(L.gw.httpUrl), `at imsgw${describe(p)}`);
      const fs = forms(p.body);
      const f = fs.find((x) => x.buttons.some((b) => want.test(b.text) || want.test(b.value || '')));
      if (f) {
        const userCodeInput = f.inputs.find((x) => x.name === 'user_code');
        const fields = userCodeInput && !userCodeInput.value ? { user_code: d.user_code } : {};
        return browser.submit(p, { form: (x) => x === f || x.html === f.html, button: want, fields });
      }
      // a form that only asks for the code first
      const enter = fs.find((x) => x.inputs.some((y) => y.name === 'user_code'));
      assert.ok(enter, `no approve/deny or user_code form on /device${describe(p)}`);
      p = await browser.submit(p, { form: (x) => x.html === enter.html, fields: { user_code: d.user_code } });
    }
    throw new Error(`no ${decision} button on /device${describe(p)}`);
  };

  L.introspect = (token) => httpPostForm(`${L.gw.httpUrl}/oauth/introspect`, { token }, { authorization: `Basic ${Buffer.from('rs:rs-secret').toString('base64')}` });

  /** imsgw is alive and well: /healthz 200. */
  L.healthy = async (what = '') => {
    const r = await httpGet(`${L.gw.httpUrl}/healthz`);
    assert.equal(r.status, 200, `imsgw /healthz after ${what}: ${r.status}\n${L.gwLogTail()}`);
  };

  L.gwLogTail = (n = 2500) => `imsgw log tail:\n${L.gw.log().slice(-n)}`;
  return L;
}

/** stopAt that also stops at imsgw's /auth/callback when the test wants to intercept it. */
function wrapStop(stopAt, onCallback, L) {
  if (!onCallback) return stopAt;
  return (u) => stopAt(u) || u.startsWith(`${L.gw.httpUrl}/auth/callback`);
}

/** The sign-in link (or button form) for provider `demo` on imsgw's sign-in page. */
function providerLink(page, name = 'demo') {
  const re = new RegExp(`/auth/login\\?(?:[^"']*&)?provider=${name}(?:&|$)`);
  const l = links(page.body).find((x) => re.test(x.href));
  if (l) return l.href;
  const f = forms(page.body).find((x) => /\/auth\/login/.test(x.action) && (x.fields.provider === name || x.buttons.some((b) => b.name === 'provider' && b.value === name)));
  if (f) {
    const u = new URL(f.action, page.url);
    for (const [k, v] of Object.entries(f.fields)) u.searchParams.set(k, v);
    u.searchParams.set('provider', name);
    return u.toString();
  }
  return null;
}

/** A short description of a response for assertion messages. */
function describe(r) {
  if (!r) return '(no response)';
  const hops = (r.chain || [r]).map((x) => `${x.method || 'GET'} ${x.url} -> ${x.status}${x.location ? ` Location: ${x.location}` : ''}`).join('\n  ');
  return `\n  ${hops}\n  final body: ${stripTags(r.body || '').slice(0, 400)}`;
}

/** Asserts no hop of a chain redirected to the client with a code (the provider's code to
 *  imsgw's own /auth/callback does not count). */
function assertNoCode(r, what) {
  for (const x of r.chain || [r]) {
    if (x.location && !/^http:\/\/127\.0\.0\.1:\d+\/auth\/callback\?/.test(x.location)) {
      const u = new URL(x.location);
      assert.equal(u.searchParams.get('code'), null, `${what}: a code was issued: ${describe(r)}`);
    }
  }
}

/** An error page: HTML, a 4xx/5xx status, not a redirect, text matching `re` (if given). */
function assertErrorPage(r, what, re) {
  assert.ok(r.status >= 400 && r.status < 600, `${what}: expected an error page (4xx/5xx), got ${r.status}${describe(r)}`);
  assert.equal(r.location, null, `${what}: an error page, not a redirect${describe(r)}`);
  assert.match(r.headers.get('content-type') || '', /text\/html/, `${what}: HTML page${describe(r)}`);
  const text = stripTags(r.body);
  assert.ok(text.length > 10, `${what}: the page says something${describe(r)}`);
  if (re) assert.match(text, re, `${what}: page text${describe(r)}`);
  assertNoCode(r, what);
}

/** Polls the token endpoint for a device code once. */
function pollDevice(L, deviceCode, clientId = 'phone') {
  return L.token({ grant_type: DEVICE_GRANT, device_code: deviceCode, client_id: clientId });
}

module.exports = { signinLab, providerLink, describe, assertNoCode, assertErrorPage, pollDevice, DEVICE_GRANT, sleep, stripTags };
