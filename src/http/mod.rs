//! Token mode's HTTPS endpoint (`--auth token`): register, log in, resume and end sessions, change the
//! password, and health, as JSON over TLS ([`crate::api`] has the paths and bodies). A login answers a
//! netcode connect token ([`TokenIssuer`]) that the UDP side accepts in secure mode.
//!
//! It runs on a small tokio runtime on threads of its own (axum + axum-server + rustls/ring) and meets
//! the rest of the server only through the auth workers' queue (argon2 and SQL run there, never here or
//! on the tick), the shared failed-login counts, and an online-players counter the tick publishes.
//!
//! Hostile clients: bodies over [`api::MAX_BODY_BYTES`] are refused (413), request headers must arrive
//! within [`HEADER_TIMEOUT`] of their first byte, TLS handshakes within [`HANDSHAKE_TIMEOUT`], a whole
//! request within [`REQUEST_TIMEOUT`], a connection that sends nothing for [`IDLE_TIMEOUT`] is closed,
//! and at most [`MAX_CONNECTIONS`] connections are open at once.

pub mod limits;
pub mod routes;
pub mod tls;
pub mod web;
pub mod ws;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::Handle;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use bevy::prelude::*;
use renetcode::ConnectToken;

use crate::access::{AllowList, IpBans};
use crate::api::{self, TokenUser};
use crate::auth::throttle::{FailureTable, NameFailures};
use crate::auth::worker::{AuthQueue, AuthWorkers};
use crate::client::api::encode_connect_token;
use crate::config::Config;
use crate::players::OnlineAccounts;
use crate::protocol;
use crate::worker::{Stop, Threads, stop_at_shutdown};

/// API connections open at once, at most (each costs a task and a TLS session); players' WebSockets
/// may hold `--max-clients` more.
pub const MAX_CONNECTIONS: usize = 512;
/// How long a client may take to send a request's headers, from their first byte.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may send nothing (an idle keep-alive, or a client that connects and waits).
/// Longer than [`REQUEST_TIMEOUT`]: a client waiting for its answer sends nothing meanwhile.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(35);
/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take, body and queue wait included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often one session may be resumed a minute (a client reconnecting with "Remember me").
pub const RESUMPTIONS_PER_MINUTE: u32 = 6;
/// How long a connect token stays valid: enough to connect, short enough that a stolen one is stale.
pub const CONNECT_TOKEN_SECS: u64 = 30;
/// netcode's connection timeout written into tokens (what its unsecure client uses too).
pub const NETCODE_TIMEOUT_SECS: i32 = 15;

/// Why the HTTPS endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen for HTTPS on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot read the netcode key file {path}: {detail}")]
    Key { path: PathBuf, detail: String },
    #[error("cannot start the HTTPS runtime: {0}")]
    Runtime(std::io::Error),
}

/// Where the HTTPS endpoint listens and which certificate it shows (for logs, tests and embedders).
#[derive(Debug, Clone)]
pub struct HttpsInfo {
    pub addr: SocketAddr,
    /// `https://IP:PORT`, what a client is given as its login URL.
    pub url: String,
    /// The certificate chain (PEM): a client trusts a self-signed one with `--ca-cert` this file.
    pub cert_path: PathBuf,
    /// SHA-256 of the certificate.
    pub fingerprint: String,
}

/// Makes netcode connect tokens for accounts: sealed with the server's private key (which never
/// leaves the server), pointing at the public UDP address, the account in the user data, a random
/// client id each (netcode ignores a second connection with an id already connected).
#[derive(Clone)]
pub struct TokenIssuer {
    private_key: [u8; 32],
    public_addr: SocketAddr,
    routes: crate::net::Routes,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("TokenIssuer")
            .field("public_addr", &self.public_addr)
            .finish_non_exhaustive()
    }
}

