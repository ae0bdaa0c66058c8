/**
 * Proof of possession (issue 13 §3): a P-256 key made by Web Crypto that never leaves the page
 * (the private key is not extractable), proofs for the token endpoint (RFC 9449 DPoP, so the
 * tokens are bound to the key: `cnf.jkt`) and for REGISTER on a new connection (the gateway's
 * `Proof:` header, `sip-pop+jwt`, over the method, Request-URI, Call-ID, CSeq, a nonce the
 * gateway gave, and the token). A copied token without the key is refused.
 *
 * Owns: the key and the proofs. Must not touch: SIP, tokens' lifetimes.
 */
import { base64UrlEncode } from './jwt';
import { randomVerifier } from './pkce';

const enc = new TextEncoder();

function b64json(v: unknown): string {
  return base64UrlEncode(enc.encode(JSON.stringify(v)));
}

/** base64url(SHA-256(access token)): the `ath` claim (RFC 9449 §4.2). */
export async function accessTokenHash(token: string): Promise<string> {
  const d = await crypto.subtle.digest('SHA-256', enc.encode(token));
  return base64UrlEncode(new Uint8Array(d));
}

/** What a REGISTER proof is over. */
export interface SipProofRequest {
  method: string;
  ruri: string;
  call_id: string;
  cseq: number;
  nonce: string;
  access_token: string;
}

export class PopKey {
  private constructor(
    private readonly privateKey: CryptoKey,
    /** The public key as a JWK: only kty, crv, x, y (RFC 7638 members). */
    readonly jwk: { kty: string; crv: string; x: string; y: string },
  ) {}

  /** A new key pair; the private half cannot be read out of the page. */
  static async generate(): Promise<PopKey> {
    const kp = (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, [
      'sign',
    ])) as CryptoKeyPair;
    const pub = await crypto.subtle.exportKey('jwk', kp.publicKey);
    return new PopKey(kp.privateKey, { kty: 'EC', crv: 'P-256', x: String(pub.x), y: String(pub.y) });
  }

  /** A compact JWS (ES256; Web Crypto's ECDSA signature is already the raw r||s JWS wants). */
  async sign(typ: string, claims: Record<string, unknown>): Promise<string> {
    const input = `${b64json({ typ, alg: 'ES256', jwk: this.jwk })}.${b64json(claims)}`;
    const sig = await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, this.privateKey, enc.encode(input));
    return `${input}.${base64UrlEncode(new Uint8Array(sig))}`;
  }

  /** RFC 9449 §4.2 proof for an HTTP request. */
  dpop(htm: string, htu: string): Promise<string> {
    return this.sign('dpop+jwt', { jti: randomVerifier(), htm, htu, iat: Math.floor(Date.now() / 1000) });
  }

  /** The gateway's REGISTER proof (`Proof:` header). */
  async sip(r: SipProofRequest): Promise<string> {
    return this.sign('sip-pop+jwt', {
      jti: randomVerifier(),
      iat: Math.floor(Date.now() / 1000),
      nonce: r.nonce,
      method: r.method,
      ruri: r.ruri,
      call_id: r.call_id,
      cseq: r.cseq,
      ath: await accessTokenHash(r.access_token),
    });
  }
}
