//! One browser's signalling: owns one WebSocket; REGISTERs, then (when the run says so) gets an
//! SDP offer from the media thread, INVITEs the echo, ACKs the 2xx and hands the answer to the
//! media thread; answers requests while the call lasts; BYEs and un-REGISTERs at the end.
//! The WebSocket bytes are here; the SIP text comes from `sip` and `dialog`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::time::{Instant, timeout, timeout_at};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::cli::SourceIps;
use crate::client;
use crate::media::dialog::{CallTemplate, Dialog};
use crate::media::msg::Msg;
use crate::media::rtc::{Command, Handle};
use crate::sip::{self, Bearer, Identity, RegisterTemplate};

/// Where the run is. Ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Register,
    Call,
    Hangup,
    Abort,
}

/// What every call task shares.
pub struct Shared {
    pub url: String,
    pub addr: SocketAddr,
    pub source_ips: Option<SourceIps>,
    pub register: RegisterTemplate,
    pub call: CallTemplate,
    pub user_prefix: String,
    pub bearers: Vec<Bearer>,
    pub request_timeout: Duration,
    pub setup_slots: Semaphore,
    pub media: Arc<Handle>,
}

/// How a SIP transaction ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Final(u16),
    Timeout,
    ConnectionLost,
    /// Could not start (connect failed, no offer, bad 2xx); the reason.
    Failed(String),
}

/// What a call task reports.
#[derive(Debug)]
pub enum CallEvent {
    Registered {
        outcome: Outcome,
    },
    /// The INVITE's final response, `after` it was sent.
    Invited {
        outcome: Outcome,
        after: Duration,
    },
    HungUp {
        outcome: Outcome,
    },
}

pub async fn run(
    shared: Arc<Shared>,
    idx: usize,
    mut phase: watch::Receiver<Phase>,
    events: mpsc::UnboundedSender<CallEvent>,
) {
    let src = shared.source_ips.as_ref().map(|ips| ips.for_client(idx));
    let ws = match timeout(
        shared.request_timeout,
        client::connect(&shared.url, shared.addr, src),
    )
    .await
    {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => return report_reg(&events, Outcome::Failed(e)),
        Err(_) => return report_reg(&events, Outcome::Failed("handshake timeout".into())),
    };
    let mut c = Caller {
        id: Identity::random(format!("{}{idx}", shared.user_prefix)),
        auth: shared.bearers.get(idx).cloned(),
        to_tag: sip::new_branch(),
        reg_cseq: 0,
        shared,
        ws,
    };
    let reg = c.register(3600).await;
    let registered = reg == Outcome::Final(200);
    report_reg(&events, reg);
    if !registered {
        return c.close().await;
    }

    if c.idle_until(&mut phase, Phase::Call).await != Some(Phase::Call) {
        return c.close().await;
    }
    let dialog = {
        let shared = c.shared.clone();
        let _slot = shared.setup_slots.acquire().await;
        c.invite(idx, &events).await
    };

    let reached = c.idle_until(&mut phase, Phase::Hangup).await;
    if reached == Some(Phase::Hangup) {
        if let Some(d) = &dialog {
            let o = c.bye(d).await;
            let _ = events.send(CallEvent::HungUp { outcome: o });
        }
        let _ = c.register(0).await;
    }
    c.close().await;
}

fn report_reg(events: &mpsc::UnboundedSender<CallEvent>, outcome: Outcome) {
    let _ = events.send(CallEvent::Registered { outcome });
}

struct Caller {
    shared: Arc<Shared>,
    id: Identity,
    auth: Option<Bearer>,
    to_tag: String,
    reg_cseq: u32,
    ws: WebSocketStream<TcpStream>,
}

impl Caller {
    /// REGISTER with `expires` (0 un-registers) on the registration's Call-ID.
    async fn register(&mut self, expires: u32) -> Outcome {
        self.reg_cseq += 1;
        let (cseq, call_id) = (self.reg_cseq, self.id.call_id.clone());
        let msg = self.shared.register.build(
            &self.id,
            cseq,
            expires,
            &sip::new_branch(),
            self.auth.as_ref(),
        );
        self.transact(msg, &call_id, cseq).await.0
    }

