//! `GET /ws`: the WebSocket transport's sockets, on the HTTPS runtime ([`crate::transport::ws`] is the
//! tick's side and says how the two meet). The wire is in [`crate::protocol::WS_PATH`]'s docs.
//!
//! Before the upgrade (answered as JSON errors, like every other path): the address must not be banned
//! (the router's layer), the page asking must be this server's (`Origin`, when a browser sends one,
//! names this host), the client must speak this wire ([`protocol::WS_SUBPROTOCOL`]), and an address
//! may hold `--ws-per-address` sockets (8: a household's browsers), the server `--max-clients`.
//!
//! After it, a socket must present a connect token within [`TOKEN_WITHIN`] (sealed by this server's
//! key, unexpired, not used before), then may send [`MESSAGES_PER_SECOND`] messages a second (twice that
//! at once), each a binary frame of at most [`protocol::MAX_CLIENT_MESSAGE_BYTES`] that decodes. It is
//! pinged every [`PING_EVERY`] and closed after [`SILENT_LIMIT`] without a frame. Any breach closes it
//! with a close code and the reason as text.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bevy::prelude::*;
use bevy_renet::renet::ClientId;
use crossbeam_channel::Sender;
use futures_util::SinkExt;
use tokio::time::Instant;

use super::ApiState;
use super::routes::ApiError;
use crate::logs::Budget;
use crate::protocol::{self, ClientMessage, WS_KEEP_ALIVE};
use crate::transport::token::{Redeemed, TokenError, TokenOpener};
use crate::transport::ws::{Out, WS_ID_BIT, WsEvent, WsLink};

/// How long a new socket may take to send its connect token.
pub const TOKEN_WITHIN: Duration = Duration::from_secs(5);
/// Messages a second a socket may send (a player clicks and types far less); twice this at once.
pub const MESSAGES_PER_SECOND: u32 = 30;
/// How often the server pings a socket (browsers answer on their own).
pub const PING_EVERY: Duration = Duration::from_secs(5);
/// How long a socket may send nothing (not even a pong) before it is closed.
pub const SILENT_LIMIT: Duration = Duration::from_secs(15);
/// How long the server may send nothing before it sends a keep-alive frame.
pub const KEEP_ALIVE_AFTER: Duration = Duration::from_secs(1);
/// Unexpired tokens remembered as used, at most (tokens live 30 s; logins are rate-limited).
const REDEEMED_CAP: usize = 100_000;

/// WebSocket close codes (RFC 6455 and the application range).
mod close {
    /// The client broke a rule (token, rate).
    pub const POLICY: u16 = 1008;
    /// A text frame: the wire is binary.
    pub const UNSUPPORTED: u16 = 1003;
    /// A frame that does not decode.
    pub const INVALID: u16 = 1007;
    /// Silent too long.
    pub const GOING_AWAY: u16 = 1001;
    /// The server closes the connection, with the reason (after a `Kicked`, or at shutdown).
    pub const BY_SERVER: u16 = 4000;
}

/// Log lines any peer can cause.
static REFUSED: Budget = Budget::new("websocket refused", 10, 120);
static CLOSED: Budget = Budget::new("websocket closed for its input", 10, 120);

/// What the sockets share: the tick's queue, the token check, the counts the limits use.
pub struct WsHub {
    events: Sender<WsEvent>,
    opener: TokenOpener,
    redeemed: Mutex<Redeemed>,
    next_id: AtomicU64,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    open: AtomicUsize,
    max_open: usize,
    max_per_address: usize,
}

impl WsHub {
    /// A hub for at most `max_open` sockets, `max_per_address` from one address.
    pub fn new(
        events: Sender<WsEvent>,
        opener: TokenOpener,
        max_open: usize,
        max_per_address: usize,
    ) -> Self {
        Self {
            events,
            opener,
            redeemed: Mutex::new(Redeemed::new(REDEEMED_CAP)),
            next_id: AtomicU64::new(1),
            per_address: Mutex::default(),
            open: AtomicUsize::new(0),
            max_open,
            max_per_address,
        }
    }

