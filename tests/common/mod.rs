//! Test fixtures: a real server app on `127.0.0.1:0` with a temp database, and a real renet client over
//! UDP that speaks `mmo::protocol`. Nothing is mocked.

#![allow(dead_code)] // each test binary uses its own subset

#[cfg(feature = "postgres")]
pub mod postgres;
pub mod process;
pub mod proxy;
pub mod redis;
pub mod webdriver;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use mmo::client::NetClient;
use mmo::client::api::{ApiClient, decode_connect_token};
use mmo::client::link::Link;
use mmo::client::ws::{WsClient, WsOptions};
use mmo::config::{AuthMode, Config, DbLocation};
use mmo::protocol::{ChatLine, ClientMessage, Request, ServerMessage};
use mmo::server::ServerHandle;

/// How long any single expectation may take before the test fails (generous: CI is 2 shared cores).
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A server on a free loopback port with a database in a temp dir, stopped when dropped.
pub struct TestServer {
    handle: Option<ServerHandle>,
    pub addr: SocketAddr,
    pub db: DbLocation,
    config: Config,
    /// What the test added to the app (`start_extended`): a restart adds it again.
    extend: Extension,
    _dir: tempfile::TempDir,
}

/// Plugins and systems a test adds to the server's app, as a game's own `main` would.
type Extension = std::sync::Arc<dyn Fn(&mut bevy::prelude::App) + Send + Sync>;

/// The database a test server starts on: an SQLite file in `dir`, or with `MMO_TEST_DB=postgres` (in a
/// build with `--features postgres`) a new database on the test process's PostgreSQL cluster.
pub fn test_db(dir: &Path) -> DbLocation {
    match std::env::var("MMO_TEST_DB").as_deref() {
        Ok("postgres") => postgres_db(),
        Ok("sqlite") | Err(_) => DbLocation::Sqlite(dir.join("mmo.sqlite3")),
        Ok(other) => panic!("MMO_TEST_DB={other}: expected sqlite or postgres"),
    }
}

/// Whether this run's test servers use PostgreSQL (`MMO_TEST_DB=postgres`).
pub fn on_postgres() -> bool {
    std::env::var("MMO_TEST_DB").as_deref() == Ok("postgres")
}

#[cfg(feature = "postgres")]
fn postgres_db() -> DbLocation {
    DbLocation::Postgres(postgres::fresh_database())
}

#[cfg(not(feature = "postgres"))]
fn postgres_db() -> DbLocation {
    panic!("MMO_TEST_DB=postgres needs a build with it: cargo test --features postgres")
}

/// `--db`'s argument for `db`, URL or path as it is.
pub fn db_arg(db: &DbLocation) -> OsString {
    match db {
        DbLocation::Sqlite(path) => path.clone().into_os_string(),
        DbLocation::Postgres(url) => url.into(),
    }
}

/// A connection to `db`, for a test to look at (or prepare) what the server stores.
pub fn db_conn(db: &DbLocation) -> mmo::db::DbConn {
    mmo::db::Manager::connect_to(db).expect("connect to the test database")
}

