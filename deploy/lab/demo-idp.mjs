// Writes the configuration of the lab's demo OpenID provider (tests/lib/idp-server.mjs, a real
// oidc-provider with a password-checking login form) and its signing keys, once.
//   node deploy/lab/demo-idp.mjs LAB_DIR PORT IMSGW_BASE_URL
// Prints the config file's path. Demo users: alice / alice-pw, bob / bob-pw.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const [dir, port, imsgw] = process.argv.slice(2);
if (!dir || !port || !imsgw) {
  console.error('usage: demo-idp.mjs LAB_DIR PORT IMSGW_BASE_URL');
  process.exit(2);
}
const keysFile = path.join(dir, 'demo-idp-keys.json');
if (!fs.existsSync(keysFile)) {
  const jwk = (kid) => ({
    ...crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
    kid, alg: 'RS256', use: 'sig',
  });
  fs.writeFileSync(keysFile, JSON.stringify({ real: jwk('demo-1'), rogue: jwk('demo-1') }), { mode: 0o600 });
}
const user = (login, name) => ({
  sub: `demo-${login}`,
  password: `${login}-pw`,
  claims: { preferred_username: login, name, email: `${login}@example.org`, email_verified: true },
});
const cfgFile = path.join(dir, 'demo-idp.json');
fs.writeFileSync(cfgFile, JSON.stringify({
  port: Number(port),
  issuer: `http://127.0.0.1:${port}`,
  keysFile,
  users: { alice: user('alice', 'Alice Example'), bob: user('bob', 'Bob Example') },
  clients: [{
    client_id: 'imsgw',
    client_secret: 'demo-idp-secret-for-the-lab-only',
    token_endpoint_auth_method: 'client_secret_basic',
    redirect_uris: [`${imsgw}/auth/callback`],
    grant_types: ['authorization_code'],
    response_types: ['code'],
  }],
}, null, 1));
console.log(cfgFile);