    /// Counts a socket from `ip`, or says why there is no room for it: the metric's reason, the
    /// status and the text.
    fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
    ) -> Result<Admitted, (&'static str, StatusCode, &'static str)> {
        let mut per_address = self.per_address.lock().unwrap_or_else(|p| p.into_inner());
        // Looked up, not entered: a refused address must leave nothing behind.
        if per_address
            .get(&ip)
            .is_some_and(|&here| here >= self.max_per_address)
        {
            return Err((
                "per-address",
                StatusCode::TOO_MANY_REQUESTS,
                "Too many connections from this address",
            ));
        }
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.max_open {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err((
                "full",
                StatusCode::SERVICE_UNAVAILABLE,
                crate::net::SERVER_FULL,
            ));
        }
        *per_address.entry(ip).or_default() += 1;
        Ok(Admitted {
            hub: self.clone(),
            ip,
        })
    }
}

/// One counted socket; uncounted when dropped.
struct Admitted {
    hub: Arc<WsHub>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.hub.open.fetch_sub(1, Ordering::Relaxed);
        let mut per_address = self
            .hub
            .per_address
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(here) = per_address.get_mut(&self.ip) {
            *here -= 1;
            if *here == 0 {
                per_address.remove(&self.ip);
            }
        }
    }
}

/// `GET /ws`.
pub async fn upgrade(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let hub = state.ws.clone();
    if !same_origin(&headers) {
        return refuse(
            &state,
            peer,
            "origin",
            StatusCode::FORBIDDEN,
            "WebSocket from another site's page",
        );
    }
    let upgrade = upgrade.protocols([protocol::WS_SUBPROTOCOL]);
    if upgrade.selected_protocol().is_none() {
        return refuse(
            &state,
            peer,
            "protocol",
            StatusCode::BAD_REQUEST,
            &format!(
                "This server speaks the {} WebSocket protocol: reload the page",
                protocol::WS_SUBPROTOCOL
            ),
        );
    }
    let admitted = match hub.admit(peer.ip()) {
        Ok(admitted) => admitted,
        Err((reason, status, text)) => return refuse(&state, peer, reason, status, text),
    };
    let metrics = state.metrics.clone();
    upgrade
        .max_message_size(protocol::MAX_CLIENT_MESSAGE_BYTES)
        .max_frame_size(protocol::MAX_CLIENT_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            let _admitted = admitted;
            serve(socket, hub, peer, metrics).await;
        })
}

/// Whether a browser's `Origin` (if any) names the host the request was sent to: a page elsewhere
/// must not open sockets here with its visitors' addresses.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match (origin.to_str().ok(), host) {
        (Some(origin), Some(host)) => origin.strip_prefix("https://") == Some(host),
        _ => false,
    }
}

fn refuse(
    state: &ApiState,
    peer: SocketAddr,
    reason: &'static str,
    status: StatusCode,
    text: &str,
) -> Response {
    state
        .metrics
        .ws_refused
        .get_or_create(&[("reason", reason)])
        .inc();
    if REFUSED.allow(peer.ip()) {
        info!(%peer, reason, "websocket refused");
    }
    ApiError::new(status, text).into_response()
}

/// Why a socket was closed, as its close frame and the metric say.
struct Ending {
    code: u16,
    reason: String,
    metric: Option<&'static str>,
}

impl Ending {
    fn by_client(code: u16, reason: impl Into<String>, metric: &'static str) -> Self {
        Self {
            code,
            reason: reason.into(),
            metric: Some(metric),
        }
    }
}

