/**
 * The runtime configuration the WWSF serves at `/wic/config.json`: one build of the client
 * serves any deployment. Pure: parsing only, no I/O.
 */
export interface WicConfig {
  websocket_url: string;
  sip_domain: string;
  client_id: string;
  issuer: string;
  authorization_endpoint: string;
  token_endpoint: string;
  revocation_endpoint: string;
  logout_endpoint: string;
  scope: string;
  redirect_uri: string;
  /**
   * `token` (the default): the WIC exchanges its code and registers with the access token.
   * `code_in_register`: the code goes in the REGISTER and the gateway holds the tokens.
   */
  sign_in: 'token' | 'code_in_register';
  /** Where the signed-in person's IMPU is read in `code_in_register` mode. */
  me_endpoint: string;
  /** Bind tokens to a key of the page's and prove it on REGISTER (issue 13 §3). */
  proof_of_possession: boolean;
}

const KEYS: Exclude<keyof WicConfig, 'sign_in' | 'me_endpoint' | 'proof_of_possession'>[] = [
  'websocket_url',
  'sip_domain',
  'client_id',
  'issuer',
  'authorization_endpoint',
  'token_endpoint',
  'revocation_endpoint',
  'logout_endpoint',
  'scope',
  'redirect_uri',
];

/** Checks that every key is a non-empty string; throws an Error naming the bad key. */
export function parseConfig(raw: unknown): WicConfig {
  if (typeof raw !== 'object' || raw === null) {
    throw new Error('the configuration is not a JSON object');
  }
  const obj = raw as Record<string, unknown>;
  const out: Partial<WicConfig> = {};
  for (const k of KEYS) {
    const v = obj[k];
    if (typeof v !== 'string' || v.trim() === '') {
      throw new Error(`the configuration lacks "${k}"`);
    }
    (out as Record<string, string>)[k] = v;
  }
  // Optional keys: older gateways do not send them.
  out.sign_in = obj.sign_in === 'code_in_register' ? 'code_in_register' : 'token';
  out.proof_of_possession = obj.proof_of_possession === true;
  out.me_endpoint = typeof obj.me_endpoint === 'string' && obj.me_endpoint !== ''
    ? obj.me_endpoint
    : `${out.issuer}/auth/me`;
  return out as WicConfig;
}