/// Why a connect token could not be made.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(transparent)]
    UserData(#[from] api::UserDataError),
    #[error("{0}")]
    Netcode(#[from] renetcode::TokenGenerationError),
}

impl TokenIssuer {
    pub fn new(private_key: [u8; 32], public_addr: SocketAddr) -> Self {
        Self {
            private_key,
            public_addr,
            routes: crate::net::Routes::default(),
        }
    }

    /// With `--bus`: tokens send players to their last shard or the least loaded of `routes` (the shards share
    /// `--netcode-key-file`, so each accepts the others' tokens).
    pub fn with_routes(mut self, routes: crate::net::Routes) -> Self {
        self.routes = routes;
        self
    }

    /// Opens the tokens this issuer makes (the WebSocket transport's check).
    pub fn opener(&self) -> crate::transport::token::TokenOpener {
        crate::transport::token::TokenOpener::new(&self.private_key, protocol::PROTOCOL_ID)
    }

    /// A fresh connect token for the account, base64 as the API answers it, for the shard
    /// [`crate::net::Routes::pick`] picks (this server without `--bus`), not `unreachable` if it can.
    pub fn connect_token(
        &self,
        account_id: i32,
        name: &str,
        unreachable: Option<SocketAddr>,
    ) -> Result<String, IssueError> {
        let user = TokenUser {
            account_id,
            name: name.to_owned(),
        }
        .to_user_data()?;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let token = ConnectToken::generate(
            now,
            protocol::PROTOCOL_ID,
            CONNECT_TOKEN_SECS,
            // WebSocket connections' ids have the top bit set: a netcode id never has.
            rand::random::<u64>() & !crate::transport::ws::WS_ID_BIT,
            NETCODE_TIMEOUT_SECS,
            vec![
                self.routes
                    .pick(account_id, std::time::Instant::now(), unreachable)
                    .unwrap_or(self.public_addr),
            ],
            Some(&user),
            &self.private_key,
        )?;
        Ok(encode_connect_token(&token))
    }
}

/// netcode's private key: from `--netcode-key-file` (32 raw bytes, or 64 hex digits), else random.
pub fn netcode_key(file: Option<&Path>) -> Result<[u8; 32], HttpError> {
    let Some(path) = file else {
        return Ok(rand::random());
    };
    let error = |detail: String| HttpError::Key {
        path: path.to_owned(),
        detail,
    };
    let bytes = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    api::parse_netcode_key(&bytes)
        .ok_or_else(|| error("expected 32 bytes, or 64 hex digits".into()))
}

/// The endpoint, bound and with its certificate loaded, waiting for the plugin to start serving.
#[derive(Resource)]
pub struct BoundHttps {
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    issuer: TokenIssuer,
    pub info: HttpsInfo,
}

/// Binds the HTTPS address and loads (or makes) the certificate. Done before the first tick, so a
/// busy port or a bad certificate stops the start with a clear error.
pub fn bind(config: &Config, issuer: TokenIssuer) -> Result<BoundHttps, HttpError> {
    let wanted = config.http_addr();
    let bind_error = |source| HttpError::Bind {
        addr: wanted,
        source,
    };
    let listener = crate::tcp::listen(wanted).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    let tls = tls::load_or_create(config, addr)?;
    if tls.created {
        info!(cert = %tls.cert_path.display(), "created a self-signed certificate");
    }
    Ok(BoundHttps {
        listener,
        tls: tls.config,
        issuer,
        info: HttpsInfo {
            addr,
            url: format!("https://{addr}"),
            cert_path: tls.cert_path,
            fingerprint: tls.fingerprint,
        },
    })
}

/// What every handler shares.
pub struct ApiState {
    pub queue: AuthQueue,
    pub names: NameFailures,
    /// Failed logins per client address.
    pub addresses: FailureTable<std::net::IpAddr>,
    pub registrations: limits::PerAddress,
    /// Logins (password or session) per client address.
    pub logins: limits::PerAddress,
    /// Resumptions per session (keyed by a hash of its token).
    pub resumptions: limits::PerKey<u64>,
    pub issuer: TokenIssuer,
    pub session_lifetime: Duration,
    pub online: Arc<AtomicUsize>,
    pub metrics: crate::metrics::Metrics,
    /// With `--allow-list`, who may register and log in.
    pub allowed: AllowList,
    /// Set while the tick is over budget (`crate::load`): account work is refused, 503.
    pub shedding: Arc<std::sync::atomic::AtomicBool>,
    /// The WebSocket transport's sockets (`GET /ws`).
    pub ws: Arc<ws::WsHub>,
}

/// The running endpoint: its runtime thread, stopped gracefully with the server (it stops accepting,
/// lets requests in flight finish for up to 2 s, and joins the runtime).
#[derive(Resource)]
pub struct HttpServer {
    thread: Threads,
    online: Arc<AtomicUsize>,
}

impl Stop for HttpServer {
    fn stop(&mut self) {
        self.thread.stop();
    }
}

/// Serves the endpoint bound by [`bind`] (a [`BoundHttps`] resource). Add after `auth::plugin`.
pub(crate) fn plugin(app: &mut App) {
    let Some(bound) = app.world_mut().remove_resource::<BoundHttps>() else {
        return;
    };
    let config = app.world().resource::<Config>();
    let session_lifetime = config.session_lifetime();
    let registrations = limits::PerAddress::new(config.registrations_per_minute);
    let logins = limits::PerAddress::new(config.logins_per_minute);
    let online = Arc::new(AtomicUsize::new(0));
    let max_clients = usize::from(config.max_clients);
    // The WebSocket transport: the sockets' tasks report to the tick's `WsPeers`.
    let (ws_events, from_sockets) = crossbeam_channel::unbounded();
    let hub = ws::WsHub::new(
        ws_events,
        bound.issuer.opener(),
        max_clients,
        config.ws_per_address as usize,
    );
    app.insert_resource(crate::transport::ws::WsPeers::new(from_sockets));
    let state = ApiState {
        queue: app.world().resource::<AuthWorkers>().queue(),
        names: app.world().resource::<NameFailures>().clone(),
        addresses: FailureTable::default(),
        registrations,
        logins,
        resumptions: limits::PerKey::new(RESUMPTIONS_PER_MINUTE),
        issuer: bound.issuer.clone(),
        session_lifetime,
        online: online.clone(),
        metrics: app.world().resource::<crate::metrics::Metrics>().clone(),
        allowed: app.world().resource::<AllowList>().clone(),
        shedding: app.world().resource::<crate::load::TickLoad>().flag(),
        ws: Arc::new(hub),
    };
    let bans = app.world().resource::<IpBans>().clone();
    let info = bound.info.clone();
    let health = app.world().resource::<crate::probes::Health>().clone();
    let server = match serve(bound, state, online, health, bans, max_clients) {
        Ok(server) => server,
        Err(error) => {
            error!(%error, "cannot start the HTTPS endpoint");
            app.world_mut().write_message(AppExit::error());
            return;
        }
    };
    info!(url = %info.url, cert = %info.cert_path.display(), sha256 = %info.fingerprint, "https login endpoint ready");
    app.insert_resource(server).add_systems(
        Last,
        publish_players_online.run_if(resource_changed::<OnlineAccounts>),
    );
    stop_at_shutdown::<HttpServer>(app);
}

fn router(state: ApiState, health: crate::probes::Health, bans: IpBans) -> Router {
    Router::new()
        .merge(crate::probes::routes(health))
        .merge(web::routes())
        .route(api::REGISTER, post(routes::register))
        .route(api::LOGIN, post(routes::login))
        .route(api::SESSION, post(routes::session))
        .route(api::LOGOUT, post(routes::logout))
        .route(api::PASSWORD, post(routes::password))
        .route(api::HEALTH, get(routes::health))
        .route(protocol::WS_PATH, get(ws::upgrade))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(api::MAX_BODY_BYTES))
        .layer(middleware::from_fn(limits::bounded_body))
        .layer(middleware::from_fn_with_state(bans, limits::refuse_banned))
        .layer(middleware::from_fn(with_deadline))
        .with_state(Arc::new(state))
}

