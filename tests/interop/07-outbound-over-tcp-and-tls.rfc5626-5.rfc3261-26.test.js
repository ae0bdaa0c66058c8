'use strict';
// Items 1 and 2 with imsgw reaching Kamailio over TCP and over TLS (RFC 5626 §5, RFC 3261 §26.2):
// the Path names imsgw's TCP or TLS address with transport=tcp|tls, and Kamailio opens a
// connection back to it to deliver INVITE and MESSAGE. The TLS variant makes its own CA and
// server certificate (deploy/lab/make-tls-cert.sh); imsgw's tls_listen uses the same server cert
// and verifies Kamailio's against the CA.
const { describe, test } = require('node:test');
const { useLab } = require('../lib/lab');
const { assertRegisteredWithPath, assertIncomingCall, assertIncomingMessage } = require('../lib/checks');

for (const [transport, block] of [['tcp', 8], ['tls', 9]]) {
  describe(`upstream over ${transport}`, () => {
    const L = useLab({ name: `outbound-${transport}`, block, transport });
    let ua;

    test(`JsSIP registers through imsgw over ${transport}; ul.dump shows the Path`, L.track(async () => {
      ua = await L.ua(`${transport}reg`);
      await assertRegisteredWithPath(L, ua);
    }));

    test(`INVITE from the IMS side reaches JsSIP via the ${transport} Path; 200/ACK/BYE complete`, L.track(async () => {
      await assertIncomingCall(L, ua);
    }));

    test(`MESSAGE from the IMS side reaches JsSIP via the ${transport} Path`, L.track(async () => {
      await assertIncomingMessage(L, ua);
    }));
  });
}
