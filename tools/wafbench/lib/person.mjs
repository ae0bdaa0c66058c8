// The person who signs in while the flood runs: authorization code + PKCE through
// /oauth/authorize, imsgw's sign-in page and the OpenID provider's login and consent forms
// (as tests/lib/signin.js drives it), the token exchange, a REGISTER through the WebSocket edge
// to Kamailio with that token, then a device-grant approval (RFC 8628) and the phone's REGISTER.
// Every step is timed; the first one that fails ends the run of steps.
import crypto from 'node:crypto';
import { Browser, forms, pkce, providerLink, describe, httpPostForm, jwtClaims, TestUA, DEVICE_GRANT, env } from './testlib.mjs';

/**
 * @param {object} o { gw (Imsgw), idp (Idp), cb (wic's redirect_uri), user, provider ('demo'),
 *   client ('wic'), deviceClient ('phone'), uas (array: started UAs are pushed here for the caller to stop) }
 * @returns {Promise<{ ok, steps: [{ name, ok, ms, detail | error }] }>}
 */
export async function signInAndRegister(o) {
  const steps = [];
  const step = async (name, fn) => {
    const t0 = Date.now();
    try {
      const out = await fn(); // { detail (reported), ...what later steps need (never reported) }
      steps.push({ name, ok: true, ms: Date.now() - t0, detail: out.detail });
      return out;
    } catch (e) {
      steps.push({ name, ok: false, ms: Date.now() - t0, error: e.message });
      throw e;
    }
  };
  const browser = new Browser({ name: o.user });
  const base = o.gw.httpUrl;
  const impu = `sip:${o.user}@${env.DOMAIN}`;
  try {
    const signin = await step('sign-in', async () => {
      const p = pkce();
      const state = crypto.randomBytes(12).toString('base64url');
      const q = new URLSearchParams({
        response_type: 'code', client_id: o.client, redirect_uri: o.cb, state,
        code_challenge: p.challenge, code_challenge_method: 'S256', scope: 'sip',
      });
      const stopAt = (u) => u.startsWith(o.cb);
      const first = await browser.get(`${base}/oauth/authorize?${q}`, { stopAt });
      const page = await drive(browser, first, o, stopAt);
      if (!page.stoppedAt) throw new Error(`no redirect back to the client${describe(page)}`);
      const back = new URL(page.stoppedAt).searchParams;
      if (back.get('error')) throw new Error(`the client got error=${back.get('error')}: ${back.get('error_description')}`);
      if (back.get('state') !== state) throw new Error(`state came back as ${JSON.stringify(back.get('state'))}`);
      if (!back.get('code')) throw new Error(`no code at ${page.stoppedAt}`);
      return { code: back.get('code'), verifier: p.verifier, detail: { requests: browser.trace.length, pages: page.steps } };
    });
    const token = await step('token', async () => {
      const r = await httpPostForm(`${base}/oauth/token`, {
        grant_type: 'authorization_code', code: signin.code, redirect_uri: o.cb, code_verifier: signin.verifier, client_id: o.client,
      });
      if (r.status !== 200 || !r.json || !r.json.access_token) throw new Error(`token endpoint: ${r.status} ${r.body.slice(0, 300)}`);
      const claims = jwtClaims(r.json.access_token);
      if (claims.impu !== impu) throw new Error(`token for ${claims.impu}, expected ${impu}`);
      return { accessToken: r.json.access_token, detail: { status: r.status, impu: claims.impu } };
    });
    await step('register', () => register(o, token.accessToken));
    const dev = await step('device-authorization', async () => {
      const r = await httpPostForm(`${base}/oauth/device_authorization`, { client_id: o.deviceClient, scope: 'sip' });
      // A phone asking for a device code is anonymous: while the flood holds the device_codes
      // cap (waf.limits), a new one is refused by design. Reported, not a failure of the person.
      if ((r.status === 503 || r.status === 429) && r.json && r.json.error === 'temporarily_unavailable') {
        return { refused: true, detail: { status: r.status, refused: `${r.json.error} (the flood holds the device-code cap or this address's budget: by design, the phone steps are skipped)` } };
      }
      if (r.status !== 200 || !r.json || !r.json.device_code) throw new Error(`device_authorization: ${r.status} ${r.body.slice(0, 300)}`);
      return { json: r.json, detail: { status: r.status } };
    });
    if (dev.refused) return { ok: true, steps };
    await step('device-approve', () => approve(browser, dev.json, o));
    const phone = await step('device-token', () => pollDeviceToken(base, dev.json, o.deviceClient, impu));
    await step('device-register', () => register(o, phone.accessToken));
    return { ok: true, steps };
  } catch {
    return { ok: false, steps };
  }
}

