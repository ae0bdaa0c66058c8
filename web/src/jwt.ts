/**
 * Reads the payload of a JWT (RFC 7519) for display only. The client never trusts it: the
 * gateway verifies every token it receives. Pure.
 */
export interface AccessClaims {
  impu?: string;
  impi?: string;
  sub?: string;
  exp?: number;
  [claim: string]: unknown;
}

/** Decodes the payload (second part) of a compact JWS; throws if it is not one. */
export function decodeJwtPayload(token: string): AccessClaims {
  const parts = token.split('.');
  if (parts.length !== 3 || parts[1] === '') {
    throw new Error('the access token is not a JWT');
  }
  const json = new TextDecoder().decode(base64UrlDecode(parts[1]));
  const payload: unknown = JSON.parse(json);
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    throw new Error('the access token payload is not a JSON object');
  }
  return payload as AccessClaims;
}

export function base64UrlDecode(s: string): Uint8Array {
  const b64 = s.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (s.length % 4)) % 4);
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function base64UrlEncode(bytes: Uint8Array): string {
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
