//! The browser side's call signalling, as a WebRTC client sends it over a WebSocket (RFC 7118):
//! INVITE with the SDP offer, ACK for the 2xx and BYE, built from the dialog state a 2xx creates
//! (RFC 3261 §12.1.2: remote target from Contact, route set from Record-Route reversed). No I/O.

use std::fmt::Write as _;

use crate::media::msg::{Msg, split_list, uri_of};
use crate::sip::{Bearer, Identity};

/// What every call of a run shares.
pub struct CallTemplate {
    pub domain: String,
    /// `WS` (RFC 7118 §5.2).
    pub via_transport: &'static str,
    /// User part of the callee, the IMS-side echo.
    pub callee: String,
}

impl CallTemplate {
    /// The INVITE of `id` (its registered identity; the Call-ID is `call_id`, a new one per call)
    /// carrying `sdp`. JsSIP sends its Bearer token on every request; so does this.
    pub fn invite(
        &self,
        id: &Identity,
        call_id: &str,
        branch: &str,
        sdp: &str,
        auth: Option<&Bearer>,
    ) -> String {
        let d = &self.domain;
        let mut t = String::with_capacity(1024 + sdp.len());
        // `write!` to a String cannot fail; the results are ignored on purpose.
        let _ = write!(t, "INVITE sip:{}@{d} SIP/2.0\r\n", self.callee);
        let _ = write!(
            t,
            "Via: SIP/2.0/{} {};branch={branch}\r\n",
            self.via_transport, id.via_host
        );
        t.push_str("Max-Forwards: 70\r\n");
        let _ = write!(t, "To: <sip:{}@{d}>\r\n", self.callee);
        let _ = write!(t, "From: <sip:{}@{d}>;tag={}\r\n", id.user, id.from_tag);
        let _ = write!(t, "Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\n");
        // RFC 5626 §5.4 / RFC 7118 §5.3: `ob` asks the edge to keep using this flow.
        let _ = write!(
            t,
            "Contact: <sip:{}@{};transport=ws;ob>\r\n",
            id.contact_user, id.contact_host
        );
        t.push_str("Allow: INVITE,ACK,CANCEL,BYE,UPDATE,MESSAGE,OPTIONS,REFER,INFO,NOTIFY\r\n");
        t.push_str("Supported: outbound\r\nUser-Agent: imsgw-loadgen\r\n");
        if let Some(b) = auth {
            t.push_str(b.line());
            t.push_str("\r\n");
        }
        let _ = write!(
            t,
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        t
    }
}

impl CallTemplate {
    /// RFC 3261 §17.1.1.3: the ACK for a non-2xx final response to the INVITE `call_id` sent
    /// with `branch`: same Request-URI, Via branch and From, the response's `to` (with its tag),
    /// CSeq 1 ACK.
    pub fn ack_non_2xx(&self, id: &Identity, call_id: &str, branch: &str, to: &str) -> String {
        let d = &self.domain;
        let mut t = String::with_capacity(512);
        let _ = write!(t, "ACK sip:{}@{d} SIP/2.0\r\n", self.callee);
        let _ = write!(
            t,
            "Via: SIP/2.0/{} {};branch={branch}\r\n",
            self.via_transport, id.via_host
        );
        t.push_str("Max-Forwards: 70\r\n");
        let _ = write!(t, "To: {to}\r\n");
        let _ = write!(t, "From: <sip:{}@{d}>;tag={}\r\n", id.user, id.from_tag);
        let _ = write!(
            t,
            "Call-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        );
        t
    }
}

/// A confirmed dialog, from the UAC's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    pub call_id: String,
    /// The To header of the 2xx, with the remote tag.
    pub to: String,
    /// Remote target: the 2xx's Contact URI.
    pub target: String,
    /// Route set: the 2xx's Record-Route entries, reversed (RFC 3261 §12.1.2).
    pub routes: Vec<String>,
}

/// Why a 2xx could not make a dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoDialog(pub &'static str);

impl Dialog {
    /// The dialog a 2xx to our INVITE creates.
    pub fn from_2xx(resp: &Msg<'_>) -> Result<Dialog, NoDialog> {
        let call_id = resp.get("call-id").ok_or(NoDialog("no Call-ID"))?;
        let to = resp.get("to").ok_or(NoDialog("no To"))?;
        if !crate::sip::has_tag(to) {
            return Err(NoDialog("no To tag"));
        }
        let target = resp
            .get("contact")
            .map(uri_of)
            .filter(|u| !u.is_empty())
            .ok_or(NoDialog("no Contact"))?;
        let mut routes: Vec<String> = resp
            .all("record-route")
            .flat_map(split_list)
            .map(str::to_owned)
            .collect();
        routes.reverse();
        Ok(Dialog {
            call_id: call_id.to_owned(),
            to: to.to_owned(),
            target: target.to_owned(),
            routes,
        })
    }

    /// RFC 3261 §13.2.2.4: the ACK for the 2xx, CSeq number of the INVITE, a new branch.
    pub fn ack(&self, t: &CallTemplate, id: &Identity, branch: &str) -> String {
        self.request(t, id, "ACK", 1, branch, None)
    }

