//! A stub WebSocket SIP endpoint for trying imsgw-loadgen without a real edge: accepts the `sip`
//! subprotocol, answers every REGISTER with 200 and sends each client one OPTIONS (which the
//! load tool must answer). Not a benchmark of anything.
//!
//!     cargo run --release -p imsgw-loadgen --example stub_registrar -- 127.0.0.1:8099 PIDFILE

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut argv = std::env::args().skip(1);
    let addr = argv.next().unwrap_or_else(|| "127.0.0.1:8099".into());
    if let Some(pidfile) = argv.next() {
        std::fs::write(pidfile, std::process::id().to_string())?;
    }
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("stub registrar on ws://{addr}");
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            // The error type is tungstenite's `ErrorResponse`, fixed by its Callback trait.
            #[allow(clippy::result_large_err)]
            let pick_sip = |_: &Request, mut resp: Response| {
                resp.headers_mut()
                    .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("sip"));
                Ok(resp)
            };
            let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, pick_sip).await else {
                return;
            };
            let options = "OPTIONS sip:x@y.invalid;transport=ws SIP/2.0\r\nVia: SIP/2.0/WS stub.invalid;branch=z9hG4bKstub\r\nFrom: <sip:stub@ims.example>;tag=s1\r\nTo: <sip:x@y.invalid>\r\nCall-ID: stub-opt\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
            if ws.send(Message::text(options)).await.is_err() {
                return;
            }
            while let Some(Ok(msg)) = ws.next().await {
                let Message::Text(t) = msg else { continue };
                if !t.starts_with("REGISTER ") {
                    continue;
                }
                let keep = ["via:", "from:", "to:", "call-id:", "cseq:", "contact:"];
                let mut resp = String::from("SIP/2.0 200 OK\r\n");
                for line in t.split("\r\n") {
                    if keep
                        .iter()
                        .any(|k| line.to_ascii_lowercase().starts_with(k))
                    {
                        resp.push_str(line);
                        if line.to_ascii_lowercase().starts_with("to:") {
                            resp.push_str(";tag=stub");
                        }
                        resp.push_str("\r\n");
                    }
                }
                resp.push_str("Content-Length: 0\r\n\r\n");
                if ws.send(Message::text(resp)).await.is_err() {
                    return;
                }
            }
        });
    }
}
