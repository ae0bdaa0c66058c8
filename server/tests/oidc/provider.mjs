// A real OpenID provider (oidc-provider 9, in-memory adapter) for imsgw's relying-party tests
// (server/tests/oidc_rp.rs). Loopback only; test users and a test client; nothing here is a
// secret worth keeping.
//
//   node provider.mjs [--port N] [--redirect-uri URI] [--key-id KID]
//
// Prints one line `READY <issuer>` on stdout once it listens, then serves until killed.
// --port 0 (the default) takes a free port. --key-id names the signing key, so a restart with
// another id looks like a key rotation to the relying party (OIDC Core §10.1.1).
//
// Client: `imsgw-test` / secret `imsgw-test-secret`, client_secret_basic, authorization code
// only, PKCE (S256) required. Users: alice / wonderland, bob / builder.
// The login page is a plain HTML form that checks the password; consent is implied for this
// first-party client (loadExistingGrant), so the flow is: /auth -> /interaction/<uid> (form)
// -> POST /interaction/<uid>/login -> /auth/<uid> -> redirect_uri?code&state&iss.

import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const args = new Map();
for (let i = 2; i < process.argv.length; i += 2) {
  args.set(process.argv[i].replace(/^--/, ''), process.argv[i + 1]);
}
const port = Number(args.get('port') ?? 0);
const redirectUri = args.get('redirect-uri') ?? 'http://127.0.0.1:9/oidc/callback';
const keyId = args.get('key-id') ?? 'k1';

const CLIENT_ID = 'imsgw-test';
const CLIENT_SECRET = 'imsgw-test-secret';

const USERS = {
  alice: {
    password: 'wonderland',
    claims: {
      sub: 'alice-0001',
      preferred_username: 'alice',
      name: 'Alice Liddell',
      email: 'alice@example.org',
      email_verified: true,
    },
  },
  bob: {
    password: 'builder',
    claims: {
      sub: 'bob-0002',
      preferred_username: 'bob',
      name: 'Bob Builder',
      email: 'bob@example.org',
      email_verified: false,
    },
  },
};
const BY_SUB = new Map(Object.values(USERS).map((u) => [u.claims.sub, u]));

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: keyId, use: 'sig', alg: 'RS256' };

// The issuer names the port, so listen first and build the provider once the port is known.
let handler = (_req, res) => {
  res.statusCode = 503;
  res.end();
};
const server = createServer((req, res) => handler(req, res));
server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, configuration());
  provider.use(interactions(provider));
  handler = provider.callback();
  process.stdout.write(`READY ${issuer}\n`);
});

function configuration() {
  return {
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        redirect_uris: [redirectUri],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    jwks: { keys: [signingKey] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    pkce: { required: () => true },
    features: { devInteractions: { enabled: false } },
    // Profile and email claims in the ID token too, not only at UserInfo.
    conformIdTokenClaims: false,
    claims: {
      openid: ['sub'],
      profile: ['preferred_username', 'name'],
      email: ['email', 'email_verified'],
    },
    async findAccount(_ctx, sub) {
      const user = BY_SUB.get(sub);
      if (!user) return undefined;
      return { accountId: sub, claims: async () => ({ ...user.claims }) };
    },
    // First-party client: grant what it asks for without a consent page.
    async loadExistingGrant(ctx) {
      const clientId = ctx.oidc.client.clientId;
      const existing = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(clientId);
      if (existing) return ctx.oidc.provider.Grant.find(existing);
      const grant = new ctx.oidc.provider.Grant({ clientId, accountId: ctx.oidc.session.accountId });
      grant.addOIDCScope('openid profile email');
      grant.addOIDCClaims(['preferred_username', 'name', 'email', 'email_verified']);
      await grant.save();
      ctx.oidc.session.grantIdFor(clientId, grant.jti);
      return grant;
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  };
}

// Koa middleware for the login page and its form post.
function interactions(provider) {
  return async (ctx, next) => {
    const m = ctx.path.match(/^\/interaction\/([A-Za-z0-9_-]+)(\/login)?$/);
    if (!m) return next();
    ctx.set('cache-control', 'no-store');
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    if (details.prompt.name !== 'login') {
      ctx.status = 400;
      ctx.body = `unexpected prompt ${details.prompt.name}`;
      return undefined;
    }
    if (ctx.method === 'GET' && !m[2]) {
      ctx.type = 'html';
      ctx.body = loginPage(details.uid, '');
      return undefined;
    }
    if (ctx.method === 'POST' && m[2]) {
      const form = new URLSearchParams(await readBody(ctx.req));
      const user = USERS[form.get('username') ?? ''];
      if (!user || form.get('password') !== user.password) {
        ctx.status = 401;
        ctx.type = 'html';
        ctx.body = loginPage(details.uid, 'Wrong user name or password.');
        return undefined;
      }
      const returnTo = await provider.interactionResult(
        ctx.req,
        ctx.res,
        { login: { accountId: user.claims.sub } },
        { mergeWithLastSubmission: false },
      );
      ctx.status = 303;
      ctx.redirect(returnTo);
      return undefined;
    }
    ctx.status = 405;
    return undefined;
  };
}

function loginPage(uid, message) {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>Sign in</title></head><body>
<p>${message}</p>
<form method="post" action="/interaction/${uid}/login">
<input name="username" autocomplete="username"> <input name="password" type="password">
<button type="submit">Sign in</button>
</form></body></html>
`;
}

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 16384) throw new Error('form too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close();
    process.exit(0);
  });
}