/// Ends a request that takes longer than [`REQUEST_TIMEOUT`] (a body sent a byte at a time, say).
async fn with_deadline(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => routes::ApiError::new(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            "The request took too long",
        )
        .into_response(),
    }
}

fn serve(
    bound: BoundHttps,
    state: ApiState,
    online: Arc<AtomicUsize>,
    health: crate::probes::Health,
    bans: IpBans,
    max_clients: usize,
) -> Result<HttpServer, HttpError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("mmo-https")
        .enable_io()
        .enable_time()
        .build()
        .map_err(HttpError::Runtime)?;
    let handle = Handle::new();
    let acceptor = RustlsAcceptor::new(RustlsConfig::from_config(bound.tls))
        .handshake_timeout(HANDSHAKE_TIMEOUT)
        // Players' WebSockets are connections too, beside the API's.
        .acceptor(limits::Capped::new(
            MAX_CONNECTIONS + max_clients,
            IDLE_TIMEOUT,
        ));
    let app = router(state, health, bans).into_make_service_with_connect_info::<SocketAddr>();
    let serving = handle.clone();
    let listener = bound.listener;
    let thread = Threads::default()
        .spawn("mmo-https-main", move |_| {
            runtime.block_on(async move {
                let server = match axum_server::from_tcp(listener) {
                    Ok(server) => server,
                    Err(error) => {
                        error!(%error, "cannot use the HTTPS listener");
                        return;
                    }
                };
                let mut server = server.acceptor(acceptor).handle(serving);
                server
                    .http_builder()
                    .http1()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .max_buf_size(16 * 1024);
                if let Err(error) = server.serve(app).await {
                    error!(%error, "the HTTPS endpoint stopped");
                }
            });
            // Requests still running past the grace period are dropped with the runtime.
            runtime.shutdown_timeout(Duration::from_secs(1));
        })
        .on_stop(move || handle.graceful_shutdown(Some(Duration::from_secs(2))));
    Ok(HttpServer { thread, online })
}

/// Keeps `/api/health`'s player count current.
fn publish_players_online(online: Res<OnlineAccounts>, server: Res<HttpServer>) {
    server.online.store(online.len(), Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_netcode_key_file_holds_raw_bytes_or_hex() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw");
        std::fs::write(&raw, [7u8; 32]).unwrap();
        assert_eq!(netcode_key(Some(&raw)).unwrap(), [7u8; 32]);
        let hex = dir.path().join("hex");
        std::fs::write(&hex, format!("{}\n", "0a".repeat(32))).unwrap();
        assert_eq!(netcode_key(Some(&hex)).unwrap(), [10u8; 32]);
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "not a key").unwrap();
        assert!(netcode_key(Some(&bad)).is_err());
        assert_ne!(netcode_key(None).unwrap(), netcode_key(None).unwrap());
    }
}
