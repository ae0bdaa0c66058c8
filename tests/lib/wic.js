'use strict';
// The browser tests (tests/browser/): the WIC (web/dist, served by imsgw's WWSF at /) in headless
// Chromium (Debian's /usr/bin/chromium driven by playwright-core), against imsgw, Kamailio and
// the real OpenID provider of lib/idp.js -- the lab of lib/signin.js with client `wic`
// redirecting to the gateway's own base URL.
//
// Chromium is started with launchServer() so that its pid is known: pid file in the run
// directory, closed in after() and, if it is still there, killed by its process group (it is
// started detached, as a group leader). Every page records its console; any console error or
// uncaught page error fails the test that checks it (W.assertClean). Screenshots go to
// tests/artifacts/<lab name>/ (gitignored), together with the console log and, at the end, the
// imsgw / IdP / Kamailio logs.
const { before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { signinLab } = require('./signin');
const { REPO, sleep } = require('./env');

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const DIST = process.env.WIC_DIST || path.join(REPO, 'web', 'dist');
const ARTIFACTS = path.join(REPO, 'tests', 'artifacts');

const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-default-apps', '--disable-extensions', '--no-default-browser-check',
  '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
];

/**
 * Chromium's arguments; o.fakeAudio: a WAV file the fake microphone plays (PEERS.md: e.g.
 * `sox -n -r 48000 -c 1 -b 16 tone.wav synth 30 sine 1000 vol 0.5`), with autoplay allowed and
 * loopback candidates in peer connections (the gateway is on 127.0.0.1).
 */
function chromiumArgs(o = {}) {
  const args = [...CHROMIUM_ARGS];
  if (o.fakeAudio) {
    assert.ok(fs.existsSync(o.fakeAudio), `fake microphone file missing: ${o.fakeAudio}`);
    args.push(`--use-file-for-fake-audio-capture=${path.resolve(o.fakeAudio)}`,
      '--autoplay-policy=no-user-gesture-required', '--allow-loopback-in-peer-connection');
  }
  return args;
}

/** The element of the WIC's contract: id or data-testid. */
const sel = (name) => `[data-testid="${name}"], #${name}`;

/**
 * signinLab() for the WIC plus Chromium. o: { name, block, waf: {...}, extraClients: [...],
 * fakeAudio: WAV for the lab's browser's fake microphone (optional), imsgw: {...} (more Imsgw
 * options, e.g. media), kamDefines: [...] (e.g. LOG_MSG), wicClient: {...} (more keys of the
 * `wic` client, e.g. code_in_register), wwsf: {...} (more [wwsf] keys, e.g. sign_in) }.
 * Adds W.newPage({ viewport, label, browser, query }), W.launch({ fakeAudio, label }) (one more
 * Chromium process, e.g. with another tone; its pages: handle.newPage(o)), W.signIn(page, user),
 * W.text(page, id), W.waitText(...), W.shot(page, step), W.assertClean(page, allow),
 * W.bindings(user), W.artifacts (dir).
 */
