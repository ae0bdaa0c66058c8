// The interop tests' helpers (tests/lib, CommonJS), loaded the way the tests load them. The
// gateway binary defaults to the release build here (the tests default to the debug one):
// tests/lib/env.js reads IMSGW_BIN when it is first loaded, so it is set before that.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
process.env.IMSGW_BIN = path.resolve(process.env.IMSGW_BIN || path.join(REPO, 'target', 'release', 'imsgw'));

const require = createRequire(import.meta.url);
const lib = (name) => require(path.join(REPO, 'tests', 'lib', name));

export const env = lib('env.js');
export const { Kamailio } = lib('kamailio.js');
export const { Imsgw, httpGet, httpPostForm, jwtClaims } = lib('imsgw.js');
export const { Idp } = lib('idp.js');
export const { Browser, forms, pkce } = lib('browserless.js');
export const { TestUA } = lib('jssip.js');
export const { providerLink, describe, DEVICE_GRANT } = lib('signin.js');
