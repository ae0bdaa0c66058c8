/**
 * Completes what a person types in the "To" field into a SIP URI. Pure.
 *
 *   bob               -> sip:bob@<domain>
 *   bob@other.example -> sip:bob@other.example
 *   sip:bob@domain    -> as typed (sips: too)
 *   +1 (555) 123-4567 -> sip:+15551234567@<domain>   (visual separators removed, RFC 3966 §5.1.1)
 *   tel:+15551234567  -> sip:+15551234567@<domain>
 */

export type Completion = { ok: true; uri: string } | { ok: false; reason: string };

// RFC 3261 §25.1 `user` characters (unreserved / escaped / user-unreserved), conservatively.
const USER = /^[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+$/;
const HOST = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9\-.]*[A-Za-z0-9])?)(:[0-9]{1,5})?$/;
const PHONE = /^\+?[0-9\s().\-]+$/;

export function completeAddress(input: string, domain: string): Completion {
  let s = input.trim();
  if (s === '') {
    return { ok: false, reason: 'Enter an address: a name, a number, or sip:name@domain.' };
  }
  const lower = s.toLowerCase();
  if (lower.startsWith('tel:')) {
    s = s.slice(4);
    if (!PHONE.test(s)) {
      return { ok: false, reason: 'This telephone number is not valid.' };
    }
  }
  if (/^sips?:/i.test(s)) {
    const scheme = s.slice(0, s.indexOf(':')).toLowerCase();
    const rest = s.slice(scheme.length + 1);
    const at = rest.lastIndexOf('@');
    if (at <= 0) {
      return { ok: false, reason: 'A SIP address needs a name and a domain, like sip:bob@example.com.' };
    }
    const user = rest.slice(0, at);
    const hostAndParams = rest.slice(at + 1);
    const host = hostAndParams.split(';')[0];
    if (!USER.test(user) || !HOST.test(host)) {
      return { ok: false, reason: 'This SIP address is not valid.' };
    }
    return { ok: true, uri: `${scheme}:${rest}` };
  }
  if (PHONE.test(s) && /[0-9]/.test(s)) {
    const digits = s.replace(/[\s().\-]/g, '');
    if (!/^\+?[0-9]+$/.test(digits)) {
      return { ok: false, reason: 'This telephone number is not valid.' };
    }
    return { ok: true, uri: `sip:${digits}@${domain}` };
  }
  const at = s.lastIndexOf('@');
  const user = at >= 0 ? s.slice(0, at) : s;
  const host = at >= 0 ? s.slice(at + 1) : domain;
  if (user === '' || !USER.test(user)) {
    return { ok: false, reason: 'A name may not contain spaces or special characters.' };
  }
  if (!HOST.test(host)) {
    return { ok: false, reason: 'The domain after @ is not valid.' };
  }
  return { ok: true, uri: `sip:${user}@${host}` };
}

/** `sip:bob@example.com;transport=ws` -> `sip:bob@example.com` (for display and data-from). */
export function bareUri(uri: string): string {
  return uri.split(';')[0].split('?')[0];
}
