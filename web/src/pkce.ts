/**
 * PKCE (RFC 7636) with S256, and the random values of the authorization request.
 * Uses Web Crypto only (a secure context: https, or http on localhost).
 */
import { base64UrlEncode } from './jwt';

/** 32 random bytes, base64url: 43 characters, within RFC 7636 §4.1's 43..128. */
export function randomVerifier(): string {
  const bytes = new Uint8Array(32);
  crypto.getRandomValues(bytes);
  return base64UrlEncode(bytes);
}

/** RFC 7636 §4.2: BASE64URL(SHA256(ASCII(code_verifier))). */
export async function s256Challenge(verifier: string): Promise<string> {
  if (!crypto.subtle) {
    throw new Error('Sign-in needs a secure page (https).');
  }
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  return base64UrlEncode(new Uint8Array(digest));
}

/** A random UUID (RFC 9562 v4) for the RFC 5626 +sip.instance, without randomUUID (which
 * needs a secure context). */
export function randomUuid(): string {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** A random token of lowercase letters and digits, for the Contact URI. */
export function randomToken(len: number): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const b = new Uint8Array(len);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => alphabet[x % alphabet.length]).join('');
}
