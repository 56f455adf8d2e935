//! The HTTP server loop: hyper (HTTP/1.1 and h2c) with the bounds `axum::serve` does not set —
//! a timer, so a client that sends its request head slowly, or sits idle on a keep-alive
//! connection, is cut off; a cap on open connections; a cap on requests per connection; and an
//! idle timeout on every request body, so no handler waits forever on a stalled upload.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Version, header};
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::Sleep;
use tower::ServiceExt as _;

/// Bounds on connections and requests.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerLimits {
    /// A request head must arrive within this; it also bounds how long a keep-alive connection
    /// may sit idle between requests.
    pub header_read_timeout: Duration,
    /// A request body that sends nothing for this long fails (every body, every route).
    pub body_idle_timeout: Duration,
    /// Connections open at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Requests served on one HTTP/1 connection before it is closed (`Connection: close`).
    pub max_requests_per_connection: u64,
    /// Streams open at once on one HTTP/2 connection.
    pub max_h2_streams: u32,
    /// Load balancers whose `X-Forwarded-For` is believed: a request from one of these
    /// networks is taken to come from the address its proxies name (for `aws:SourceIp` and the
    /// audit log); from anywhere else the header is ignored. Empty: never believed.
    pub trusted_proxies: Vec<IpNet>,
}

/// An IP network (`10.0.0.0/8`, `::1/128`; a bare address is one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `ADDR` or `ADDR/PREFIX`.
    pub fn parse(s: &str) -> Option<IpNet> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.trim().parse::<u8>().ok().filter(|&n| n <= max)?,
            None => max,
        };
        Some(IpNet { addr, prefix })
    }

    /// Whether `ip` is in the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => return false,
            },
            _ => ip,
        };
        let (net, ip, bits) = match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => (
                u128::from(u32::from(n)) << 96,
                u128::from(u32::from(i)) << 96,
                self.prefix,
            ),
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), self.prefix),
            _ => return false,
        };
        let mask = if bits == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(bits))
        };
        net & mask == ip & mask
    }
}

/// The client's address: the peer's, or — when the peer is a trusted proxy — the last address
/// in `X-Forwarded-For` that is not itself a trusted proxy (each proxy appends the address it
/// was reached from, so addresses before the first untrusted one could be forged by the client).
fn client_address(
    peer: SocketAddr,
    headers: &axum::http::HeaderMap,
    trusted: &[IpNet],
) -> SocketAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if trusted.is_empty() || !is_trusted(peer.ip()) {
        return peer;
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        let Ok(v) = v.to_str() else {
            return peer;
        };
        for part in v.split(',') {
            match part.trim().parse::<IpAddr>() {
                Ok(ip) => hops.push(ip),
                // A malformed hop: nothing before it can be trusted.
                Err(_) => return peer,
            }
        }
    }
    match hops.into_iter().rev().find(|ip| !is_trusted(*ip)) {
        Some(ip) => SocketAddr::new(ip, peer.port()),
        None => peer,
    }
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_requests_per_connection: 10_000,
            max_h2_streams: 128,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets in-flight requests finish
/// (each connection is shut down gracefully) and returns once every connection has closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_h2_streams)
        .keep_alive_interval(Some(limits.header_read_timeout))
        .keep_alive_timeout(limits.header_read_timeout);
    let builder = Arc::new(builder);
    let limits = Arc::new(limits);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or a connection reset before accept: keep
                    // serving the others, and give descriptors a moment to come back.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let (builder, limits, app) = (Arc::clone(&builder), Arc::clone(&limits), app.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let served = Arc::new(AtomicU64::new(0));
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let n = served.fetch_add(1, Ordering::Relaxed) + 1;
                let (app, limits) = (app.clone(), Arc::clone(&limits));
                async move {
                    let version = req.version();
                    let mut req = req
                        .map(|b| axum::body::Body::new(IdleBody::new(b, limits.body_idle_timeout)));
                    let client = client_address(remote, req.headers(), &limits.trusted_proxies);
                    req.extensions_mut().insert(ConnectInfo(client));
                    let mut resp = app.oneshot(req).await?;
                    let http1 = matches!(version, Version::HTTP_10 | Version::HTTP_11);
                    if http1 && n >= limits.max_requests_per_connection {
                        resp.headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    }
                    Ok::<_, Infallible>(resp)
                }
            });
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
            tokio::pin!(conn);
            let mut stopping = false;
            loop {
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!(%remote, error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    changed = stop.changed(), if !stopping => {
                        let _ = changed;
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a permit until it ends.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
    Ok(())
}

/// A request body that fails when the client sends nothing for `idle` while the handler
/// waits for it. The clock starts at the first read, so a handler that reads late (queued
/// behind a lock) is not charged for its own delay.
struct IdleBody {
    inner: Incoming,
    idle: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl IdleBody {
    fn new(inner: Incoming, idle: Duration) -> Self {
        IdleBody {
            inner,
            idle,
            timer: None,
        }
    }
}

/// The error a stalled body ends with.
#[derive(Debug, thiserror::Error)]
#[error("no request data received for {0} s")]
pub struct BodyIdle(u64);

impl Body for IdleBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.timer = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let idle = this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyIdle(idle.as_secs()))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        SocketAddr::new(s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])), 4000)
    }

    #[test]
    fn networks_parse_and_match() {
        let n = IpNet::parse("10.0.0.0/8").expect("valid");
        assert!(n.contains("10.200.3.4".parse().expect("ip")));
        assert!(!n.contains("11.0.0.1".parse().expect("ip")));
        assert!(n.contains("::ffff:10.1.1.1".parse().expect("ip")));
        let one = IpNet::parse("127.0.0.1").expect("valid");
        assert!(one.contains("127.0.0.1".parse().expect("ip")));
        assert!(!one.contains("127.0.0.2".parse().expect("ip")));
        let v6 = IpNet::parse("fd00::/8").expect("valid");
        assert!(v6.contains("fd12::1".parse().expect("ip")));
        assert!(
            IpNet::parse("0.0.0.0/0")
                .expect("valid")
                .contains("8.8.8.8".parse().expect("ip"))
        );
        for bad in ["", "10.0.0.0/33", "::/129", "nonsense", "10.0.0.0/x"] {
            assert!(IpNet::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let trusted = [IpNet::parse("10.0.0.0/8").expect("valid")];
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("1.2.3.4, 203.0.113.9, 10.0.0.5"),
        );
        // The last untrusted hop: the client could have written 1.2.3.4 itself.
        assert_eq!(
            client_address(addr("10.0.0.2"), &h, &trusted).ip(),
            addr("203.0.113.9").ip()
        );
        // From an untrusted peer, or with no trusted proxies, the header is ignored.
        assert_eq!(
            client_address(addr("198.51.100.7"), &h, &trusted),
            addr("198.51.100.7")
        );
        assert_eq!(client_address(addr("10.0.0.2"), &h, &[]), addr("10.0.0.2"));
        // A malformed hop: nothing in the header is believed.
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4, junk"));
        assert_eq!(
            client_address(addr("10.0.0.2"), &h, &trusted),
            addr("10.0.0.2")
        );
        // Every hop trusted: the peer stands.
        h.insert("x-forwarded-for", HeaderValue::from_static("10.1.1.1"));
        assert_eq!(
            client_address(addr("10.0.0.2"), &h, &trusted),
            addr("10.0.0.2")
        );
    }
}