function wicLab(o) {
  const base = 21000 + 100 * o.block;
  const gwBase = `http://127.0.0.1:${base}`; // env.ports(): http = base
  const W = { artifacts: path.join(ARTIFACTS, o.name), pages: [], contexts: [], launched: [] };

  /** Starts a Chromium of its own (own process group, pid recorded for the after() hook). */
  const launchChromium = async (args) => {
    const { chromium } = require('playwright-core');
    const server = await chromium.launchServer({ executablePath: CHROMIUM, headless: true, args, timeout: 30000 });
    const h = { server, pid: server.process().pid };
    W.launched.push(h);
    h.browser = await chromium.connect(server.wsEndpoint(), { timeout: 30000 });
    return h;
  };

  // Chromium's hooks are registered before the lab's: it starts first and is closed first
  before(async () => {
    assert.ok(fs.existsSync(path.join(DIST, 'index.html')),
      `the WIC is not built: ${DIST}/index.html missing (cd web && npm ci && npm run build)`);
    assert.ok(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM} (Debian package chromium, deploy/lab/install-deps.sh)`);
    fs.rmSync(W.artifacts, { recursive: true, force: true });
    fs.mkdirSync(W.artifacts, { recursive: true });
    const h = await launchChromium(chromiumArgs({ fakeAudio: o.fakeAudio }));
    W.server = h.server;
    W.pid = h.pid;
    W.browser = h.browser;
  });

  after(async () => {
    for (const p of W.pages) writeConsole(W, p);
    for (const h of W.launched) {
      try { await h.browser.close(); } catch { /* gone */ }
      try { await h.server.close(); } catch { /* gone */ }
      try { process.kill(-h.pid, 'SIGKILL'); } catch { /* already gone: the normal case */ }
      try { process.kill(h.pid, 'SIGKILL'); } catch { /* already gone */ }
    }
    if (L && L.dir) {
      for (const f of fs.readdirSync(L.dir)) {
        if (/\.(log|msg|err|out)$/.test(f)) fs.copyFileSync(path.join(L.dir, f), path.join(W.artifacts, f));
      }
      if (L.gw) fs.copyFileSync(L.gw.configFile, path.join(W.artifacts, 'imsgw.toml'));
    }
  });

  const L = signinLab({
    name: o.name,
    block: o.block,
    waf: o.waf,
    clients: [{ id: 'wic', first_party: true, redirect_uris: [`${gwBase}/`], grants: ['authorization_code', 'refresh_token'], ...(o.wicClient || {}) }, ...(o.extraClients || [])],
    imsgw: { wwsf: { assets_dir: DIST, client_id: 'wic', ...(o.wwsf || {}) }, ...(o.imsgw || {}) },
    kamDefines: o.kamDefines,
  });
  W.L = L;
  W.gwBase = gwBase;

  before(async () => {
    if (W.server) fs.writeFileSync(path.join(L.dir, 'chromium.pid'), `${W.pid}\n`);
  });

  /**
   * One more Chromium process (call it inside a test or a before hook), e.g. a second person
   * whose fake microphone plays another tone: o { fakeAudio, label }. Returns { browser, pid,
   * newPage(opts) }; closed and killed with the lab.
   */
  W.launch = async ({ fakeAudio, label = `chromium-${W.launched.length + 1}` } = {}) => {
    const h = await launchChromium(chromiumArgs({ fakeAudio }));
    if (L.dir) fs.writeFileSync(path.join(L.dir, `${label}.pid`), `${h.pid}\n`);
    h.newPage = (opts = {}) => W.newPage({ ...opts, browser: h.browser });
    return h;
  };

  /**
   * A fresh browser context (own cookies and storage) and page, console recorded. browser: one
   * from W.launch() (default: the lab's); query: appended to the WIC's URL, e.g.
   * '?audio_processing=off'.
   */
  W.newPage = async ({ viewport = { width: 1280, height: 800 }, label = 'page', open = true, browser = W.browser, query = '' } = {}) => {
    const ctx = await browser.newContext({ viewport, isMobile: viewport.width < 500, hasTouch: viewport.width < 500 });
    W.contexts.push(ctx);
    const page = await ctx.newPage();
    page.label = label;
    page.t0 = Date.now();
    page.consoleLog = [];
    page.problems = []; // console errors and page errors
    const stamp = () => `${((Date.now() - page.t0) / 1000).toFixed(3)}s`;
    page.on('console', (m) => {
      const loc = m.location();
      const line = `${stamp()} [${m.type()}] ${m.text()}${loc && loc.url ? ` (${loc.url}:${loc.lineNumber})` : ''}`;
      page.consoleLog.push(line);
      if (m.type() === 'error') page.problems.push({ at: Date.now(), kind: 'console.error', text: m.text(), line });
    });
    page.on('pageerror', (e) => {
      const line = `${stamp()} [pageerror] ${e.stack || e.message}`;
      page.consoleLog.push(line);
      page.problems.push({ at: Date.now(), kind: 'pageerror', text: e.message, line });
    });
    page.on('requestfailed', (r) => page.consoleLog.push(`${stamp()} [requestfailed] ${r.method()} ${r.url()} ${r.failure() && r.failure().errorText}`));
    // SIP over the WebSocket, both ways (artifacts/<lab>/ws-<page>.log)
    page.wsFrames = [];
    page.on('websocket', (ws) => {
      page.consoleLog.push(`${stamp()} [websocket] open ${ws.url()}`);
      const rec = (dir) => (f) => { page.wsFrames.push({ at: Date.now(), dir, text: typeof f.payload === 'string' ? f.payload : f.payload.toString('utf8') }); };
      ws.on('framesent', rec('>'));
      ws.on('framereceived', rec('<'));
      ws.on('close', () => page.consoleLog.push(`${stamp()} [websocket] closed ${ws.url()}`));
    });
    page.on('framenavigated', (f) => { if (f === page.mainFrame()) page.consoleLog.push(`${stamp()} [navigated] ${f.url()}`); });
    W.pages.push(page);
    if (open) await page.goto(`${gwBase}/${query}`, { waitUntil: 'load' });
    return page;
  };

  W.el = (page, name) => page.locator(sel(name)).first();

  /** Trimmed text of a contract element ('' when it is not in the page). */
  W.text = async (page, name) => {
    const l = W.el(page, name);
    if (await l.count() === 0) return '';
    return ((await l.textContent({ timeout: 2000 })) || '').trim();
  };

  W.visible = async (page, name) => {
    const l = W.el(page, name);
    return (await l.count()) > 0 && l.isVisible();
  };

  /** Polls the text of `name` until pred(text) (string: equality); returns the text. */
  W.waitText = async (page, name, pred, ms, what) => {
    const ok = typeof pred === 'function' ? pred : (t) => t === pred;
    const end = Date.now() + ms;
    let t = '';
    for (;;) {
      try { t = await W.text(page, name); } catch { t = '(unreadable)'; }
      if (ok(t)) return t;
      if (Date.now() > end) {
        const shot = await W.shot(page, `timeout-${name}`);
        throw new Error(`timed out after ${ms} ms waiting for ${what || `#${name}`}: #${name} is ${JSON.stringify(t)}; ` +
          `#error is ${JSON.stringify(await W.text(page, 'error').catch(() => '?'))}; url ${page.url()}\n` +
          `screenshot: ${shot}\n${W.describe(page)}`);
      }
      await sleep(100);
    }
  };

  W.waitRegistered = (page, ms = 20000, what = 'reg-state Registered') => W.waitText(page, 'reg-state', 'Registered', ms, what);

  let shots = 0;
  /** Screenshot to tests/artifacts/<name>/NN-<page>-<step>.png; returns its path. */
  W.shot = async (page, step) => {
    shots += 1;
    const f = path.join(W.artifacts, `${String(shots).padStart(2, '0')}-${page.label}-${step.replace(/[^a-z0-9_-]+/gi, '-')}.png`);
    try { await page.screenshot({ path: f, fullPage: true, timeout: 5000 }); } catch (e) { return `(no screenshot: ${e.message})`; }
    return f;
  };

  /** The end of the console log and of imsgw's log, for failure messages. */
  W.describe = (page, n = 25) => `--- console of ${page.label} (last ${n}) ---\n${page.consoleLog.slice(-n).join('\n')}\n` +
    `--- imsgw log (tail) ---\n${L.gw ? L.gw.log().slice(-2500) : ''}`;

  /**
   * No console error and no page error since `since` (ms timestamp; default: the page's start),
   * except entries matching one of `allow` (regexps) inside [allowFrom, allowTo].
   */
  W.assertClean = (page, { since = 0, allow = [], allowFrom = 0, allowTo = Infinity } = {}) => {
    writeConsole(W, page);
    const bad = page.problems.filter((p) => p.at >= since
      && !(p.at >= allowFrom && p.at <= allowTo && allow.some((re) => re.test(p.text))));
    assert.deepEqual(bad.map((p) => p.line), [], `console errors / page errors on ${page.label} ` +
      `(full log: ${path.join(W.artifacts, `console-${page.label}.log`)})`);
  };

  /**
   * Signs in through the real pages: signin-button -> imsgw's sign-in page ("Continue with
   * Demo IdP") -> the provider's login form (user name + password) -> consent (Allow) -> back at
   * the WIC. o.started: the caller already activated the sign-in button (e.g. by keyboard).
   */
  W.signIn = async (page, user = 'alice', o = {}) => {
    const pw = o.password || L.idp.users[user].password;
    if (!o.started) {
      await W.el(page, 'signin-button').click({ timeout: 10000 });
    }
    const steps = [];
    const end = Date.now() + 20000;
    while (Date.now() < end) {
      await page.waitForLoadState('load').catch(() => {});
      const url = page.url();
      if (url.startsWith(`${gwBase}/`) && !/^\/(auth|oauth)\//.test(new URL(url).pathname)) {
        if (steps.length) break; // back at the WIC
      } else if (url.startsWith(L.idp.issuer)) {
        if (await page.locator('input[type=password]').count()) {
          if (steps.includes('idp-login')) throw new Error(`the provider showed its login form again (password refused?)\n${W.describe(page)}`);
          steps.push('idp-login');
          await W.shot(page, `idp-login-${user}`);
          await page.fill('input[name=login]', user);
          await page.fill('input[name=password]', pw);
          await page.locator('button[value=login]').click();
          await sleep(200);
          continue;
        }
        if (await page.locator('button[value=allow]').count()) {
          steps.push('idp-consent');
          await W.shot(page, `idp-consent-${user}`);
          await page.locator('button[value=allow]').click();
          await sleep(200);
          continue;
        }
      } else if (url.startsWith(gwBase)) {
        const link = page.getByText('Continue with Demo IdP');
        if (await link.count()) {
          steps.push('imsgw-signin-page');
          await W.shot(page, 'imsgw-signin-page');
          await link.first().click();
          await sleep(200);
          continue;
        }
      }
      await sleep(100);
    }
    assert.deepEqual(steps, ['imsgw-signin-page', 'idp-login', 'idp-consent'],
      `sign-in of ${user} did not go through the sign-in page, login and consent (at ${page.url()})\n${W.describe(page)}`);
    return steps;
  };

  /** Kamailio's bindings of user (AOR user@ims.example; ul.dump names it by the user part). */
  W.bindings = (user) => L.kam.bindings(user);

  return W;
}

function writeConsole(W, page) {
  try {
    fs.writeFileSync(path.join(W.artifacts, `console-${page.label}.log`), `${page.consoleLog.join('\n')}\n`);
    fs.writeFileSync(path.join(W.artifacts, `ws-${page.label}.log`), page.wsFrames
      .map((f) => `----- ${((f.at - page.t0) / 1000).toFixed(3)}s ${f.dir === '>' ? 'sent' : 'received'}\n${f.text}`).join('\n'));
  } catch { /* no dir */ }
}

/** The SIP requests/responses of a page's WebSocket: [{ at, dir, start, cseq, expires, auth }]. */
function sipFrames(page) {
  return page.wsFrames.map((f) => {
    const h = (n) => { const m = new RegExp(`^${n}:\\s*(.*)$`, 'mi').exec(f.text); return m ? m[1].trim() : null; };
    const ce = /;\s*expires=(\d+)/i.exec(h('Contact') || h('m') || '');
    return { at: f.at, dir: f.dir, start: f.text.split('\r\n')[0], cseq: h('CSeq'), expires: h('Expires') || (ce && ce[1]), auth: h('Authorization') };
  });
}

module.exports = { wicLab, sel, sipFrames, chromiumArgs, CHROMIUM_ARGS, DIST };