/// One socket's life: its token, then its frames both ways until either side ends it.
async fn serve(
    mut socket: WebSocket,
    hub: Arc<WsHub>,
    peer: SocketAddr,
    metrics: crate::metrics::Metrics,
) {
    let ending = match login(&mut socket, &hub).await {
        Err(ending) => ending,
        Ok(user) => {
            let client_id: ClientId = WS_ID_BIT | hub.next_id.fetch_add(1, Ordering::Relaxed);
            let (link, from_tick) = WsLink::new();
            let connected = WsEvent::Connected {
                client_id,
                addr: peer,
                user,
                link: link.clone(),
            };
            if hub.events.send(connected).is_err() {
                return; // The server is stopping.
            }
            let ending = play(&mut socket, &hub, client_id, link, from_tick).await;
            let _ = hub.events.send(WsEvent::Closed {
                client_id,
                reason: ending.reason.clone(),
            });
            ending
        }
    };
    if let Some(metric) = ending.metric {
        metrics
            .ws_refused
            .get_or_create(&[("reason", metric)])
            .inc();
        if CLOSED.allow(peer.ip()) {
            info!(%peer, reason = %ending.reason, "websocket closed for its input");
        }
    }
    let frame = CloseFrame {
        code: ending.code,
        reason: truncate(&ending.reason, 123).into(),
    };
    if socket.send(Message::Close(Some(frame))).await.is_ok() {
        // Wait briefly for the client's answering close, so it sees a clean close with the reason.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(Ok(message)) = socket.recv().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

/// Reads the connect token, the socket's first frame.
async fn login(socket: &mut WebSocket, hub: &WsHub) -> Result<crate::api::TokenUser, Ending> {
    let first = loop {
        match tokio::time::timeout(TOKEN_WITHIN, socket.recv()).await {
            Err(_) => {
                return Err(Ending::by_client(
                    close::POLICY,
                    "No connect token in time",
                    "token-timeout",
                ));
            }
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => {
                return Err(Ending {
                    code: close::GOING_AWAY,
                    reason: "Closed before logging in".into(),
                    metric: None,
                });
            }
            Ok(Some(Ok(Message::Binary(bytes)))) => break bytes,
            Ok(Some(Ok(Message::Text(_)))) => {
                return Err(Ending::by_client(
                    close::UNSUPPORTED,
                    "Binary frames only",
                    "text",
                ));
            }
            Ok(Some(Ok(_))) => continue, // a ping or pong
        }
    };
    let now = crate::udp::connection_request::unix_secs();
    let token_error = |error: TokenError| {
        let metric = match error {
            TokenError::Expired => "token-expired",
            TokenError::Replayed => "token-replayed",
            TokenError::Busy => "busy",
            _ => "token-invalid",
        };
        Ending::by_client(close::POLICY, error.to_string(), metric)
    };
    let opened = hub.opener.open(&first, now).map_err(token_error)?;
    hub.redeemed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .redeem(&opened, now)
        .map_err(token_error)?;
    Ok(opened.user)
}

/// Relays frames between the socket and the tick until one side ends.
async fn play(
    socket: &mut WebSocket,
    hub: &WsHub,
    client_id: ClientId,
    link: WsLink,
    mut from_tick: tokio::sync::mpsc::UnboundedReceiver<Out>,
) -> Ending {
    let mut budget = MessageBudget::new(Instant::now());
    let mut heard = Instant::now();
    let mut sent = Instant::now();
    let mut pinged = Instant::now();
    let mut timer = tokio::time::interval(Duration::from_millis(250));
    loop {
        let may_read = link.inflight.available_permits() > 0;
        tokio::select! {
            biased;
            out = from_tick.recv() => {
                let Some(out) = out else {
                    return Ending { code: close::GOING_AWAY, reason: protocol::SHUTTING_DOWN.into(), metric: None };
                };
                // A tick's worth of messages, written with one flush.
                let mut next = Some(out);
                let mut written = 0;
                while let Some(out) = next.take() {
                    match out {
                        Out::Message { channel, bytes } => {
                            written += bytes.len();
                            let mut frame = Vec::with_capacity(bytes.len() + 1);
                            frame.push(channel);
                            frame.extend_from_slice(&bytes);
                            if socket.feed(Message::Binary(frame.into())).await.is_err() {
                                return gone();
                            }
                        }
                        Out::Close(reason) => {
                            let _ = socket.flush().await;
                            return Ending { code: close::BY_SERVER, reason, metric: None };
                        }
                    }
                    next = from_tick.try_recv().ok();
                }
                if socket.flush().await.is_err() {
                    return gone();
                }
                link.queued.fetch_sub(written, Ordering::Relaxed);
                sent = Instant::now();
            }
            _ = link.inflight.acquire(), if !may_read => {
                // The tick took some of its messages: read again.
            }
            frame = socket.recv(), if may_read => {
                heard = Instant::now();
                match frame {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return gone(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Text(_))) => {
                        return Ending::by_client(close::UNSUPPORTED, "Binary frames only", "text");
                    }
                    Some(Ok(Message::Binary(bytes))) => {
                        if !budget.take(heard) {
                            return Ending::by_client(close::POLICY, "Too many messages", "flood");
                        }
                        let message = match ClientMessage::decode(&bytes) {
                            Ok(message) => message,
                            Err(error) => {
                                return Ending::by_client(close::INVALID, format!("Undecodable message: {error}"), "undecodable");
                            }
                        };
                        if let Ok(permit) = link.inflight.try_acquire() {
                            permit.forget();
                        }
                        if hub.events.send(WsEvent::Message { client_id, message }).is_err() {
                            return gone();
                        }
                    }
                }
            }
            now = timer.tick() => {
                if now.duration_since(heard) >= SILENT_LIMIT {
                    return Ending::by_client(close::GOING_AWAY, "Silent too long", "silent");
                }
                if now.duration_since(pinged) >= PING_EVERY {
                    pinged = now;
                    if socket.send(Message::Ping(Default::default())).await.is_err() {
                        return gone();
                    }
                }
                if now.duration_since(sent) >= KEEP_ALIVE_AFTER {
                    sent = now;
                    if socket.send(Message::Binary(vec![WS_KEEP_ALIVE].into())).await.is_err() {
                        return gone();
                    }
                }
            }
        }
    }
}

/// The client went away (closed, or the connection broke).
fn gone() -> Ending {
    Ending {
        code: close::GOING_AWAY,
        reason: "Connection closed".into(),
        metric: None,
    }
}

/// At most `bytes` of `text`, cut at a character boundary (a close frame's reason holds 123 bytes).
fn truncate(text: &str, bytes: usize) -> &str {
    let mut end = text.len().min(bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A token bucket: [`MESSAGES_PER_SECOND`], twice that at once.
struct MessageBudget {
    tokens: f64,
    at: Instant,
}

impl MessageBudget {
    const BURST: f64 = 2.0 * MESSAGES_PER_SECOND as f64;

    fn new(now: Instant) -> Self {
        Self {
            tokens: Self::BURST,
            at: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let refill = now.duration_since(self.at).as_secs_f64() * f64::from(MESSAGES_PER_SECOND);
        self.tokens = (self.tokens + refill).min(Self::BURST);
        self.at = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_are_counted_per_address_and_a_refusal_leaves_nothing_behind() {
        let (events, _from_sockets) = crossbeam_channel::unbounded();
        let hub = Arc::new(WsHub::new(
            events,
            TokenOpener::new(&[1; 32], protocol::PROTOCOL_ID),
            2,
            1,
        ));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let first = hub.admit(a).expect("room");
        assert_eq!(hub.admit(a).err().map(|e| e.0), Some("per-address"));
        let second = hub.admit("10.0.0.2".parse().unwrap()).expect("room");
        for stranger in 3..100 {
            let refused = hub.admit(IpAddr::from([10, 0, 0, stranger]));
            assert_eq!(refused.err().map(|e| e.0), Some("full"));
        }
        assert_eq!(
            hub.per_address.lock().unwrap().len(),
            2,
            "only those admitted"
        );
        drop((first, second));
        assert!(hub.per_address.lock().unwrap().is_empty());
        assert_eq!(hub.open.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn only_this_hosts_pages_may_open_sockets() {
        let headers = |origin: Option<&str>| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, "game.example:8443".parse().unwrap());
            if let Some(origin) = origin {
                headers.insert(header::ORIGIN, origin.parse().unwrap());
            }
            headers
        };
        assert!(same_origin(&headers(None)), "not a browser");
        assert!(same_origin(&headers(Some("https://game.example:8443"))));
        assert!(!same_origin(&headers(Some("https://evil.example"))));
        assert!(!same_origin(&headers(Some("http://game.example:8443"))));
        assert!(!same_origin(&headers(Some("null"))));
    }

    #[test]
    fn the_message_budget_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut budget = MessageBudget::new(start);
        for _ in 0..2 * MESSAGES_PER_SECOND {
            assert!(budget.take(start));
        }
        assert!(!budget.take(start));
        assert!(
            budget.take(start + Duration::from_millis(1_000 / u64::from(MESSAGES_PER_SECOND) + 1))
        );
    }

    #[test]
    fn close_reasons_are_cut_at_a_character() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("hi", 123), "hi");
    }
}
