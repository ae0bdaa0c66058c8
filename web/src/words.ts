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
