//! Review 13b: the phone listeners against floods and dead peers, over real loopback sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::hub::HubInput;

fn state(config: PhonesConfig, hub: mpsc::Sender<HubInput>) -> Arc<PhoneState> {
    Arc::new(PhoneState {
        config,
        hub,
        max_message: 4096,
        open: AtomicUsize::new(0),
        shutdown: CancellationToken::new(),
    })
}

fn options(n: u32) -> Vec<u8> {
    format!(
        "OPTIONS sip:ims.example SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9:5060;rport;branch=z9hG4bKo{n}\r\n\
Max-Forwards: 70\r\nTo: <sip:ims.example>\r\nFrom: <sip:x@ims.example>;tag=o{n}\r\n\
Call-ID: o-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn stun_binding() -> Vec<u8> {
    let mut req = vec![0x00, 0x01, 0x00, 0x00];
    req.extend_from_slice(&MAGIC);
    req.extend_from_slice(&[9u8; 12]);
    req
}

#[tokio::test]
async fn review13b_rfc5626_keep_alives_keep_a_udp_phones_flow() {
    let (tx, mut rx) = mpsc::channel(256);
    // What the hub would keep: each flow's writer (dropping it ends the flow).
    let mut held: Vec<HubInput> = Vec::new();
    let config = PhonesConfig {
        udp_idle_secs: 1,
        ..PhonesConfig::default()
    };
    let st = state(config, tx);
    let server = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    let at = server.local_addr().expect("addr");
    tokio::spawn(run_udp(server, st.clone()));
    let phone = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    phone.send_to(&options(1), at).await.expect("send");
    // RFC 5626 §4.4.2: over UDP the phone keeps its flow (and its NAT binding) alive with STUN
    // Binding requests on the SIP port, answered by the edge; nothing else is sent between
    // re-REGISTERs. For 3 idle periods it sends one every 250 ms.
    let mut buf = [0u8; 128];
    for _ in 0..12 {
        phone.send_to(&stun_binding(), at).await.expect("send");
        let got = tokio::time::timeout(Duration::from_secs(1), phone.recv_from(&mut buf)).await;
        assert!(got.is_ok(), "the STUN keep-alive was not answered");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    while let Ok(input) = rx.try_recv() {
        let closed = matches!(input, HubInput::FlowClosed { .. });
        held.push(input);
        assert!(
            !closed,
            "a phone answering keep-alives was forgotten as silent after phones.udp_idle_secs: \
             its flow (and the grant and registration on it) ended"
        );
    }
}

#[tokio::test]
async fn review13b_udp_sources_that_sent_one_datagram_do_not_keep_new_phones_out() {
    let (tx, mut rx) = mpsc::channel(256);
    // What the hub would keep: each flow's writer (dropping it ends the flow).
    let mut held: Vec<HubInput> = Vec::new();
    let config = PhonesConfig {
        max_flows: 4,
        ..PhonesConfig::default()
    };
    let st = state(config, tx);
    let server = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    let at = server.local_addr().expect("addr");
    tokio::spawn(run_udp(server, st.clone()));
    // A flood of one datagram per (spoofable) source address: each is a flow for
    // phones.udp_idle_secs (1800 s), and phones.max_flows is shared with TCP and TLS.
    let mut flood = Vec::new();
    for n in 0..4 {
        let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        s.send_to(&options(n), at).await.expect("send");
        flood.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let phone = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let me: SocketAddr = phone.local_addr().expect("addr");
    phone.send_to(&options(99), at).await.expect("send");
    let admitted = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(input) = rx.recv().await {
            if let HubInput::FlowOpened { remote, .. } = &input
                && *remote == me
            {
                return true;
            }
            // The hub keeps each flow's writer (dropping it ends the flow).
            held.push(input);
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(
        admitted,
        "a real phone is refused for 30 minutes because sources that never came back (and \
         never proved they can receive) hold every place"
    );
}

#[tokio::test(start_paused = true)]
async fn review13b_a_tcp_phone_that_never_sends_a_message_does_not_hold_its_place_forever() {
    let (tx, mut rx) = mpsc::channel(256);
    // What the hub would keep: each flow's writer (dropping it ends the flow).
    let mut held: Vec<HubInput> = Vec::new();
    let st = state(PhonesConfig::default(), tx);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let at = listener.local_addr().expect("addr");
    tokio::spawn(run_stream_listener(listener, None, st.clone()));
    // Slowloris: connect, send half a request line, then nothing, ever. (Nor does a phone
    // behind a NAT that dropped its mapping: no FIN ever comes.)
    let mut c = TcpStream::connect(at).await.expect("connect");
    use tokio::io::AsyncWriteExt;
    c.write_all(b"REGISTER sip:ims.example SIP/2.0\r\n")
        .await
        .expect("write");
    let closed = tokio::time::timeout(Duration::from_secs(24 * 3600), async {
        while let Some(input) = rx.recv().await {
            if matches!(input, HubInput::FlowClosed { .. }) {
                return;
            }
            held.push(input);
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a day later the connection still holds a phones.max_flows place (and a flow, a task \
         and a buffer): max_flows such connections keep every phone out"
    );
    drop(c);
}