/// Server logs on stderr when `MMO_TEST_LOG` is set (an env filter such as `info` or `mmo=debug`).
fn init_logging() {
    use bevy::log::tracing_subscriber::{EnvFilter, fmt};
    if let Ok(filter) = std::env::var("MMO_TEST_LOG") {
        let _ = fmt()
            .with_env_filter(EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

impl TestServer {
    /// A server with the default settings, but a chat limit no test reaches by accident.
    pub fn start() -> Self {
        Self::start_with(|config| {
            config.chat_burst = 1000;
            config.chat_per_second = 1000.0;
        })
    }

    /// A server whose configuration `tweak` adjusts.
    pub fn start_with(tweak: impl Fn(&mut Config) + 'static) -> Self {
        Self::start_extended(tweak, |_| {})
    }

    /// A server whose configuration `tweak` adjusts, with `extend` adding to its app (as a game's own
    /// plugins would). A restart adds them again.
    pub fn start_extended(
        tweak: impl Fn(&mut Config) + 'static,
        extend: impl FnOnce(&mut bevy::prelude::App) + Clone + Send + Sync + 'static,
    ) -> Self {
        let extend: Extension = std::sync::Arc::new(move |app| extend.clone()(app));
        init_logging();
        let dir = tempfile::tempdir().expect("temp dir");
        let db = test_db(dir.path());
        let mut config = config(db.clone());
        tweak(&mut config);
        if matches!(config.db, DbLocation::Postgres(_)) && config.tls_cert.is_none() {
            // Without an SQLite file to sit beside, the self-signed pair would land in the working
            // directory: make it in the test's own.
            let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            mmo::http::tls::create_self_signed(&cert, &key, &["127.0.0.1".parse().unwrap()])
                .expect("a self-signed certificate");
            (config.tls_cert, config.tls_key) = (Some(cert), Some(key));
        }
        let handle = Self::spawn(&config, &extend).expect("server starts");
        Self {
            addr: handle.addr(),
            handle: Some(handle),
            db: config.db.clone(),
            config,
            extend,
            _dir: dir,
        }
    }

    fn spawn(config: &Config, extend: &Extension) -> Result<ServerHandle, mmo::server::StartError> {
        let extend = extend.clone();
        ServerHandle::spawn_with(config.clone(), move |app| extend(app))
    }

    /// A token-mode server (HTTPS login on a free loopback port, secure netcode), chat limits as
    /// [`TestServer::start`]'s, adjusted by `tweak`.
    pub fn start_token_with(tweak: impl Fn(&mut Config) + 'static) -> Self {
        Self::start_with(move |config| {
            config.chat_burst = 1000;
            config.chat_per_second = 1000.0;
            config.auth = AuthMode::Token;
            config.http_bind = Some("127.0.0.1:0".parse().unwrap());
            tweak(config);
        })
    }

    pub fn start_token() -> Self {
        Self::start_token_with(|_| {})
    }

    /// Where `/metrics` is served (with `--metrics-bind`).
    pub fn metrics_addr(&self) -> SocketAddr {
        self.handle
            .as_ref()
            .and_then(|handle| handle.metrics_addr())
            .expect("a server with --metrics-bind")
    }

    /// Token mode: the HTTPS endpoint's URL and certificate.
    pub fn https(&self) -> mmo::http::HttpsInfo {
        self.handle
            .as_ref()
            .and_then(|handle| handle.https().cloned())
            .expect("a token-mode server")
    }

    /// Token mode: an HTTPS client that trusts the server's self-signed certificate.
    pub fn api(&self) -> ApiClient {
        let https = self.https();
        ApiClient::with_ca_file(&https.url, Some(&https.cert_path)).expect("api client")
    }

    /// Token mode: a player registered and logged in over HTTPS, connected over UDP with its token,
    /// with everything sent to it on login already read.
    pub fn token_player(&self, name: &str) -> TestClient {
        let api = self.api();
        api.register(name, PASSWORD).expect("register over https");
        let login = api.login(name, PASSWORD).expect("login over https");
        let mut client = TestClient::connect_with_token(&login.connect_token);
        client.expect("logged in after connecting", |m| {
            matches!(m, ServerMessage::LoggedIn { .. }).then_some(())
        });
        client.expect("chat history after login", |m| {
            matches!(m, ServerMessage::ChatHistory { .. }).then_some(())
        });
        client
    }

    /// Token mode: a player registered and logged in over HTTPS, playing over the WebSocket as a
    /// browser does, with everything sent to it on login already read.
    pub fn ws_player(&self, name: &str) -> TestClient {
        let api = self.api();
        api.register(name, PASSWORD).expect("register over https");
        let login = api.login(name, PASSWORD).expect("login over https");
        let mut client = TestClient::connect_ws(&self.https(), &login.connect_token);
        client.expect("logged in after connecting", |m| {
            matches!(m, ServerMessage::LoggedIn { .. }).then_some(())
        });
        client.expect("chat history after login", |m| {
            matches!(m, ServerMessage::ChatHistory { .. }).then_some(())
        });
        client
    }

    /// Another server on the same database (a second shard, for `--bus`), with this one's configuration
    /// adjusted by `tweak`.
    pub fn another(&self, tweak: impl Fn(&mut Config)) -> Self {
        let mut config = self.config.clone();
        tweak(&mut config);
        let handle = ServerHandle::spawn(config.clone()).expect("the second server starts");
        Self {
            addr: handle.addr(),
            handle: Some(handle),
            db: self.db.clone(),
            config,
            extend: std::sync::Arc::new(|_| {}),
            _dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Stops the server gracefully, then starts a new one on the same database (on a new port), with
    /// what the test added to the app.
    pub fn restart(&mut self) {
        self.stop();
        let handle = Self::spawn(&self.config, &self.extend).expect("server restarts");
        self.addr = handle.addr();
        self.handle = Some(handle);
    }

    /// Stops the server gracefully and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(handle) = self.handle.take() {
            assert_eq!(handle.stop(), bevy::app::AppExit::Success);
        }
    }

    pub fn client(&self) -> TestClient {
        TestClient::connect(self.addr)
    }

    /// A player of an existing account, logged in again (in-band), the chat history received.
    pub fn login_again(&self, name: &str) -> TestClient {
        let mut client = self.client();
        client.login(name, PASSWORD).expect("login");
        client.expect("chat history after login", |m| {
            matches!(m, ServerMessage::ChatHistory { .. }).then_some(())
        });
        client
    }

    /// A connected client that registered and logged in as `name`, with everything sent to it on login
    /// already read.
    pub fn player(&self, name: &str) -> TestClient {
        let mut client = self.client();
        client.register(name, PASSWORD).expect("register");
        client.login(name, PASSWORD).expect("login");
        client.expect("chat history after login", |m| {
            matches!(m, ServerMessage::ChatHistory { .. }).then_some(())
        });
        client
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.stop();
        }
    }
}

fn config(db: DbLocation) -> Config {
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), db);
    // Debug builds of many servers on two cores overrun ticks: a login refused as "Server busy" would
    // fail tests that are not about overload (tests/capacity.rs turns it back on).
    config.no_shedding = true;
    config
}

