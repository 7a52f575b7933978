//! What keeps the HTTPS endpoint standing under hostile clients, beside the timeouts set in [`super`]: a
//! cap on connections open at once (TLS handshakes included), an idle timeout on every connection
//! (hyper's header timeout only starts with a request's first byte), bodies read to a bound and an
//! oversized one answered 413 ([`bounded_body`]), and allowances per address and per session.

use std::collections::HashMap;
use std::future::{Future, Ready, poll_fn, ready};
use std::hash::Hash;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, HttpBody};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::routes::ApiError;
use crate::access::IpBans;
use crate::api;
use crate::time::now_ms;

/// Accepts a TCP connection only while fewer than its cap are open; others are closed at once, before
/// any TLS work. A connection that receives nothing for `idle` is closed. Put it under the TLS acceptor.
#[derive(Clone, Debug)]
pub struct Capped {
    permits: Arc<Semaphore>,
    idle: Duration,
}

impl Capped {
    pub fn new(max_connections: usize, idle: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_connections)),
            idle,
        }
    }
}

impl<S> Accept<TcpStream, S> for Capped {
    type Stream = Permitted;
    type Service = S;
    type Future = Ready<io::Result<(Permitted, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        ready(match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Ok((
                {
                    // No Nagle: a WebSocket's frames (a tick's messages in one small TLS record)
                    // must leave at once, not wait for the peer's delayed ack (40 ms on Linux).
                    let _ = stream.set_nodelay(true);
                    Permitted {
                        stream,
                        _permit: permit,
                        idle: self.idle,
                        quiet_until: Box::pin(tokio::time::sleep(self.idle)),
                    }
                },
                service,
            )),
            Err(_) => {
                tracing::debug!("HTTPS connection refused: too many open");
                Err(io::Error::other("too many HTTPS connections"))
            }
        })
    }
}

/// A TCP stream holding one of the cap's places until it closes; reading fails once nothing has
/// arrived for its idle time.
#[derive(Debug)]
pub struct Permitted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    idle: Duration,
    quiet_until: Pin<Box<tokio::time::Sleep>>,
}

impl AsyncRead for Permitted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                let deadline = tokio::time::Instant::now() + self.idle;
                self.quiet_until.as_mut().reset(deadline);
                Poll::Ready(result)
            }
            Poll::Pending => match self.quiet_until.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::ErrorKind::TimedOut.into())),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Permitted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Addresses tracked at most; beyond it, full allowances are forgotten first.
const MAX_TRACKED: usize = 65_536;

/// An allowance per address: `burst` at once, refilled at `per_minute`.
pub type PerAddress = PerKey<IpAddr>;

/// An allowance per key (an address, a session): `burst` at once, refilled at `per_minute`.
#[derive(Debug)]
pub struct PerKey<K> {
    burst: f64,
    per_second: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: Hash + Eq> PerKey<K> {
    pub fn new(per_minute: u32) -> Self {
        Self {
            burst: f64::from(per_minute.max(1)),
            per_second: f64::from(per_minute) / 60.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Spends one from `key`'s allowance; `Err` says how long until one is back.
    pub fn take(&self, key: K, now: Instant) -> Result<(), Duration> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= MAX_TRACKED {
            let (burst, rate) = (self.burst, self.per_second);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = buckets.entry(key).or_insert((self.burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.per_second)
            .min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else if self.per_second > 0.0 {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.per_second))
        } else {
            Err(Duration::from_secs(60))
        }
    }
}

/// Most bytes of an oversized body read and thrown away before the 413 goes out, so that a client still
/// sending reads the answer instead of a reset; past it the connection is closed.
pub const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// Reads a request's body before the handler runs: one within [`api::MAX_BODY_BYTES`] is handed on,
/// one over it is read to its end (at most [`DRAIN_LIMIT`]) and answered 413 with the JSON error, and
/// the connection closed.
pub async fn bounded_body(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|length| length > DRAIN_LIMIT) {
        return too_large();
    }
    let (parts, mut body) = request.into_parts();
    let mut kept = Vec::new();
    let (mut read, mut over) = (0, false);
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let Ok(data) = frame.map(|frame| frame.into_data()) else {
            // The client broke off: nobody reads an answer.
            return StatusCode::BAD_REQUEST.into_response();
        };
        let Ok(data) = data else { continue };
        read += data.len();
        over |= read > api::MAX_BODY_BYTES;
        if over {
            kept.clear();
            if read > DRAIN_LIMIT {
                break;
            }
        } else {
            kept.extend_from_slice(&data);
        }
    }
    if over {
        return too_large();
    }
    next.run(Request::from_parts(parts, Body::from(kept))).await
}

/// Answers a banned address (`banip`) 403 with the ban, before its request is read.
pub async fn refuse_banned(State(bans): State<IpBans>, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    if let Some(ban) = peer.and_then(|ip| bans.ban(ip, now_ms())) {
        let mut response = ApiError::new(StatusCode::FORBIDDEN, ban.text()).into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    next.run(request).await
}

/// 413 with the JSON error, closing the connection.
fn too_large() -> Response {
    let mut response = ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("Request body over {} bytes", api::MAX_BODY_BYTES),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_burst_then_one_per_interval() {
        let limit = PerAddress::new(6);
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let now = Instant::now();
        for _ in 0..6 {
            assert!(limit.take(a, now).is_ok());
        }
        let wait = limit.take(a, now).unwrap_err();
        assert!(wait <= Duration::from_secs(10), "{wait:?}");
        assert!(limit.take(b, now).is_ok(), "others keep theirs");
        assert!(limit.take(a, now + Duration::from_secs(10)).is_ok());
    }
}
