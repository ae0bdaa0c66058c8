// A real OpenID provider for the sign-in tests: oidc-provider 9 with password-checking login
// and consent pages (HTML forms), run as a child process of lib/idp.js (argv[2]: a JSON config
// file) so that a test can stop and restart it by pid.
//
// Misbehaviour for tests, switched over IPC ({ mode }):
//   'normal'        ID tokens as issued
//   'bad-signature' the ID token re-signed with a key the JWK Set does not hold (same kid)
//   'bad-nonce'     the ID token's nonce replaced, re-signed with the real key (valid signature)
// The rewrite happens in a Koa middleware around the token endpoint, after oidc-provider built
// its response, so everything else (code, PKCE, client auth) is oidc-provider's own.
import crypto from 'node:crypto';
import fs from 'node:fs';
import Provider from 'oidc-provider';

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const log = (...a) => console.log(new Date().toISOString(), ...a);

let mode = 'normal';
process.on('message', (m) => {
  if (m && m.mode) {
    mode = m.mode;
    log(`mode=${mode}`);
    process.send({ ok: true, mode });
  }
});

const users = cfg.users; // { login: { sub, password, claims: {...} } }
const bySub = new Map(Object.values(users).map((u) => [u.sub, u]));

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
const page = (title, body) => `<!doctype html><html><head><meta charset="utf-8"><title>${esc(title)}</title><link rel="icon" href="data:,"></head><body><h1>${esc(title)}</h1>${body}</body></html>`;

function loginPage(uid, clientId, error, login = '') {
  return page('Sign in to the demo IdP', `
${error ? `<p class="error" role="alert">${esc(error)}</p>` : ''}
<p>Client: ${esc(clientId)}</p>
<form method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
  <label>User name <input type="text" name="login" value="${esc(login)}"></label>
  <label>Password <input type="password" name="password"></label>
  <button type="submit" name="action" value="login">Sign in</button>
</form>`);
}

function consentPage(uid, clientId, scopes) {
  return page('Allow access', `
<p>${esc(clientId)} asks for: ${esc(scopes.join(' '))}</p>
<form method="post" action="/interaction/${esc(uid)}/confirm">
  <input type="hidden" name="uid" value="${esc(uid)}">
  <button type="submit" name="decision" value="allow">Allow</button>
</form>
<form method="post" action="/interaction/${esc(uid)}/abort">
  <button type="submit" name="decision" value="deny">Deny</button>
</form>`);
}

async function readForm(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString('utf8')));
}

const keys = JSON.parse(fs.readFileSync(cfg.keysFile, 'utf8')); // { real: jwk(private), rogue: jwk(private) }

const provider = new Provider(cfg.issuer, {
  clients: cfg.clients,
  jwks: { keys: [keys.real] },
  cookies: { keys: ['interop-cookie-key-1', 'interop-cookie-key-2'] },
  conformIdTokenClaims: false,
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name'],
    email: ['email', 'email_verified'],
  },
  scopes: ['openid', 'profile', 'email', 'offline_access'],
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, sub) {
    const u = bySub.get(sub);
    if (!u) return undefined;
    return { accountId: sub, claims: async () => ({ sub, ...u.claims }) };
  },
  renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('IdP error', `<pre>${esc(JSON.stringify(out))}</pre>`);
  },
});
provider.proxy = false;

function resign(idToken, over, key) {
  const [h, p] = idToken.split('.');
  const header = JSON.parse(Buffer.from(h, 'base64url'));
  const claims = { ...JSON.parse(Buffer.from(p, 'base64url')), ...over };
  const input = `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  const k = crypto.createPrivateKey({ key, format: 'jwk' });
  const sig = crypto.sign('sha256', Buffer.from(input), k); // RS256
  return `${input}.${sig.toString('base64url')}`;
}

// request log and the ID-token rewrite
provider.use(async (ctx, next) => {
  const line = `${ctx.method} ${ctx.path}${ctx.path.endsWith('/auth') ? `?${ctx.querystring}` : ''}`;
  await next();
  log(`${line} -> ${ctx.status}`);
  if (ctx.path === '/token' && ctx.method === 'POST' && ctx.body && ctx.body.id_token) {
    const claims = JSON.parse(Buffer.from(ctx.body.id_token.split('.')[1], 'base64url'));
    log(`id_token sub=${claims.sub} nonce=${claims.nonce} aud=${claims.aud} mode=${mode}`);
    if (mode === 'bad-signature') ctx.body = { ...ctx.body, id_token: resign(ctx.body.id_token, {}, keys.rogue) };
    if (mode === 'bad-nonce') ctx.body = { ...ctx.body, id_token: resign(ctx.body.id_token, { nonce: 'not-the-nonce-you-sent' }, keys.real) };
  }
});

// interactions: real forms
provider.use(async (ctx, next) => {
  const m = /^\/interaction\/([^/]+)(?:\/(login|confirm|abort))?$/.exec(ctx.path);
  if (!m) return next();
  const [, uid, action] = m;
  const { req, res } = ctx;
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (e) {
    ctx.status = 400;
    ctx.type = 'html';
    ctx.body = page('IdP error', `<p>${esc(e.message)}</p>`);
    return undefined;
  }
  if (details.uid !== uid) { ctx.status = 400; ctx.body = 'interaction mismatch'; return undefined; }
  const { prompt, params } = details;
  ctx.respond = true;
  if (ctx.method === 'GET' && !action) {
    ctx.type = 'html';
    if (prompt.name === 'login') ctx.body = loginPage(uid, params.client_id);
    else ctx.body = consentPage(uid, params.client_id, String(params.scope || '').split(' '));
    return undefined;
  }
  if (ctx.method !== 'POST') { ctx.status = 405; return undefined; }
  const form = await readForm(req);
  if (action === 'login') {
    const u = users[form.login];
    if (!u || !form.password || u.password !== form.password) {
      log(`login failed for ${JSON.stringify(form.login)}`);
      ctx.status = 200;
      ctx.type = 'html';
      ctx.body = loginPage(uid, params.client_id, 'Wrong user name or password.', form.login || '');
      return undefined;
    }
    log(`login ok ${form.login} sub=${u.sub}`);
    ctx.respond = false;
    await provider.interactionFinished(req, res, { login: { accountId: u.sub } }, { mergeWithLastSubmission: false });
    return undefined;
  }
  if (action === 'confirm') {
    const grant = details.grantId ? await provider.Grant.find(details.grantId) : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    const d = prompt.details || {};
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    if (d.missingResourceScopes) for (const [ind, sc] of Object.entries(d.missingResourceScopes)) grant.addResourceScope(ind, sc.join(' '));
    const grantId = await grant.save();
    ctx.respond = false;
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return undefined;
  }
  // abort: access_denied back to the client
  ctx.respond = false;
  await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'the user denied access' }, { mergeWithLastSubmission: false });
  return undefined;
});

const server = provider.listen(cfg.port, '127.0.0.1', () => {
  log(`listening ${cfg.issuer}`);
  if (process.send) process.send({ ready: true });
});
process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
