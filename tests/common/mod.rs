//! Test fixtures: a real server app on `127.0.0.1:0` with a temp database, and a real renet client over
//! UDP that speaks `mmo::protocol`. Nothing is mocked.

#![allow(dead_code)] // each test binary uses its own subset

use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use mmo::config::Config;
use mmo::protocol::{self, CHANNEL, ChatLine, ClientMessage, Request, ServerMessage};
use mmo::server::ServerHandle;
use renet::RenetClient;
use renet_netcode::{ClientAuthentication, NetcodeClientTransport};

/// How long any single expectation may take before the test fails (generous: CI is 2 shared cores).
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A server on a free loopback port with a database in a temp dir, stopped when dropped.
pub struct TestServer {
    handle: Option<ServerHandle>,
    pub addr: SocketAddr,
    pub db: PathBuf,
    _dir: tempfile::TempDir,
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
    pub fn start() -> Self {
        init_logging();
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("mmo.sqlite3");
        let handle = ServerHandle::spawn(config(&db)).expect("server starts");
        Self {
            addr: handle.addr(),
            handle: Some(handle),
            db,
            _dir: dir,
        }
    }

    /// Stops the server gracefully, then starts a new one on the same database (on a new port).
    pub fn restart(&mut self) {
        self.stop();
        let handle = ServerHandle::spawn(config(&self.db)).expect("server restarts");
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

fn config(db: &std::path::Path) -> Config {
    Config::new("127.0.0.1:0".parse().unwrap(), db)
}

pub const PASSWORD: &str = "correct horse battery";

/// A client id nobody else uses (netcode silently ignores a second connection with a connected id).
pub fn random_client_id() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    hasher.finish()
}

/// How often a client sends its packets when it has nothing new to say: a game client's frame rate.
/// (renet queues an ack packet on every flush, so flushing on every pump would flood the server.)
const FRAME: Duration = Duration::from_millis(16);

/// A real renet/netcode client over UDP, pumped by hand like a game client's frame loop.
pub struct TestClient {
    client: RenetClient,
    transport: NetcodeClientTransport,
    last_update: Instant,
    last_flush: Instant,
    flush_now: bool,
    /// Every message received, in order.
    pub received: Vec<ServerMessage>,
    /// How many of `received` the expectations have consumed.
    read: usize,
}

impl TestClient {
    pub fn connect(addr: SocketAddr) -> Self {
        let mut client = Self::start_connecting(addr);
        let deadline = Instant::now() + PATIENCE;
        while !client.client.is_connected() {
            assert!(Instant::now() < deadline, "could not connect to {addr}");
            assert!(
                !client.client.is_disconnected(),
                "refused: {:?}",
                client.transport.disconnect_reason()
            );
            client.pump();
            std::thread::sleep(Duration::from_millis(1));
        }
        client
    }

    /// Creates the client without waiting for the connection.
    pub fn start_connecting(addr: SocketAddr) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("client socket");
        let authentication = ClientAuthentication::Unsecure {
            protocol_id: protocol::PROTOCOL_ID,
            client_id: random_client_id(),
            server_addr: addr,
            user_data: None,
        };
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap();
        let transport =
            NetcodeClientTransport::new(now, authentication, socket).expect("transport");
        Self {
            client: RenetClient::new(protocol::connection_config()),
            transport,
            last_update: Instant::now(),
            last_flush: Instant::now(),
            flush_now: true,
            received: Vec::new(),
            read: 0,
        }
    }

    /// Receives and decodes whatever arrived; sends at the frame rate, or at once after a new message.
    pub fn pump(&mut self) {
        let now = Instant::now();
        let delta = now - self.last_update;
        self.last_update = now;
        self.client.update(delta);
        let _ = self.transport.update(delta, &mut self.client);
        while let Some(bytes) = self.client.receive_message(CHANNEL) {
            let message =
                ServerMessage::decode(&bytes).expect("the server sent an undecodable message");
            self.received.push(message);
        }
        if self.flush_now || now - self.last_flush >= FRAME {
            let _ = self.transport.send_packets(&mut self.client);
            self.last_flush = now;
            self.flush_now = false;
        }
    }

    pub fn send(&mut self, message: &ClientMessage) {
        self.send_raw(message.encode());
    }

    /// Sends arbitrary bytes as one message on the protocol's channel.
    pub fn send_raw(&mut self, bytes: Vec<u8>) {
        self.client.send_message(CHANNEL, bytes);
        self.flush_now = true;
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
                self.transport.disconnect_reason()
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

    pub fn is_connected(&self) -> bool {
        self.client.is_connected()
    }

    /// Pumps until the server closes the connection.
    pub fn expect_disconnected(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        while !self.client.is_disconnected() {
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

/// Closing the game: netcode sends its disconnect packet, so the server sees the player leave at once.
impl Drop for TestClient {
    fn drop(&mut self) {
        self.transport.disconnect();
    }
}
