//! What the hub tells one connection's task: a queue that holds nothing while it is empty.
//!
//! Instead of a tokio `mpsc` channel, which allocates a block of 32 slots and its own
//! bookkeeping up front (1.78 KiB of every idle connection, measured with dhat, issue 11 §2):
//! here the messages wait in a `VecDeque` that exists only while some wait, and the two
//! commands that are state rather than messages are kept as their latest value, so they can
//! never be refused for room or pile up:
//!
//! - whether the flow counts as registered (only the last change matters);
//! - the Close, delivered after the messages queued before it.
//!
//! Owns: queueing, waking the task. Must not touch: what the commands mean.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use super::FlowCommand;

/// A queue for one connection; `cap` messages at most wait in it.
pub fn flow_queue(cap: usize) -> (FlowTx, FlowRx) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            messages: VecDeque::new(),
            registered: None,
            close: None,
            waker: None,
            senders: 1,
            receiver: true,
        }),
        cap,
    });
    (FlowTx(shared.clone()), FlowRx(shared))
}

struct Shared {
    state: Mutex<State>,
    cap: usize,
}

struct State {
    messages: VecDeque<Bytes>,
    /// A change of the flow's registered state not yet taken.
    registered: Option<bool>,
    /// The Close, once told; it comes out after the messages.
    close: Option<(u16, &'static str)>,
    waker: Option<Waker>,
    senders: usize,
    receiver: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing is left half-done under this lock: a panic elsewhere does not spoil it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why a message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the connection's queue is full")]
    Full,
    #[error("the connection's task has ended")]
    Gone,
}

/// The hub's end; cloning it is another sender.
pub struct FlowTx(Arc<Shared>);

impl std::fmt::Debug for FlowTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlowTx")
    }
}

impl Clone for FlowTx {
    fn clone(&self) -> Self {
        self.0.lock().senders += 1;
        Self(self.0.clone())
    }
}

impl Drop for FlowTx {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.senders -= 1;
        if s.senders == 0 {
            wake(s);
        }
    }
}

fn wake(mut s: MutexGuard<'_, State>) {
    let waker = s.waker.take();
    drop(s);
    if let Some(w) = waker {
        w.wake();
    }
}

impl FlowTx {
    /// Queues a command. A message is refused when `cap` already wait (a reader that takes
    /// nothing) or once the Close is told; the other commands are always taken.
    pub fn try_send(&self, cmd: FlowCommand) -> Result<(), Refused> {
        let mut s = self.0.lock();
        if !s.receiver {
            return Err(Refused::Gone);
        }
        match cmd {
            FlowCommand::Send(bytes) => {
                if s.close.is_some() {
                    // The connection ends at the Close: what is routed to it after is not
                    // written, as nothing after it was on the channel this replaced.
                    return Err(Refused::Gone);
                }
                if s.messages.len() >= self.0.cap {
                    return Err(Refused::Full);
                }
                s.messages.push_back(bytes);
            }
            FlowCommand::Registered => s.registered = Some(true),
            FlowCommand::Unregistered => s.registered = Some(false),
            FlowCommand::Close { code, reason } => {
                s.close.get_or_insert((code, reason));
            }
        }
        wake(s);
        Ok(())
    }
}

/// The connection task's end.
pub struct FlowRx(Arc<Shared>);

impl Drop for FlowRx {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.receiver = false;
        s.messages = VecDeque::new();
    }
}

impl FlowRx {
    /// The next command: a change of registered state first, then the messages in order, then
    /// the Close; None once every sender is gone and nothing is left.
    pub async fn recv(&mut self) -> Option<FlowCommand> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<FlowCommand>> {
        let mut s = self.0.lock();
        if let Some(r) = s.registered.take() {
            return Poll::Ready(Some(if r {
                FlowCommand::Registered
            } else {
                FlowCommand::Unregistered
            }));
        }
        if let Some(bytes) = s.messages.pop_front() {
            if s.messages.is_empty() {
                // An idle connection holds no room for messages.
                s.messages = VecDeque::new();
            }
            return Poll::Ready(Some(FlowCommand::Send(bytes)));
        }
        if let Some((code, reason)) = s.close.take() {
            return Poll::Ready(Some(FlowCommand::Close { code, reason }));
        }
        if s.senders == 0 {
            return Poll::Ready(None);
        }
        if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(b: &'static [u8]) -> FlowCommand {
        FlowCommand::Send(Bytes::from_static(b))
    }

    #[tokio::test]
    async fn messages_in_order_then_the_close_state_first_and_none_at_the_end() {
        let (tx, mut rx) = flow_queue(2);
        tx.try_send(send(b"a")).expect("room");
        tx.try_send(send(b"b")).expect("room");
        assert_eq!(tx.try_send(send(b"c")), Err(Refused::Full));
        tx.try_send(FlowCommand::Close {
            code: 1008,
            reason: "revoked",
        })
        .expect("close");
        // Control commands are never refused for room, and only the last change counts.
        tx.try_send(FlowCommand::Registered).expect("state");
        tx.try_send(FlowCommand::Unregistered).expect("state");
        tx.try_send(FlowCommand::Registered).expect("state");
        let mut got = Vec::new();
        drop(tx);
        while let Some(cmd) = rx.recv().await {
            got.push(format!("{cmd:?}"));
        }
        assert_eq!(
            got,
            [
                "Registered",
                "Send(b\"a\")",
                "Send(b\"b\")",
                "Close { code: 1008, reason: \"revoked\" }"
            ]
        );
    }

    #[tokio::test]
    async fn nothing_told_after_the_close_gets_ahead_of_it() {
        // The Close ends the connection: a message the hub routes to the flow after it (an
        // INVITE for a sign-in just revoked) must not be written to the client before it, and
        // a hub that keeps the queue busy must not hold the Close back.
        let (tx, mut rx) = flow_queue(4);
        tx.try_send(send(b"before")).expect("room");
        tx.try_send(FlowCommand::Close {
            code: 1008,
            reason: "the sign-in was revoked",
        })
        .expect("close");
        assert_eq!(tx.try_send(send(b"after")), Err(Refused::Gone));
        let got: Vec<_> = [rx.recv().await, rx.recv().await]
            .into_iter()
            .map(|c| format!("{c:?}"))
            .collect();
        assert_eq!(
            got,
            [
                "Some(Send(b\"before\"))",
                "Some(Close { code: 1008, reason: \"the sign-in was revoked\" })"
            ]
        );
    }

    #[tokio::test]
    async fn a_waiting_task_is_woken_and_an_ended_task_refuses() {
        let (tx, mut rx) = flow_queue(4);
        let tx2 = tx.clone();
        let waiter = tokio::spawn(async move { rx.recv().await.map(|c| format!("{c:?}")) });
        tokio::task::yield_now().await;
        tx2.try_send(send(b"x")).expect("room");
        assert_eq!(waiter.await.expect("task").as_deref(), Some("Send(b\"x\")"));
        // The receiver is gone with the task.
        assert_eq!(tx.try_send(send(b"y")), Err(Refused::Gone));
    }

    #[tokio::test]
    async fn the_last_sender_going_ends_the_receiver() {
        let (tx, mut rx) = flow_queue(4);
        let tx2 = tx.clone();
        drop(tx);
        let waiter = tokio::spawn(async move { rx.recv().await.is_none() });
        tokio::task::yield_now().await;
        drop(tx2);
        assert!(waiter.await.expect("task"));
    }
}
