/**
 * When to refresh the access token and when to retry a connection. Pure: the caller passes
 * the random source, so tests are deterministic.
 */

/**
 * Milliseconds until the token should be refreshed: at 80% of its life, and at least 5 s
 * before it expires; never sooner than 1 s (a server giving absurdly short tokens must not
 * make the client spin).
 */
export function refreshDelayMs(expiresInSec: number): number {
  const e = Number.isFinite(expiresInSec) && expiresInSec > 0 ? expiresInSec : 0;
  const s = Math.min(e * 0.8, e - 5);
  return Math.max(1000, Math.floor(s * 1000));
}

/**
 * RFC 5626 §4.5 flow recovery: W = min(max, base * 2^(failures-1)), waited as a random time
 * between 50% and 100% of W. `failures` counts from 1 (the first retry waits base/2..base).
 */
export function backoffDelayMs(
  failures: number,
  baseSec: number,
  maxSec: number,
  random: () => number = Math.random,
): number {
  const n = Math.max(1, Math.floor(failures));
  const w = Math.min(maxSec, baseSec * Math.pow(2, Math.min(n - 1, 30)));
  return Math.round(w * 1000 * (0.5 + 0.5 * random()));
}

/** Retries of a refused or unanswered REGISTER (IMS unreachable): 5 s doubling to 60 s. */
export function registerRetryDelayMs(failures: number, random: () => number = Math.random): number {
  return backoffDelayMs(failures, 5, 60, random);
}
