/**
 * SIP outcomes in words a person understands. Pure.
 */

const STATUS: Record<number, string> = {
  400: 'the request was not understood',
  401: 'not authorised — sign in again',
  403: 'not allowed',
  404: 'no such person',
  405: 'not supported by the recipient',
  407: 'not authorised — sign in again',
  408: 'no answer from the network in time',
  410: 'this address no longer exists',
  413: 'the message is too long',
  415: 'the recipient cannot receive text messages',
  416: 'this kind of address is not supported',
  420: 'not supported by the recipient',
  423: 'rejected by the network',
  429: 'too many requests — wait a moment',
  430: 'the recipient’s connection was lost',
  480: 'the person is not available',
  481: 'the conversation no longer exists',
  482: 'a network loop was detected',
  483: 'too many network hops',
  484: 'the address is incomplete',
  485: 'the address is ambiguous',
  486: 'the person is busy',
  487: 'cancelled',
  488: 'not acceptable here',
  491: 'a request is already pending',
  500: 'a network server failed',
  501: 'not supported by the network',
  502: 'a network gateway failed',
  503: 'the IMS network is unreachable',
  504: 'the network did not answer in time',
  513: 'the message is too long',
  600: 'the person is busy everywhere',
  603: 'declined',
  604: 'this address does not exist anywhere',
  606: 'not acceptable',
};

/** `404` -> "no such person"; unknown codes by class. */
export function statusInWords(code: number): string {
  const w = STATUS[code];
  if (w) return w;
  if (code >= 200 && code < 300) return 'delivered';
  if (code >= 300 && code < 400) return 'the person has moved';
  if (code >= 400 && code < 500) return 'refused';
  if (code >= 500 && code < 600) return 'the network failed';
  if (code >= 600) return 'declined';
  return 'failed';
}

/** The delivery line of a sent message: "Delivered" or "Not delivered: 404 no such person". */
export function deliveryInWords(code: number | null, cause?: string): string {
  if (code !== null && code >= 200 && code < 300) return 'Delivered';
  if (code !== null) return `Not delivered: ${code} ${statusInWords(code)}`;
  return `Not delivered: ${causeInWords(cause)}`;
}

/** JsSIP causes (no SIP response at all). */
export function causeInWords(cause?: string): string {
  switch (cause) {
    case 'Request Timeout':
      return 'no answer from the network in time';
    case 'Connection Error':
      return 'the connection to the gateway was lost';
    case 'Canceled':
      return 'cancelled';
    case 'Bad Media Description':
    case 'Incompatible SDP':
      return 'the media could not be agreed';
    default:
      return cause ? cause.toLowerCase() : 'failed';
  }
}

/** "Busy Here" -> "Busy here"; an empty phrase takes the code's words. */
function phrase(code: number, reason: string): string {
  const p = reason.trim() || statusInWords(code);
  return p.charAt(0).toUpperCase() + p.slice(1).toLowerCase();
}

/** A getUserMedia error (DOMException name) in words. */
export function microphoneInWords(errorName: string): string {
  switch (errorName) {
    case 'NotAllowedError':
    case 'SecurityError':
      return 'Microphone permission was denied. Allow this site to use the microphone, then try again.';
    case 'NotFoundError':
    case 'OverconstrainedError':
      return 'No microphone was found. Connect one, then try again.';
    case 'NotSupportedError':
      return 'This browser cannot use a microphone on this page (calls need a secure https page).';
    case 'NotReadableError':
    case 'AbortError':
      return 'The microphone could not be opened (another program may be using it).';
    default:
      return 'The microphone could not be opened.';
  }
}

/**
 * Why a call failed, in words: the response's code and phrase, e.g. "Busy here (486)", with
 * the Warning text (RFC 3261 §20.43) when there is one; or the local cause.
 */
export function callFailureInWords(f: { code: number | null; reason: string; warning: string; cause: string }): string {
  if (f.cause === 'User Denied Media Access') return microphoneInWords(f.reason);
  if (f.code !== null && f.code >= 300) {
    const what = `${phrase(f.code, f.reason)} (${f.code})`;
    if (f.warning) return `The call failed: ${what}: ${f.warning}.`;
    if (f.code === 488 || f.code === 606) return `The call failed: ${what}: no common codec.`;
    return `The call failed: ${what}.`;
  }
  switch (f.cause) {
    case 'Connection Error':
      return 'Network lost: the connection to the gateway dropped and the call ended.';
    case 'Media Lost':
    case 'RTP Timeout':
      return 'Network lost: the call’s audio connection failed and the call ended.';
    case 'Request Timeout':
      return 'The call failed: no answer from the network in time.';
    case 'No Answer':
      return 'The call was not answered.';
    case 'WebRTC Error':
    case 'Bad Media Description':
    case 'Incompatible SDP':
    case 'Missing SDP':
      return 'The call could not be set up: no common codec (the offer has no media this browser can use).';
    case 'No ACK':
      return 'The call failed: the caller never confirmed the answer.';
    default:
      return `The call failed: ${f.cause ? f.cause.toLowerCase() : 'unknown error'}.`;
  }
}

/** mm:ss */
function duration(secs: number): string {
  return `${String(Math.floor(secs / 60)).padStart(2, '0')}:${String(secs % 60).padStart(2, '0')}`;
}

/** How a call ended: an error for a failure, otherwise a notice. */
export function callEndInWords(e: {
  peer: string;
  outcome: 'completed' | 'declined' | 'missed' | 'cancelled' | 'failed';
  secs: number;
  failure: { code: number | null; reason: string; warning: string; cause: string } | null;
}): { error: string; notice: string } {
  switch (e.outcome) {
    case 'completed':
      return { error: '', notice: `The call with ${e.peer} ended (${duration(e.secs)}).` };
    case 'declined':
      return { error: '', notice: `You rejected the call from ${e.peer}.` };
    case 'missed':
      return { error: '', notice: `Missed call from ${e.peer}` };
    case 'cancelled':
      return { error: '', notice: `The call to ${e.peer} was cancelled.` };
    case 'failed':
      return {
        error: e.failure ? callFailureInWords(e.failure) : 'The call failed.',
        notice: `The call with ${e.peer} ended.`,
      };
  }
}

/** RFC 3261 §20.43: `399 gw.example "no common codec"` -> `no common codec`. */
export function warningText(header: string): string {
  const m = /^\s*\d{3}\s+\S+\s+"((?:[^"\\]|\\.)*)"/.exec(header);
  if (m) return m[1].replace(/\\(.)/g, '$1');
  return header.trim();
}