pub const PASSWORD: &str = "correct horse battery";

/// A real client, over UDP ([`NetClient`]) or a WebSocket ([`WsClient`], as a browser plays), with
/// what it received kept for assertions.
pub struct TestClient {
    net: Link,
    /// Every message received, in order.
    pub received: Vec<ServerMessage>,
    /// Every world snapshot received, in order of arrival.
    pub snapshots: Vec<mmo::protocol::Snapshot>,
    /// How many of `received` the expectations have consumed.
    read: usize,
}

impl TestClient {
    pub fn connect(addr: SocketAddr) -> Self {
        let mut client = Self::start_connecting(addr);
        client.wait_connected();
        client
    }

    /// Creates the client without waiting for the connection.
    pub fn start_connecting(addr: SocketAddr) -> Self {
        Self::over(NetClient::connect(addr, 60).expect("client"))
    }

    /// Token mode: connects in netcode's secure mode with a connect token (base64, as the API gives it).
    pub fn connect_with_token(connect_token: &str) -> Self {
        let mut client = Self::start_with_token(connect_token);
        client.wait_connected();
        client
    }

    /// Token mode: creates the client without waiting for the connection.
    pub fn start_with_token(connect_token: &str) -> Self {
        let token = decode_connect_token(connect_token).expect("a connect token");
        Self::over(NetClient::connect_with_token(token, 60).expect("client"))
    }

