//! Abuse beside a scenario: one thread that attacks the server the way a hostile script would while the
//! simulated players measure whether they notice. Each kind runs at `rate` actions a second (or, for
//! `stall`, keeps `rate` connections open) until stopped, and reports how many actions it took.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mmo::client::NetClient;
use mmo::protocol::{ClientMessage, ServerMessage};
use mmo::udp::connection_request;

/// What the abuser does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AbuseKind {
    /// Random 1,200-byte datagrams from one socket (RATE a second).
    Junk,
    /// Datagrams shaped like netcode connection requests for our protocol, with garbage tokens, from 64
    /// sockets (RATE a second in all): they pass every check but decryption.
    JunkMany,
    /// A logged-in player sending valid, encrypted netcode packets (RATE a second); when the server
    /// disconnects it, it logs in again from a new socket and goes on.
    PacketFlood,
    /// A logged-in player sending RATE chat lines a second; when kicked, it logs in again.
    ChatFlood,
    /// Connections trying wrong passwords for the players' names (RATE attempts a second); locked
    /// connections are replaced by new ones.
    Guess,
    /// RATE connections that never log in; each one closed is replaced.
    Stall,
    /// Connections that send a message of random bytes (RATE a second); each is disconnected and
    /// replaced.
    Garbage,
}

/// A running abuser; stops when dropped.
pub struct Abuse {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Abuse {
    /// Starts abusing `target` (a loopback address) with `kind` at `rate`.
    pub fn start(kind: AbuseKind, target: SocketAddr, rate: u32) -> Self {
        assert!(target.ip().is_loopback(), "abuse goes to loopback only");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("abuse-{kind:?}"))
            .spawn(move || {
                let abuser = Abuser {
                    target,
                    rate: f64::from(rate),
                    stop: flag,
                    started: Instant::now(),
                    done: 0,
                };
                abuser.run(kind)
            })
            .expect("an abuse thread");
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops; returns how many actions were taken (datagrams, lines, attempts or connections).
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or(0)
    }
}