    /// The call's INVITE; reports its outcome and returns the dialog of its 2xx.
    async fn invite(
        &mut self,
        idx: usize,
        events: &mpsc::UnboundedSender<CallEvent>,
    ) -> Option<Dialog> {
        let (tx, rx) = oneshot::channel();
        self.shared.media.send(Command::Offer { idx, reply: tx });
        let (sid, offer) = match rx.await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => return self.invite_failed(events, format!("offer: {e}")),
            Err(_) => return self.invite_failed(events, "media thread gone".into()),
        };
        let (call_id, branch) = (sip::token(22), sip::new_branch());
        let msg = self
            .shared
            .call
            .invite(&self.id, &call_id, &branch, &offer, self.auth.as_ref());
        let sent = Instant::now();
        let (outcome, resp) = self.transact(msg, &call_id, 1).await;
        let after = sent.elapsed();
        let dialog = match (&outcome, resp) {
            (Outcome::Final(200..=299), Some(text)) => {
                let Some(m) = Msg::parse(&text) else {
                    return self.invite_failed(events, "unparsable 2xx".into());
                };
                let d = match Dialog::from_2xx(&m) {
                    Ok(d) => d,
                    Err(e) => return self.invite_failed(events, format!("2xx: {}", e.0)),
                };
                let ack = d.ack(&self.shared.call, &self.id, &sip::new_branch());
                if self.ws.send(Message::text(ack)).await.is_err() {
                    return self.invite_failed(events, "connection lost at ACK".into());
                }
                self.shared.media.send(Command::Answer {
                    sid,
                    sdp: m.body.to_owned(),
                    invite_sent: sent.into_std(),
                });
                Some(d)
            }
            (Outcome::Final(_), Some(text)) => {
                // RFC 3261 §17.1.1.3: a non-2xx final is ACKed in the INVITE's transaction, or
                // the next hop retransmits it until Timer H.
                if let Some(to) = Msg::parse(&text).and_then(|m| m.get("to").map(str::to_owned)) {
                    let ack = self
                        .shared
                        .call
                        .ack_non_2xx(&self.id, &call_id, &branch, &to);
                    let _ = self.ws.send(Message::text(ack)).await;
                }
                None
            }
            _ => None,
        };
        let _ = events.send(CallEvent::Invited { outcome, after });
        dialog
    }

    fn invite_failed(
        &self,
        events: &mpsc::UnboundedSender<CallEvent>,
        why: String,
    ) -> Option<Dialog> {
        let _ = events.send(CallEvent::Invited {
            outcome: Outcome::Failed(why),
            after: Duration::ZERO,
        });
        None
    }

    async fn bye(&mut self, d: &Dialog) -> Outcome {
        let msg = d.bye(
            &self.shared.call,
            &self.id,
            2,
            &sip::new_branch(),
            self.auth.as_ref(),
        );
        self.transact(msg, &d.call_id, 2).await.0
    }

    /// Sends `msg` and waits for the final response with (`call_id`, `cseq`), answering
    /// requests meanwhile. Returns the outcome and, for a final response, its text.
    async fn transact(
        &mut self,
        msg: String,
        call_id: &str,
        cseq: u32,
    ) -> (Outcome, Option<String>) {
        if self.ws.send(Message::text(msg)).await.is_err() {
            return (Outcome::ConnectionLost, None);
        }
        let deadline = Instant::now() + self.shared.request_timeout;
        loop {
            let frame = match timeout_at(deadline, self.ws.next()).await {
                Err(_) => return (Outcome::Timeout, None),
                Ok(Some(Ok(m))) => m,
                Ok(Some(Err(_)) | None) => return (Outcome::ConnectionLost, None),
            };
            let Some(text) = text_of(frame) else { continue };
            let Some(m) = Msg::parse(&text) else { continue };
            if m.method().is_some() {
                if self.answer_request(&text).await.is_err() {
                    return (Outcome::ConnectionLost, None);
                }
                continue;
            }
            let ours = m.get("call-id") == Some(call_id) && m.cseq().map(|c| c.0) == Some(cseq);
            match m.status() {
                Some(code) if ours && code >= 200 => {
                    return (Outcome::Final(code), Some(text));
                }
                _ => {}
            }
        }
    }

    /// Serves the socket until the run reaches `target` or later; `None` when the socket closed.
    async fn idle_until(
        &mut self,
        phase: &mut watch::Receiver<Phase>,
        target: Phase,
    ) -> Option<Phase> {
        loop {
            tokio::select! {
                reached = async { phase.wait_for(|p| *p >= target).await.map(|p| *p) } => {
                    return Some(reached.unwrap_or(Phase::Abort));
                }
                frame = self.ws.next() => match frame {
                    Some(Ok(m)) => {
                        if let Some(text) = text_of(m)
                            && self.answer_request(&text).await.is_err()
                        {
                            return None;
                        }
                    }
                    Some(Err(_)) | None => return None,
                },
            }
        }
    }

    /// 200 to a request from the network (OPTIONS, NOTIFY, a BYE from the far end…).
    async fn answer_request(&mut self, text: &str) -> Result<(), ()> {
        if let Some(resp) = sip::ok_response(text, &self.to_tag) {
            self.ws.send(Message::text(resp)).await.map_err(|_| ())?;
        }
        Ok(())
    }

    async fn close(mut self) {
        let _ = timeout(Duration::from_secs(2), self.ws.close(None)).await;
    }
}

fn text_of(m: Message) -> Option<String> {
    match m {
        Message::Text(t) => Some(t.as_str().to_owned()),
        Message::Binary(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        _ => None,
    }
}
