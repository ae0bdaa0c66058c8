//! The HTTP client openidconnect uses, over `reqwest`: oauth2's [`AsyncHttpClient`] taking an
//! `http::Request<Vec<u8>>` and returning an `http::Response<Vec<u8>>`.
//!
//! Owns: every byte imsgw sends to or reads from an OpenID provider (discovery, JWKS, token,
//! UserInfo), with the limits that keep a slow or hostile provider from hurting the gateway:
//! a whole-request timeout, no redirects followed (a token request must not be bounced to
//! another host, and neither may a discovery or JWKS fetch: SSRF hygiene), and a cap on the
//! response body. Must not touch: what the requests mean (the flow and discovery modules).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};

/// Default whole-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default cap on a response body: discovery documents and JWK Sets are a few KiB.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// Why a request to a provider got no usable response.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The request could not be sent or answered (connect, TLS, timeout, reset).
    #[error("request failed")]
    Request(#[source] reqwest::Error),
    /// The `http::Request` could not be turned into a reqwest request (bad URL).
    #[error("request not sendable")]
    BadRequest(#[source] reqwest::Error),
    /// The body was larger than the cap.
    #[error("response larger than {limit} bytes")]
    TooLarge {
        /// The cap.
        limit: usize,
    },
    /// The response could not be rebuilt as an `http::Response`.
    #[error("response not representable")]
    Response(#[source] openidconnect::http::Error),
}

/// A `reqwest::Client` with imsgw's limits, usable by openidconnect.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    max_body: usize,
}

impl HttpClient {
    /// A client with the given whole-request timeout and body cap; redirects are never
    /// followed (a 3xx comes back as it is and callers treat it as a bad status).
    pub fn new(timeout: Duration, max_body: usize) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("imsgw/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client, max_body })
    }

    /// Sends one request and reads at most `max_body` bytes of the answer.
    pub async fn execute(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let request = reqwest::Request::try_from(request).map_err(HttpError::BadRequest)?;
        let mut response = self
            .client
            .execute(request)
            .await
            .map_err(HttpError::Request)?;
        // Refuse early when the length is announced; count anyway, since it may be absent or
        // wrong (chunked encoding).
        if response
            .content_length()
            .is_some_and(|n| n > self.max_body as u64)
        {
            return Err(HttpError::TooLarge {
                limit: self.max_body,
            });
        }
        let mut builder = openidconnect::http::Response::builder()
            .status(response.status())
            .version(response.version());
        for (name, value) in response.headers() {
            builder = builder.header(name, value);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(HttpError::Request)? {
            if body.len() + chunk.len() > self.max_body {
                return Err(HttpError::TooLarge {
                    limit: self.max_body,
                });
            }
            body.extend_from_slice(&chunk);
        }
        builder.body(body).map_err(HttpError::Response)
    }
}

impl<'c> AsyncHttpClient<'c> for HttpClient {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.execute(request))
    }
}

/// An error and its sources on one line (reqwest hides the cause, e.g. "connection refused",
/// in its source chain).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use openidconnect::http::{Method, Request, StatusCode};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Serves one connection: reads one request (headers and `Content-Length` body), sends
    /// `response` bytes as they are, and hands the request text back.
    async fn one_shot(response: Vec<u8>) -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("bound");
        let task = tokio::spawn(async move {
            let Ok((mut sock, _)) = listener.accept().await else {
                return String::new();
            };
            let mut buf = Vec::new();
            let mut tmp = [0u8; 4096];
            while let Ok(n) = sock.read(&mut tmp).await {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&tmp[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            let _ = sock.write_all(&response).await;
            let _ = sock.shutdown().await;
            String::from_utf8_lossy(&buf).to_string()
        });
        (format!("http://{addr}"), task)
    }

    fn client() -> HttpClient {
        HttpClient::new(Duration::from_secs(5), 1024).expect("client builds")
    }

    #[tokio::test]
    async fn request_method_headers_and_body_reach_the_server() {
        let (base, server) =
            one_shot(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Test: yes\r\n\r\n{}".to_vec())
                .await;
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("{base}/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", "Basic YTpi")
            .body(b"grant_type=authorization_code&code=abc".to_vec())
            .expect("valid request");
        let resp = client().call(req).await.expect("answered");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers().get("x-test").map(|v| v.as_bytes()),
            Some(&b"yes"[..])
        );
        assert_eq!(resp.body(), b"{}");
        let seen = server.await.expect("server task");
        assert!(seen.starts_with("POST /token HTTP/1.1\r\n"), "{seen}");
        assert!(
            seen.to_ascii_lowercase()
                .contains("authorization: basic ytpi")
        );
        assert!(seen.ends_with("grant_type=authorization_code&code=abc"));
    }

    #[tokio::test]
    async fn error_statuses_are_returned_not_turned_into_errors() {
        let (base, _server) = one_shot(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 27\r\n\r\n{\"error\":\"invalid_grant\"}\r\n"
                .to_vec(),
        )
        .await;
        let req = Request::builder()
            .uri(format!("{base}/token"))
            .body(Vec::new())
            .expect("valid request");
        let resp = client().call(req).await.expect("answered");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert!(resp.body().starts_with(b"{\"error\""));
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let (base, _server) = one_shot(
            b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest\r\nContent-Length: 0\r\n\r\n"
                .to_vec(),
        )
        .await;
        let req = Request::builder()
            .uri(format!("{base}/.well-known/openid-configuration"))
            .body(Vec::new())
            .expect("valid request");
        let resp = client().call(req).await.expect("answered");
        assert_eq!(resp.status(), StatusCode::FOUND);
    }

    #[tokio::test]
    async fn announced_oversize_body_is_refused() {
        let (base, _server) =
            one_shot(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n".to_vec()).await;
        let req = Request::builder()
            .uri(format!("{base}/jwks"))
            .body(Vec::new())
            .expect("valid request");
        let err = client().call(req).await.expect_err("over the cap");
        assert!(matches!(err, HttpError::TooLarge { limit: 1024 }), "{err}");
    }

    #[tokio::test]
    async fn chunked_oversize_body_is_refused_while_reading() {
        let mut resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..3 {
            resp.extend_from_slice(b"200\r\n");
            resp.extend_from_slice(&[b'x'; 0x200]);
            resp.extend_from_slice(b"\r\n");
        }
        resp.extend_from_slice(b"0\r\n\r\n");
        let (base, _server) = one_shot(resp).await;
        let req = Request::builder()
            .uri(format!("{base}/jwks"))
            .body(Vec::new())
            .expect("valid request");
        let err = client().call(req).await.expect_err("over the cap");
        assert!(matches!(err, HttpError::TooLarge { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("bound");
        // Accepts and never answers.
        let _hold = tokio::spawn(async move {
            let conn = listener.accept().await;
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(conn);
        });
        let client = HttpClient::new(Duration::from_millis(200), 1024).expect("client builds");
        let req = Request::builder()
            .uri(format!("http://{addr}/"))
            .body(Vec::new())
            .expect("valid request");
        let err = client.call(req).await.expect_err("times out");
        assert!(
            matches!(err, HttpError::Request(ref e) if e.is_timeout()),
            "{err}"
        );
    }
}
