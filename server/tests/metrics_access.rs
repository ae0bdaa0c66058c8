//! Who can read `GET /metrics` on a started gateway: with `metrics.listen` it is served there
//! and is 404 on `http.listen`; with `metrics.bearer_token_file` a scraper without the token gets
//! 401 with an RFC 6750 §3 challenge.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use imsgw::app::{self, Running};
use imsgw::config::Config;

/// A gateway on ephemeral ports (upstream: a closed UDP port) with `extra` config appended.
async fn gateway(name: &str, extra: &str) -> Running {
    let dir = scratch(name);
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let dead_port = dead.local_addr().expect("addr").port();
    drop(dead);
    let text = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[sip]\ndomain = \"ims.example\"\nlisten = \"127.0.0.1:0\"\n\
upstream = \"sip:127.0.0.1:{dead_port};transport=udp\"\n[waf]\nissuer = \"http://127.0.0.1:1\"\n\
key_dir = \"{}\"\nstate_dir = \"{}\"\n{extra}",
        dir.join("keys").display(),
        dir.join("state").display()
    );
    let config = Config::from_sources(Path::new("test.toml"), &text, Vec::new()).expect("config");
    app::start(config).await.expect("start")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("imsgw-metrics-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

async fn get(addr: SocketAddr, auth: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("http://{addr}/metrics"));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.send().await.expect("GET /metrics")
}

#[tokio::test]
async fn metrics_only_where_and_to_whom_the_config_says() {
    // metrics.listen: a listener of its own, and nothing on the public one
    let g = gateway("listen", "[metrics]\nlisten = \"127.0.0.1:0\"\n").await;
    let m = g.metrics_addr.expect("metrics.listen bound");
    assert_ne!(m, g.http_addr);
    assert_eq!(get(g.http_addr, None).await.status(), 404);
    let r = get(m, None).await;
    assert_eq!(r.status(), 200);
    // The first gateway of this process holds the global recorder (Metrics::install).
    let body = r.text().await.expect("body");
    assert!(body.contains("imsgw_ims_untrusted_dropped_total"), "{body}");
    g.stop().await;

    // metrics.bearer_token_file: 401 with a Bearer challenge without the token
    let token = "k3y-for-the-scraper-0123456789abcdef-xyz";
    let file = scratch("token").join("metrics.token");
    std::fs::write(&file, format!("{token}\n")).expect("token file");
    let g = gateway(
        "token",
        &format!("[metrics]\nbearer_token_file = \"{}\"\n", file.display()),
    )
    .await;
    assert_eq!(g.metrics_addr, None);
    let none = get(g.http_addr, None).await;
    assert_eq!(none.status(), 401);
    assert_eq!(
        none.headers()["www-authenticate"],
        "Bearer realm=\"imsgw-metrics\""
    );
    let wrong = get(g.http_addr, Some("Bearer not-the-token")).await;
    assert_eq!(wrong.status(), 401);
    assert!(
        wrong.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .contains("error=\"invalid_token\"")
    );
    let basic = get(g.http_addr, Some(&format!("Basic {token}"))).await;
    assert_eq!(basic.status(), 401);
    let ok = get(g.http_addr, Some(&format!("Bearer {token}"))).await;
    assert_eq!(ok.status(), 200);
    g.stop().await;
}