impl Drop for Abuse {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

const PASSWORD: &str = "abuser password";
/// How long logging in may take before the abuser gives up on that connection.
const LOGIN_LIMIT: Duration = Duration::from_secs(30);

struct Abuser {
    target: SocketAddr,
    rate: f64,
    stop: Arc<AtomicBool>,
    started: Instant,
    done: u64,
}

impl Abuser {
    fn run(mut self, kind: AbuseKind) -> u64 {
        match kind {
            AbuseKind::Junk => self.junk(1, false),
            AbuseKind::JunkMany => self.junk(64, true),
            AbuseKind::PacketFlood => self.packet_flood(),
            AbuseKind::ChatFlood => self.chat_flood(),
            AbuseKind::Guess => self.guess(),
            AbuseKind::Stall => self.stall(),
            AbuseKind::Garbage => self.garbage(),
        }
        self.done
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Actions due by now at `rate`, minus those done.
    fn due(&self) -> u64 {
        let due = (self.started.elapsed().as_secs_f64() * self.rate) as u64;
        due.saturating_sub(self.done)
    }

    fn junk(&mut self, sockets: usize, shaped: bool) {
        let sockets: Vec<UdpSocket> = (0..sockets)
            .filter_map(|_| UdpSocket::bind("127.0.0.1:0").ok())
            .collect();
        // A shaped datagram keeps its header; only the sealed part (or all of junk) is noise.
        let (mut datagram, noise) = if shaped {
            let request = connection_request::lookalike(mmo::protocol::PROTOCOL_ID);
            (request, connection_request::SEALED.start)
        } else {
            (vec![0u8; 1200], 0)
        };
        let mut random = XorShift(0x9E37_79B9_7F4A_7C15);
        while !self.stopping() {
            for _ in 0..self.due() {
                random.fill(&mut datagram[noise..]);
                let socket = &sockets[self.done as usize % sockets.len()];
                let _ = socket.send_to(&datagram, self.target);
                self.done += 1;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn packet_flood(&mut self) {
        let mut session = 0;
        while !self.stopping() {
            session += 1;
            let Some(mut client) = self.log_in(&format!("flooder_{session}")) else {
                continue;
            };
            while !self.stopping() && !client.is_disconnected() {
                for _ in 0..self.due() {
                    client.flush();
                    self.done += 1;
                }
                pump(&mut client);
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    fn chat_flood(&mut self) {
        while !self.stopping() {
            let Some(mut client) = self.log_in("chat_flooder") else {
                continue;
            };
            while !self.stopping() && !client.is_disconnected() {
                for _ in 0..self.due() {
                    client.send(&ClientMessage::Chat {
                        text: format!("spam {}", self.done),
                    });
                    self.done += 1;
                }
                pump(&mut client);
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    fn guess(&mut self) {
        // Eight connections guess in turn, each waiting for its answer (the server takes one request per
        // connection at a time); a locked-out connection is replaced.
        let mut guessers: Vec<Option<(NetClient, bool)>> = (0..8).map(|_| None).collect();
        while !self.stopping() {
            let mut budget = self.due();
            for slot in guessers.iter_mut() {
                let (client, waiting) = slot.get_or_insert_with(|| {
                    (
                        NetClient::connect(self.target, 60).expect("a socket"),
                        false,
                    )
                });
                for message in pump(client) {
                    if let ServerMessage::Denied { reason, .. } = message {
                        *waiting = false;
                        if reason.contains("Too many") {
                            client.disconnect();
                        }
                    }
                }
                if client.is_disconnected() {
                    *slot = None;
                    continue;
                }
                if client.is_connected() && !*waiting && budget > 0 {
                    client.send(&ClientMessage::Login {
                        username: format!("chat_{}", self.done % 50),
                        password: format!("guess {}", self.done),
                    });
                    *waiting = true;
                    budget -= 1;
                    self.done += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn stall(&mut self) {
        let count = self.rate as usize;
        let mut stalled: Vec<NetClient> = Vec::new();
        while !self.stopping() {
            stalled.retain(|c| !c.is_disconnected());
            while stalled.len() < count {
                stalled.push(NetClient::connect(self.target, 60).expect("a socket"));
                self.done += 1;
            }
            for client in &mut stalled {
                pump(client);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn garbage(&mut self) {
        let mut random = XorShift(0x2545_F491_4F6C_DD1D);
        let mut open: Vec<NetClient> = Vec::new();
        while !self.stopping() {
            open.retain(|c| !c.is_disconnected());
            for _ in 0..self.due() {
                let mut client = NetClient::connect(self.target, 60).expect("a socket");
                let mut bytes = vec![0u8; 1 + (self.done as usize % 300)];
                random.fill(&mut bytes);
                // Queued now, sent as soon as the connection is up.
                client.send_raw(bytes);
                open.push(client);
                self.done += 1;
            }
            for client in &mut open {
                pump(client);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// A new connection that registers (or finds the name taken) and logs in as `name`.
    fn log_in(&self, name: &str) -> Option<NetClient> {
        let mut client = NetClient::connect(self.target, 60).ok()?;
        let deadline = Instant::now() + LOGIN_LIMIT;
        let mut asked = false;
        while !self.stopping() && Instant::now() < deadline && !client.is_disconnected() {
            for message in pump(&mut client) {
                match message {
                    ServerMessage::Registered { .. } | ServerMessage::Denied { .. } => {
                        client.send(&ClientMessage::Login {
                            username: name.to_owned(),
                            password: PASSWORD.to_owned(),
                        });
                    }
                    ServerMessage::LoggedIn { .. } => return Some(client),
                    _ => {}
                }
            }
            if client.is_connected() && !asked {
                client.send(&ClientMessage::Register {
                    username: name.to_owned(),
                    password: PASSWORD.to_owned(),
                });
                asked = true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        None
    }
}

/// One pass of a client's loop; returns what arrived (undecodable messages are dropped).
fn pump(client: &mut NetClient) -> Vec<ServerMessage> {
    let mut inbox = Vec::new();
    client.pump_raw(|bytes| {
        if let Ok(message) = ServerMessage::decode(bytes) {
            inbox.push(message);
        }
    });
    inbox
}

/// A seeded xorshift generator: junk needs to be cheap, not good.
struct XorShift(u64);

impl XorShift {
    fn fill(&mut self, bytes: &mut [u8]) {
        for byte in bytes {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *byte = self.0 as u8;
        }
    }
}