    /// BYE with CSeq `cseq`.
    pub fn bye(
        &self,
        t: &CallTemplate,
        id: &Identity,
        cseq: u32,
        branch: &str,
        auth: Option<&Bearer>,
    ) -> String {
        self.request(t, id, "BYE", cseq, branch, auth)
    }

    fn request(
        &self,
        t: &CallTemplate,
        id: &Identity,
        method: &str,
        cseq: u32,
        branch: &str,
        auth: Option<&Bearer>,
    ) -> String {
        let d = &t.domain;
        let mut m = String::with_capacity(768);
        let _ = write!(m, "{method} {} SIP/2.0\r\n", self.target);
        let _ = write!(
            m,
            "Via: SIP/2.0/{} {};branch={branch}\r\n",
            t.via_transport, id.via_host
        );
        m.push_str("Max-Forwards: 70\r\n");
        for r in &self.routes {
            let _ = write!(m, "Route: {r}\r\n");
        }
        let _ = write!(m, "To: {}\r\n", self.to);
        let _ = write!(m, "From: <sip:{}@{d}>;tag={}\r\n", id.user, id.from_tag);
        let _ = write!(m, "Call-ID: {}\r\nCSeq: {cseq} {method}\r\n", self.call_id);
        if let Some(b) = auth {
            m.push_str(b.line());
            m.push_str("\r\n");
        }
        m.push_str("Content-Length: 0\r\n\r\n");
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Identity {
        Identity {
            user: "m3".into(),
            via_host: "v.invalid".into(),
            contact_user: "cu".into(),
            contact_host: "ch.invalid".into(),
            from_tag: "ft".into(),
            call_id: "reg".into(),
            instance_uuid: "00000000-0000-4000-8000-000000000001".into(),
        }
    }

    fn tpl() -> CallTemplate {
        CallTemplate {
            domain: "ims.example".into(),
            via_transport: "WS",
            callee: "echo".into(),
        }
    }

    #[test]
    fn invite_carries_sdp_with_its_length() {
        let i = tpl().invite(&id(), "c1", "z9hG4bK1", "v=0\r\n", None);
        assert!(i.starts_with("INVITE sip:echo@ims.example SIP/2.0\r\n"));
        assert!(i.contains("\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n"));
        assert!(i.contains("Contact: <sip:cu@ch.invalid;transport=ws;ob>\r\n"));
        assert!(i.ends_with("Content-Length: 5\r\n\r\nv=0\r\n"));
    }

    #[test]
    fn dialog_from_2xx_reverses_record_route_rfc3261_12_1_2() {
        let r = "SIP/2.0 200 OK\r\nRecord-Route: <sip:ims;lr>\r\nRecord-Route: <sip:edge-udp;lr>,<sip:edge-ws;transport=ws;lr>\r\nTo: <sip:echo@ims.example>;tag=et\r\ni: c1\r\nContact: <sip:echo@127.0.0.1:5999>\r\n\r\n";
        let d = Dialog::from_2xx(&Msg::parse(r).expect("parses")).expect("dialog");
        assert_eq!(
            d.routes,
            [
                "<sip:edge-ws;transport=ws;lr>",
                "<sip:edge-udp;lr>",
                "<sip:ims;lr>"
            ]
        );
        let ack = d.ack(&tpl(), &id(), "z9hG4bKa");
        assert!(
            ack.starts_with("ACK sip:echo@127.0.0.1:5999 SIP/2.0\r\n"),
            "{ack}"
        );
        assert!(ack.contains("Route: <sip:edge-ws;transport=ws;lr>\r\nRoute: <sip:edge-udp;lr>\r\nRoute: <sip:ims;lr>\r\n"));
        assert!(ack.contains("To: <sip:echo@ims.example>;tag=et\r\n"));
        assert!(ack.contains("CSeq: 1 ACK\r\n"));
        assert!(
            d.bye(&tpl(), &id(), 2, "b", None)
                .contains("CSeq: 2 BYE\r\n")
        );
    }

    #[test]
    fn non_2xx_ack_reuses_the_invite_branch_rfc3261_17_1_1_3() {
        let a = tpl().ack_non_2xx(&id(), "c1", "z9hG4bKinv", "<sip:echo@ims.example>;tag=x");
        assert!(a.starts_with(
            "ACK sip:echo@ims.example SIP/2.0\r\nVia: SIP/2.0/WS v.invalid;branch=z9hG4bKinv\r\n"
        ));
        assert!(a.contains("To: <sip:echo@ims.example>;tag=x\r\n"));
        assert!(a.contains("Call-ID: c1\r\nCSeq: 1 ACK\r\n"));
        assert!(!a.contains("Route:"));
    }

    #[test]
    fn a_2xx_without_to_tag_or_contact_makes_no_dialog() {
        let no_tag = "SIP/2.0 200 OK\r\nTo: <sip:e@x>\r\ni: c\r\nm: <sip:e@h>\r\n\r\n";
        let no_contact = "SIP/2.0 200 OK\r\nTo: <sip:e@x>;tag=1\r\ni: c\r\n\r\n";
        for r in [no_tag, no_contact] {
            assert!(Dialog::from_2xx(&Msg::parse(r).expect("parses")).is_err());
        }
    }
}