/** REGISTER with JsSIP through the gateway's WebSocket; the 200 from Kamailio or an error. */
async function register(o, token) {
  const ua = new TestUA({ wsUrl: o.gw.wsUrl, user: o.user, token });
  o.uas.push(ua);
  const res = await ua.start(10000); // throws on registrationFailed (e.g. a 401 or a 503)
  if (res.status_code !== 200) throw new Error(`REGISTER answered ${res.status_code}`);
  return { detail: { status: res.status_code, reason: res.reason_phrase } };
}

/**
 * From a page, through imsgw's sign-in page (provider link), the provider's login form and its
 * consent form, until a redirect for which stopAt() is true or a page that is none of those
 * (the loop of lib/signin.js L.drive, without its test-only hooks).
 */
async function drive(browser, page, o, stopAt) {
  const steps = [];
  const user = o.idp.users[o.user];
  for (let i = 0; i < 8 && !page.stoppedAt; i += 1) {
    const onIdp = page.url.startsWith(o.idp.issuer);
    const fs = forms(page.body);
    const hasPassword = (f) => f.inputs.some((x) => x.type === 'password');
    if (onIdp && fs.some(hasPassword)) {
      if (steps.includes('idp-login')) break; // the form again: the password was refused
      steps.push('idp-login');
      page = await browser.submit(page, { form: hasPassword, fields: { login: o.user, password: user.password }, stopAt });
    } else if (onIdp && fs.some((f) => /\/confirm$/.test(f.action))) {
      steps.push('idp-consent');
      page = await browser.submit(page, { form: /\/confirm$/, button: /allow/i, stopAt });
    } else if (!onIdp && page.status === 200 && providerLink(page, o.provider)) {
      steps.push('imsgw-signin-page');
      page = await browser.get(new URL(providerLink(page, o.provider), page.url).toString(), { stopAt });
    } else {
      break;
    }
  }
  page.steps = steps;
  return page;
}

/** The signed-in person opens verification_uri_complete and presses "Allow" on /device. */
async function approve(browser, d, o) {
  let p = await browser.get(d.verification_uri_complete);
  p = await drive(browser, p, o, () => false); // only if the session were gone
  const f = forms(p.body).find((x) => x.buttons.some((b) => b.value === 'approve'));
  if (p.status !== 200 || !f) throw new Error(`no approve form on /device${describe(p)}`);
  const fields = f.fields.user_code ? {} : { user_code: d.user_code };
  const r = await browser.submit(p, { form: (x) => x.html === f.html, button: /approve/, fields });
  if (r.status !== 200 || !/Phone connected/.test(r.body)) throw new Error(`approval not confirmed${describe(r)}`);
  return { detail: { status: r.status } };
}

/** The phone polls /oauth/token (RFC 8628 §3.4) until it gets tokens, for at most 20 s. */
async function pollDeviceToken(base, d, clientId, impu) {
  const end = Date.now() + 20000;
  let interval = (d.interval || 1) * 1000;
  for (let polls = 1; ; polls += 1) {
    const r = await httpPostForm(`${base}/oauth/token`, { grant_type: DEVICE_GRANT, device_code: d.device_code, client_id: clientId });
    if (r.status === 200 && r.json && r.json.access_token) {
      const claims = jwtClaims(r.json.access_token);
      if (claims.impu !== impu) throw new Error(`phone token for ${claims.impu}, expected ${impu}`);
      return { accessToken: r.json.access_token, detail: { status: 200, polls } };
    }
    const err = r.json && r.json.error;
    if (err === 'slow_down') interval += 5000;
    else if (err !== 'authorization_pending') throw new Error(`device poll: ${r.status} ${r.body.slice(0, 300)}`);
    if (Date.now() + interval > end) throw new Error(`device poll: still ${err} after ${polls} polls`);
    await env.sleep(interval);
  }
}