    /// Token mode: connects over the HTTPS listener's WebSocket with a connect token.
    pub fn connect_ws(https: &mmo::http::HttpsInfo, connect_token: &str) -> Self {
        Self::connect_ws_to(&https.url, &https.cert_path, connect_token)
    }

    /// [`TestClient::connect_ws`] to the login server at `url`, trusting the certificate at `cert`.
    pub fn connect_ws_to(url: &str, cert: &Path, connect_token: &str) -> Self {
        let pem = std::fs::read(cert).expect("the server's certificate");
        let options = WsOptions {
            ca_pem: Some(&pem),
            ..Default::default()
        };
        let ws = WsClient::connect(url, connect_token, options).expect("websocket");
        Self::over(ws)
    }

    fn over(net: impl Into<Link>) -> Self {
        let net = net.into();
        Self {
            net,
            received: Vec::new(),
            snapshots: Vec::new(),
            read: 0,
        }
    }

    /// Pumps until connected; fails if refused or slow.
    pub fn wait_connected(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        while !self.net.is_connected() {
            assert!(Instant::now() < deadline, "could not connect");
            assert!(
                !self.net.is_disconnected(),
                "refused: {:?}",
                self.net.disconnect_reason()
            );
            self.pump();
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Pumps for `time`; whether the connection was made meanwhile.
    pub fn connects_within(&mut self, time: Duration) -> bool {
        let deadline = Instant::now() + time;
        while Instant::now() < deadline {
            if self.net.is_connected() {
                return true;
            }
            self.pump();
            std::thread::sleep(Duration::from_millis(2));
        }
        self.net.is_connected()
    }

    /// One pass of the client's loop.
    pub fn pump(&mut self) {
        if let Err(error) = self.net.pump(&mut self.received) {
            panic!("the server sent an undecodable message: {error}");
        }
        self.snapshots.extend(self.net.take_snapshots());
    }

    pub fn send(&mut self, message: &ClientMessage) {
        self.net.send(message);
        self.pump();
    }

    /// Sends `messages` in one packet (so the server takes them in one tick).
    pub fn send_together(&mut self, messages: &[ClientMessage]) {
        for message in messages {
            self.net.send(message);
        }
        self.pump();
    }

    /// Receives for `time`, returning the messages as they came over the wire (a batch of chat lines
    /// as one [`ServerMessage::ChatLines`]), undecodable ones as `None`.
    pub fn wire_messages_for(&mut self, time: Duration) -> Vec<Option<ServerMessage>> {
        let mut wire = Vec::new();
        let until = Instant::now() + time;
        while Instant::now() < until {
            self.net
                .pump_raw(|bytes| wire.push(ServerMessage::decode(bytes).ok()));
            std::thread::sleep(Duration::from_millis(2));
        }
        wire
    }

    /// Sends one packet now (a valid netcode packet: an ack, plus anything queued).
    pub fn flush(&mut self) {
        self.net.flush();
    }

    /// Sends arbitrary bytes as one message on the protocol's channel.
    pub fn send_raw(&mut self, bytes: Vec<u8>) {
        self.net.send_raw(bytes);
        self.pump();
    }

    /// Pumps until an unread message satisfies `matcher`; everything before it is consumed too.
    pub fn expect<T>(
        &mut self,
        what: &str,
        mut matcher: impl FnMut(&ServerMessage) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            while self.read < self.received.len() {
                self.read += 1;
                if let Some(found) = matcher(&self.received[self.read - 1]) {
                    return found;
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; received {:#?}; disconnected: {:?}",
                self.received,
                self.net.disconnect_reason()
            );
            self.pump();
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The next message, whatever it is.
    pub fn next_message(&mut self) -> ServerMessage {
        self.expect("any message", |m| Some(m.clone()))
    }

    /// Messages received but not yet consumed by an expectation.
    pub fn unread(&mut self) -> &[ServerMessage] {
        self.pump();
        &self.received[self.read..]
    }

    fn answer(
        &mut self,
        request: Request,
        accepted: impl Fn(&ServerMessage) -> Option<String>,
    ) -> Result<String, String> {
        self.expect(&format!("answer to {request:?}"), |m| match m {
            ServerMessage::Denied { request: r, reason } if *r == request => {
                Some(Err(reason.clone()))
            }
            other => accepted(other).map(Ok),
        })
    }

    pub fn register(&mut self, username: &str, password: &str) -> Result<String, String> {
        self.send(&ClientMessage::Register {
            username: username.into(),
            password: password.into(),
        });
        self.answer(Request::Register, |m| match m {
            ServerMessage::Registered { username } => Some(username.clone()),
            _ => None,
        })
    }

    pub fn login(&mut self, username: &str, password: &str) -> Result<String, String> {
        self.send(&ClientMessage::Login {
            username: username.into(),
            password: password.into(),
        });
        self.answer(Request::Login, |m| match m {
            ServerMessage::LoggedIn { name } => Some(name.clone()),
            _ => None,
        })
    }

    pub fn chat(&mut self, text: &str) {
        self.send(&ClientMessage::Chat { text: text.into() });
    }

    /// Waits for the next chat line (or a chat Deny, returned as `Err`).
    pub fn next_chat(&mut self) -> Result<ChatLine, String> {
        self.expect("a chat line", |m| match m {
            ServerMessage::Chat(line) => Some(Ok(line.clone())),
            ServerMessage::Denied {
                request: Request::Chat,
                reason,
            } => Some(Err(reason.clone())),
            _ => None,
        })
    }

    /// Sends `/LINE` and waits for its answer: a system line, or a refusal (`Err`).
    pub fn command(&mut self, line: &str) -> Result<String, String> {
        self.chat(&format!("/{line}"));
        self.expect(&format!("the answer to /{line}"), |m| match m {
            ServerMessage::System { text } => Some(Ok(text.clone())),
            ServerMessage::Denied {
                request: Request::Command | Request::Chat,
                reason,
            } => Some(Err(reason.clone())),
            _ => None,
        })
    }

    /// Waits for the next system line.
    pub fn next_system(&mut self) -> String {
        self.expect("a system line", |m| match m {
            ServerMessage::System { text } => Some(text.clone()),
            _ => None,
        })
    }

    /// Waits for the next whisper.
    pub fn next_whisper(&mut self) -> mmo::protocol::WhisperLine {
        self.expect("a whisper", |m| match m {
            ServerMessage::Whisper(line) => Some(line.clone()),
            _ => None,
        })
    }

    /// Waits for the kick notice; its reason.
    pub fn kicked(&mut self) -> String {
        self.expect("a kick", |m| match m {
            ServerMessage::Kicked { reason } => Some(reason.clone()),
            _ => None,
        })
    }

    /// This player's world id and where it appeared (the `Spawned` message, wherever it is among the
    /// received; waits for it).
    pub fn spawned(&mut self) -> (u32, mmo::protocol::Pos) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let found = self.received.iter().find_map(|m| match m {
                ServerMessage::Spawned { id, at } => Some((*id, *at)),
                _ => None,
            });
            if let Some(found) = found {
                return found;
            }
            assert!(Instant::now() < deadline, "no Spawned message");
            self.pump();
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The world id under which `name` came into this player's view (waits for it; whatever the
    /// expectations consumed).
    pub fn in_view(&mut self, name: &str) -> u32 {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let found = self.received.iter().find_map(|m| match m {
                ServerMessage::EnteredView { id, name: seen, .. } if seen == name => Some(*id),
                _ => None,
            });
            if let Some(id) = found {
                return id;
            }
            assert!(Instant::now() < deadline, "{name} never came into view");
            self.pump();
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Walks to `at` and waits until this player's own snapshots put it there.
    pub fn walk_to(&mut self, at: mmo::protocol::Pos) {
        let (id, _) = self.spawned();
        self.send(&ClientMessage::MoveTo {
            x: at.x(),
            y: at.y(),
        });
        self.wait_until_at(id, at);
    }

    /// Pumps until the snapshots put `id` at `at`.
    pub fn wait_until_at(&mut self, id: u32, at: mmo::protocol::Pos) {
        let deadline = Instant::now() + PATIENCE;
        while self.last_seen(id) != Some(at) {
            assert!(
                Instant::now() < deadline,
                "{id} never reached {at:?}; last seen at {:?}",
                self.last_seen(id)
            );
            self.pump();
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The newest position of player `id` in the snapshots received.
    pub fn last_seen(&self, id: u32) -> Option<mmo::protocol::Pos> {
        self.snapshots
            .iter()
            .flat_map(|snapshot| snapshot.positions.iter())
            .filter(|(who, _)| *who == id)
            .map(|(_, at)| *at)
            .next_back()
    }

    pub fn is_connected(&self) -> bool {
        self.net.is_connected()
    }

    pub fn is_disconnected(&self) -> bool {
        self.net.is_disconnected()
    }

    /// Why the connection ended (a WebSocket's close reason and code), if it has.
    pub fn disconnect_reason(&self) -> Option<String> {
        self.net.disconnect_reason()
    }

    /// The transport underneath.
    pub fn link(&mut self) -> &mut Link {
        &mut self.net
    }

    /// Pumps until the server closes the connection.
    pub fn expect_disconnected(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        while !self.net.is_disconnected() {
            assert!(
                Instant::now() < deadline,
                "still connected; received {:#?}",
                self.received
            );
            self.pump();
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// `GET path` over plain HTTP/1.1: the status code and the body.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, body.to_owned())
}

/// Pumps `clients` for `time` (each flushes at its own frame rate).
pub fn pump_for(clients: &mut [&mut TestClient], time: Duration) {
    let until = Instant::now() + time;
    while Instant::now() < until {
        for client in clients.iter_mut() {
            client.pump();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A gameplay system for tests that, when asked, holds the tick for a while, as a slow system would;
/// and reads the transport's drop counter. Add it with `TestServer::start_extended(tweak, move |app|
/// stall.install(app))`.
#[derive(bevy::prelude::Resource, Clone, Default)]
pub struct Stall {
    /// Milliseconds the next tick should take; 0 = none.
    next_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Payloads the transport dropped because the tick was late.
    queue_drops: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Stall {
    /// Adds the stalling system to a server's app.
    pub fn install(self, app: &mut bevy::prelude::App) {
        use bevy::prelude::*;
        app.insert_resource(self).add_systems(Update, stall);
    }

    /// Holds the next tick for `time`.
    pub fn next_tick(&self, time: Duration) {
        let ms = u64::try_from(time.as_millis()).unwrap_or(u64::MAX);
        self.next_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Payloads the transport dropped because the tick's queue was full, as of the last tick.
    pub fn queue_drops(&self) -> u64 {
        self.queue_drops.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn stall(
    stall: bevy::prelude::Res<Stall>,
    transport: bevy::prelude::Res<mmo::transport::Transport>,
) {
    use std::sync::atomic::Ordering;
    let ms = stall.next_ms.swap(0, Ordering::Relaxed);
    if ms > 0 {
        std::thread::sleep(Duration::from_millis(ms));
    }
    let (drops, _sent) = transport.netcode_counters();
    stall.queue_drops.store(drops, Ordering::Relaxed);
}

/// Waits until `GET path` at `addr` (a probe: `/healthz`, `/readyz`) answers `status` with `reason` in
/// its body; the body.
pub fn probe_until(addr: SocketAddr, path: &str, status: u16, reason: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (got, body) = http_get(addr, path);
        if got == status && body.contains(reason) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never answered {status} with {reason:?}; last {got} {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
