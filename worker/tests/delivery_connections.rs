//! How deliveries use connections: HTTP/2 when the target's TLS offers it, HTTP/1.1
//! otherwise, one pooled connection reused by consecutive deliveries, and the worker's
//! `User-Agent`, `Accept: */*` and a per-delivery `Idempotency-Key` on every request. The
//! targets are a hyper server over rustls (ALPN h2 and http/1.1) and a plain hyper server,
//! on loopback.

mod support;
#[path = "tls_support/mod.rs"]
mod tls_support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{outbound, rest_call, vars};

/// What the target saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    version: hyper::Version,
    peer: SocketAddr,
    user_agent: String,
    accept: String,
    idempotency_key: String,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// Serve `stream` (from `peer`) with hyper's automatic HTTP/1.1 and HTTP/2 server, answering
/// 204 to everything and recording each request.
fn serve<S>(stream: S, peer: SocketAddr, log: Log)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let header = |name: &str| {
            request.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
        };
        log.lock().unwrap().push(Seen {
            version: request.version(),
            peer,
            user_agent: header("user-agent"),
            accept: header("accept"),
            idempotency_key: header("idempotency-key"),
        });
        async {
            Ok::<_, std::convert::Infallible>(
                hyper::Response::builder()
                    .status(204)
                    .body(http_body_util::Empty::<bytes::Bytes>::new())
                    .unwrap(),
            )
        }
    });
    tokio::spawn(async move {
        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), service)
            .await;
    });
}

/// An HTTPS target offering h2 and http/1.1 by ALPN, with a certificate from `pki`.
async fn https_target(pki: &tls_support::Pki) -> (SocketAddr, Log) {
    let (cert, key) = pki.server("target", 30);
    let mut config = tls_support::server_config(&cert, &key);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    target(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
}

/// A target on loopback, over TLS with `tls`, plain HTTP without.
async fn target(tls: Option<tokio_rustls::TlsAcceptor>) -> (SocketAddr, Log) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Log = Arc::default();
    let recorded = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, peer)) = listener.accept().await else { return };
            let log = recorded.clone();
            match tls.clone() {
                None => serve(tcp, peer, log),
                Some(acceptor) => {
                    tokio::spawn(async move {
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            serve(stream, peer, log);
                        }
                    });
                }
            }
        }
    });
    (addr, log)
}

/// Deliver three events to `url` one after the other; what the target saw.
async fn deliver_three(url: &str, ca_file: Option<String>, log: &Log) -> Vec<Seen> {
    let outbound = outbound(Default::default());
    let mut call = rest_call(url, "/events");
    call.endpoint.ca_file = ca_file;
    for id in ["event-1", "event-2", "event-3"] {
        let outcome = outbound.deliver(&call, &vars(&[]), id).await;
        assert!(outcome.is_delivered(), "{outcome:?}");
    }
    log.lock().unwrap().clone()
}

fn assert_one_connection_and_headers(seen: &[Seen]) {
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.iter().all(|s| s.peer == seen[0].peer), "one pooled connection: {seen:?}");
    let agent = concat!("switchboard-worker/", env!("CARGO_PKG_VERSION"));
    assert!(seen.iter().all(|s| s.user_agent == agent && s.accept == "*/*"), "{seen:?}");
    let keys: std::collections::BTreeSet<&str> =
        seen.iter().map(|s| s.idempotency_key.as_str()).collect();
    assert_eq!(keys.len(), 3, "one key per delivery: {seen:?}");
    assert!(!keys.contains(""), "{seen:?}");
}

#[tokio::test]
async fn https_targets_offering_h2_get_http2_on_one_pooled_connection() {
    let pki = tls_support::Pki::new();
    let (addr, log) = https_target(&pki).await;
    let url = format!("https://127.0.0.1:{}", addr.port());
    let seen = deliver_three(&url, Some(pki.ca_file().display().to_string()), &log).await;
    assert!(seen.iter().all(|s| s.version == hyper::Version::HTTP_2), "{seen:?}");
    assert_one_connection_and_headers(&seen);
}

#[tokio::test]
async fn plain_http_targets_get_http11_keep_alive() {
    let (addr, log) = target(None).await;
    let seen = deliver_three(&format!("http://127.0.0.1:{}", addr.port()), None, &log).await;
    assert!(seen.iter().all(|s| s.version == hyper::Version::HTTP_11), "{seen:?}");
    assert_one_connection_and_headers(&seen);
}
