//! The scenarios and the simulated players that run them. Each player is a real renet client with its
//! own UDP socket ([`mmo::client::NetClient`]); all are driven from one loop that receives on every
//! pass and lets each client flush at its own frame rate, as a game client would. In token mode a
//! player first registers and logs in over HTTPS on a login thread ([`crate::token`]), then connects
//! in netcode's secure mode; the server logs it in on connect; in token mode a player whose shard
//! goes logs in again with its session. `move` has a file of its own (`scenario/wander.rs`); the chaos
//! soak's players and checks are in [`soak`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime};

use mmo::client::NetClient;
use mmo::client::api::ApiClient;
use mmo::client::link::Link;
use mmo::client::ws::{WsClient, WsError, WsOptions};
use mmo::protocol::{ClientMessage, Pos, Request, ServerMessage};
use renet_netcode::ConnectToken;

use crate::report::{Report, quantile_ms};
use crate::target::{Access, Kind, Target, WsTarget};
use crate::token::{self, Auth, LoginResult};

pub mod soak;
mod wander;

pub use wander::{
    CROWD, FLOOR_POSITION_HZ, MIN_REGION_SIDE, VIEW_RADIUS, region_side, settle_time, wander,
};

/// What every scenario is given.
#[derive(Debug, Clone)]
pub struct Options {
    pub clients: usize,
    /// Chat lines per second per player.
    pub rate: f64,
    pub duration: Duration,
    /// Frames per second of each simulated client.
    pub client_hz: u32,
    /// `chat`: report acknowledged lines and their missing deliveries (`--per-line`).
    pub per_line: bool,
}

/// Longest a setup step (connecting and logging everyone in) may take: 4,000 players in-band are
/// 8,000 password hashes, about 220 s on two cores.
const SETUP_LIMIT: Duration = Duration::from_secs(600);
/// How long to wait for lines still in flight after the last one was sent.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
const PASSWORD: &str = "loadgen password";

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Now, in Unix ms (the clock the soak's logs use).
pub fn now_ms() -> u64 {
    now_us() / 1000
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Token mode: registering and logging in over HTTPS, on a login thread.
    Https,
    Connecting,
    Registering,
    LoggingIn,
    Ready,
}

/// One simulated player.
struct Sim {
    /// `None` until the HTTPS login has given a connect token (token mode), and while a WebSocket
    /// player's socket is being opened.
    net: Option<Link>,
    /// A WebSocket player: where it connects, and its socket while the handshake runs (on a thread:
    /// TLS and the upgrade block).
    ws: Option<Arc<WsTarget>>,
    opening: Option<mpsc::Receiver<Result<WsClient, WsError>>>,
    /// Token mode: where the HTTPS login's result arrives.
    https: Option<mpsc::Receiver<LoginResult>>,
    name: String,
    client_hz: u32,
    stage: Stage,
    /// When the current register/login request was sent (retries after "Server busy").
    asked_at: Instant,
    login_sent_at: Option<Instant>,
    logged_in_after: Option<Duration>,
    /// Secure mode: when the UDP connection with the connect token began, and how long it took from
    /// there to being logged in (on the floor: connected).
    connect_started: Option<Instant>,
    connected_after: Option<Duration>,
    created: Instant,
    /// Payload bytes of the messages received on the reliable channel (renet and netcode headers not
    /// counted); snapshots are counted where they are taken ([`NetClient::take_snapshots`]).
    reliable_bytes: u64,
    /// mmo: EnteredView and LeftView messages received.
    entered_view: u64,
    left_view: u64,
    /// mmo: where the server spawned this player.
    spawned_at: Option<Pos>,
    /// A request the server was too busy for, and when to send it again.
    retry: Option<(Instant, Request)>,
    /// "Server busy" answers so far.
    busy: u64,
    /// Token mode: the login servers (every shard's, for the soak), and this player's session once
    /// logged in, to reconnect when its shard goes (the session is dropped if that fails).
    apis: Vec<ApiClient>,
    session: Option<String>,
    /// Times this player lost its shard and logged in again with its session (token mode).
    reconnects: u64,
    /// The shard its connect token sends it to (token mode).
    shard: Option<std::net::SocketAddr>,
    /// Its times in play, for the soak's checks.
    plays: Vec<Play>,
    /// When it was told lines from other shards may be missing (Unix ms).
    missed_notices: Vec<u64>,
}

/// One stretch of a player's time in play on one shard, in Unix ms, as the player saw it: from its
/// LoggedIn to the moment it found the connection gone (`None`: still in play).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Play {
    pub shard: Option<std::net::SocketAddr>,
    pub from: u64,
    pub until: Option<u64>,
}

/// How long a player waits before asking again after "Server busy, try again" (a busy server's queue
/// is full: asking again at once only keeps it full).
const BUSY_BACKOFF: Duration = Duration::from_millis(250);
/// While players join, each pass over them takes at least this long (20 a second): the clients keep
/// their connections alive and hear their answers within a frame or three, and leave the cores to the
/// server's password hashing (a pass over 2,000 clients a thread takes about 20 ms of its own).
const JOIN_PASS: Duration = Duration::from_millis(50);

impl Sim {
    fn start(net: Option<NetClient>, name: String, client_hz: u32) -> Self {
        let now = Instant::now();
        Self {
            net: net.map(Link::from),
            ws: None,
            opening: None,
            https: None,
            name,
            client_hz,
            stage: Stage::Connecting,
            asked_at: now,
            login_sent_at: None,
            logged_in_after: None,
            connect_started: None,
            connected_after: None,
            created: now,
            reliable_bytes: 0,
            entered_view: 0,
            left_view: 0,
            spawned_at: None,
            retry: None,
            busy: 0,
            apis: Vec::new(),
            session: None,
            reconnects: 0,
            shard: None,
            plays: Vec::new(),
            missed_notices: Vec::new(),
        }
    }

    /// Players named `names` for `target`, on their way in: connecting (in-band), connecting with a
    /// token made here (secure floor), or logging in over HTTPS first (mmo in token mode).
    fn spawn_all(target: &Target, names: Vec<String>, client_hz: u32) -> Vec<Sim> {
        match &target.access {
            Access::InBand => names
                .into_iter()
                .enumerate()
                .map(|(i, name)| {
                    let net =
                        NetClient::connect(target.addr_for(i), client_hz).expect("a client socket");
                    Sim::start(Some(net), name, client_hz)
                })
                .collect(),
            Access::Key(key) => names
                .into_iter()
                .map(|name| {
                    let token = token::floor_token(target.addr, key, &name);
                    let mut sim = Sim::start(None, name, client_hz);
                    sim.connect_with(token);
                    sim
                })
                .collect(),
            Access::Https(api) => {
                let logins = token::start_logins(api, &names, PASSWORD);
                let ws = target.ws.clone().map(Arc::new);
                names
                    .into_iter()
                    .zip(logins)
                    .enumerate()
                    .map(|(i, (name, login))| {
                        let mut sim = Sim::start(None, name, client_hz);
                        (sim.https, sim.stage) = (Some(login), Stage::Https);
                        sim.apis = vec![api.clone()];
                        if i < target.ws_players {
                            sim.ws = ws.clone();
                        }
                        sim
                    })
                    .collect()
            }
        }
    }

    /// Starts the UDP connection in secure mode, or opens the WebSocket with the token.
    fn connect_with(&mut self, token: ConnectToken) {
        self.shard = mmo::client::api::token_server(&token);
        self.connect_started = Some(Instant::now());
        self.stage = Stage::Connecting;
        if let Some(ws) = self.ws.clone() {
            let (done, opening) = mpsc::channel();
            std::thread::Builder::new()
                .name("ws-open".into())
                .spawn(move || {
                    let options = WsOptions {
                        ca_pem: ws.ca_pem.as_deref(),
                        ..Default::default()
                    };
                    let _ = done.send(WsClient::connect_with_token(&ws.url, &token, options));
                })
                .expect("a thread to open a WebSocket");
            self.opening = Some(opening);
            return;
        }
        let net = NetClient::connect_with_token(token, self.client_hz).expect("a client socket");
        self.net = Some(net.into());
    }

    /// A WebSocket player: takes its socket once open. Whether it has a connection to pump.
    fn opened(&mut self) -> bool {
        let Some(opening) = &self.opening else {
            return self.net.is_some();
        };
        match opening.try_recv() {
            Ok(Ok(ws)) => {
                self.opening = None;
                self.net = Some(ws.into());
                true
            }
            Ok(Err(error)) => {
                // It stays out, counted as disconnected (as a player that cannot get back in).
                eprintln!("{} could not open its WebSocket: {error}", self.name);
                self.give_up();
                false
            }
            Err(mpsc::TryRecvError::Empty) => false,
            Err(mpsc::TryRecvError::Disconnected) => {
                eprintln!("{}'s WebSocket thread ended without an answer", self.name);
                self.give_up();
                false
            }
        }
    }

    /// Leaves the player out of the game for good: in play without a connection, which counts as
    /// disconnected.
    fn give_up(&mut self) {
        self.opening = None;
        self.https = None;
        self.session = None;
        self.net = None;
        self.stage = Stage::Ready;
    }

    /// The connection; a player past its HTTPS login has one.
    fn net(&mut self) -> &mut Link {
        self.net.as_mut().expect("the player is connected")
    }

    /// Whether its connection ended; a player in play without one is out too (it could not get back
    /// in after its shard went).
    fn is_disconnected(&self) -> bool {
        self.net
            .as_ref()
            .map_or(self.stage == Stage::Ready, Link::is_disconnected)
    }

    fn ask(&mut self, request: Request) {
        let (username, password) = (self.name.clone(), PASSWORD.to_owned());
        let message = match request {
            Request::Register => ClientMessage::Register { username, password },
            _ => ClientMessage::Login { username, password },
        };
        self.net().send(&message);
        self.asked_at = Instant::now();
        if request == Request::Login {
            self.login_sent_at = Some(self.asked_at);
        }
    }

    /// One pass: receive (chat lines go to `on_line` as (sent_us, line number, from_me)), advance the
    /// login steps.
    fn pump(&mut self, kind: Kind, mut on_line: impl FnMut(u64, u64, bool)) {
        // Token mode: a player whose shard went (its connection ended, or the shard has been silent
        // for `SERVER_SILENT_LIMIT`) logs in again with its session, as the client does; so does one
        // whose new shard does not answer.
        let gone = self.net.as_ref().is_some_and(|net| {
            net.is_disconnected() || net.silent_for() > mmo::protocol::SERVER_SILENT_LIMIT
        });
        let trying = self.stage == Stage::Ready || self.reconnects > 0;
        if trying
            && gone
            && let Some(session) = &self.session
            && !self.apis.is_empty()
        {
            let first = self.reconnects as usize + self.name.len();
            let lost = self.shard;
            self.https = Some(token::resume(
                &self.apis,
                first,
                &self.name,
                session.clone(),
                lost,
            ));
            self.net = None;
            self.stage = Stage::Https;
            self.reconnects += 1;
            if let Some(play) = self.plays.last_mut()
                && play.until.is_none()
            {
                play.until = Some(now_ms());
            }
        }
        if self.stage == Stage::Https {
            match self.https.as_ref().map(mpsc::Receiver::try_recv) {
                Some(Ok(Ok(login))) => {
                    self.https = None;
                    self.connect_with(login.token);
                    if self.login_sent_at.is_none() {
                        self.login_sent_at = Some(login.login_sent_at);
                    }
                    self.session = Some(login.session_token);
                }
                Some(Ok(Err(error))) if self.reconnects > 0 => {
                    // Could not get back in: it stays out, counted as disconnected.
                    eprintln!("{}", crate::error_chain(&error));
                    self.give_up();
                }
                Some(Ok(Err(error))) => panic!("{}", crate::error_chain(&error)),
                Some(Err(mpsc::TryRecvError::Disconnected)) | None => {
                    panic!("{}'s login thread ended without an answer", self.name)
                }
                Some(Err(mpsc::TryRecvError::Empty)) => return,
            }
        }
        if !self.opened() {
            return;
        }
        let mut answers = Vec::new();
        let name = &self.name;
        let (bytes_in, entered, left, spawned, missed) = (
            &mut self.reliable_bytes,
            &mut self.entered_view,
            &mut self.left_view,
            &mut self.spawned_at,
            &mut self.missed_notices,
        );
        let Some(net) = self.net.as_mut() else {
            return;
        };
        net.pump_raw(|bytes| {
            *bytes_in += bytes.len() as u64;
            match kind {
                Kind::Mmo => {
                    let Ok(message) = ServerMessage::decode(bytes) else {
                        return;
                    };
                    message.unbatch(|message| match message {
                        ServerMessage::Chat(line) => {
                            if let Some((sent, seq)) = stamp(&line.text) {
                                on_line(sent, seq, &line.sender == name);
                            }
                        }
                        ServerMessage::EnteredView { .. } => *entered += 1,
                        ServerMessage::LeftView { .. } => *left += 1,
                        ServerMessage::Spawned { at, .. } => *spawned = Some(at),
                        ServerMessage::System { text } if text == mmo::protocol::LINES_MISSED => {
                            missed.push(now_ms())
                        }
                        other => answers.push(other),
                    })
                }
                Kind::Floor => {
                    if let Ok(ClientMessage::Chat { text }) = ClientMessage::decode(bytes)
                        && let Some((sent, seq)) = stamp(&text)
                    {
                        on_line(sent, seq, false);
                    }
                }
            }
        });
        let secure = self.connect_started.is_some();
        if self.stage == Stage::Connecting && kind == Kind::Mmo && secure {
            // Token mode: the connect token is the login, and the server says LoggedIn as soon as the
            // connection is up, possibly in the very update that brings it up, before renet calls the
            // client connected (renet_netcode marks it so at the start of its next update).
            self.stage = Stage::LoggingIn;
        }
        if self.stage == Stage::Connecting && net.is_connected() {
            match kind {
                // One message, as a login is: after any exchange, renet keeps acknowledging every
                // packet (an ack packet per flush each way), so a floor whose clients never spoke
                // would skip the cost every mmo player pays.
                Kind::Floor => {
                    net.send(&ClientMessage::Chat {
                        text: format!("hello from {}", self.name),
                    });
                    self.ready();
                }
                Kind::Mmo => {
                    self.ask(Request::Register);
                    self.stage = Stage::Registering;
                }
            }
        }
        if let Some((at, request)) = self.retry
            && Instant::now() >= at
        {
            self.retry = None;
            self.ask(request);
        }
        if matches!(self.stage, Stage::Registering | Stage::LoggingIn) {
            for answer in answers {
                match answer {
                    ServerMessage::Registered { .. } => {
                        self.ask(Request::Login);
                        self.stage = Stage::LoggingIn;
                    }
                    ServerMessage::LoggedIn { .. } => self.ready(),
                    ServerMessage::Denied { request, reason }
                        if reason.contains("busy") && !secure =>
                    {
                        // Spread over the next BUSY_BACKOFF by a hash of the name, so the retries do
                        // not come back together.
                        let hash = self.name.bytes().fold(2_166_136_261u32, |h, b| {
                            (h ^ u32::from(b)).wrapping_mul(16_777_619)
                        });
                        let spread = BUSY_BACKOFF.mul_f64(f64::from(hash % 64) / 64.0);
                        self.busy += 1;
                        self.retry = Some((Instant::now() + BUSY_BACKOFF + spread, request));
                    }
                    ServerMessage::Denied {
                        request: Request::Register,
                        reason,
                    } if reason.contains("taken") && !secure => {
                        self.ask(Request::Login);
                        self.stage = Stage::LoggingIn;
                    }
                    ServerMessage::Denied { request, reason } => {
                        panic!("{} was refused {request:?}: {reason}", self.name)
                    }
                    _ => {}
                }
            }
        }
    }

    fn ready(&mut self) {
        self.stage = Stage::Ready;
        self.plays.push(Play {
            shard: self.shard,
            from: now_ms(),
            until: None,
        });
        if self.reconnects > 0 {
            // Back after its shard went: the join figures stay those of the first login.
            return;
        }
        self.logged_in_after = Some(match self.login_sent_at {
            Some(sent) => sent.elapsed(),
            None => self.created.elapsed(),
        });
        self.connected_after = self.connect_started.map(|started| started.elapsed());
    }

    /// Says line `seq`; false if the player is not in play (reconnecting after its shard went).
    fn say(&mut self, seq: u64) -> bool {
        if self.stage != Stage::Ready || self.is_disconnected() {
            return false;
        }
        let Some(net) = self.net.as_mut() else {
            return false;
        };
        let text = format!("{} {} {seq}", now_us(), self.name);
        net.send(&ClientMessage::Chat { text });
        true
    }
}

/// The send time and the line number a line carries as its first and last words.
fn stamp(text: &str) -> Option<(u64, u64)> {
    let sent = text.split(' ').next()?.parse().ok()?;
    let seq = text.rsplit(' ').next()?.parse().ok()?;
    Some((sent, seq))
}

/// Who is not ready yet, and at which step (for a setup that timed out).
fn stuck(sims: &[Sim]) -> String {
    let waiting: Vec<String> = sims
        .iter()
        .filter(|s| s.stage != Stage::Ready)
        .map(|s| format!("{} {:?}", s.name, s.stage))
        .collect();
    let shown = waiting
        .iter()
        .take(10)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    format!("{} of {} waiting: {shown}", waiting.len(), sims.len())
}

/// `{prefix}0`, `{prefix}1`, …
fn names(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}{i}")).collect()
}

fn idle_pass() {
    std::thread::sleep(Duration::from_micros(500));
}

/// Creates `count` players named `{prefix}{i}` and runs them until all are logged in (or, on the floor,
/// connected), on every core of the load generator.
fn join(target: &Target, prefix: &str, count: usize, client_hz: u32) -> Vec<Sim> {
    let mut sims = Sim::spawn_all(target, names(prefix, count), client_hz);
    let kind = target.kind;
    let joining = AtomicUsize::new(parts(sims.len()));
    in_parallel(&mut sims, |part| run_until_ready(part, kind, &joining));
    sims
}

/// Threads the load generator drives its players on: one per core, so that thousands of clients keep
/// their frame rate (what it costs is reported as `loadgen_cpu_core`).
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Players in each part of `count` split over the threads.
fn part_size(count: usize) -> usize {
    count.div_ceil(threads()).max(1)
}

/// How many parts [`in_parallel`] splits `count` players into.
fn parts(count: usize) -> usize {
    count.div_ceil(part_size(count))
}

/// Runs `work` on `sims` split in one part per thread, each on a thread of its own, until every part's
/// work returns.
fn in_parallel(sims: &mut [Sim], work: impl Fn(&mut [Sim]) + Sync) {
    let size = part_size(sims.len());
    let work = &work;
    std::thread::scope(|scope| {
        for part in sims.chunks_mut(size) {
            scope.spawn(move || work(part));
        }
    });
}

/// Pumps every player (nothing else) once a frame (`client_hz` passes a second, as a real client
/// reads its socket once a frame) until `until`, on every core.
fn pump_until(sims: &mut [Sim], kind: Kind, client_hz: u32, until: Instant) {
    let frame = Duration::from_secs_f64(1.0 / f64::from(client_hz.max(1)));
    in_parallel(sims, |part| {
        while Instant::now() < until {
            let pass_started = Instant::now();
            part.iter_mut().for_each(|s| s.pump(kind, |_, _, _| {}));
            idle_pass();
            std::thread::sleep(frame.saturating_sub(pass_started.elapsed()));
        }
    });
}

/// Pumps `sims` (one thread's part) until every part is logged in: `joining` counts the parts still
/// joining. A part that is in keeps being pumped while the others join: a client nobody pumps sends
/// nothing, and after netcode's timeout the server drops it (a part that waited two minutes for the
/// other lost its 2,000 players, and the server spent the meantime resending to them).
fn run_until_ready(sims: &mut [Sim], kind: Kind, joining: &AtomicUsize) {
    let deadline = Instant::now() + SETUP_LIMIT;
    let _stop_others = StopOthersOnPanic(joining);
    let mut in_ = false;
    loop {
        if !in_ && sims.iter().all(|s| s.stage == Stage::Ready) {
            in_ = true;
            let _ = joining.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_sub(1))
            });
        }
        if in_ && joining.load(Ordering::SeqCst) == 0 {
            return;
        }
        let pass_started = Instant::now();
        assert!(
            Instant::now() < deadline,
            "players did not all log in within {SETUP_LIMIT:?}: {}",
            stuck(sims)
        );
        for sim in sims.iter_mut() {
            sim.pump(kind, |_, _, _| {});
            if sim.is_disconnected() {
                panic!(
                    "{} was disconnected: {:?}",
                    sim.name,
                    sim.net.as_ref().and_then(Link::disconnect_reason)
                );
            }
        }
        idle_pass();
        std::thread::sleep(JOIN_PASS.saturating_sub(pass_started.elapsed()));
    }
}

/// Ends every part's wait when one part's thread panics (a player refused, a login that failed, the
/// setup limit): the setup failed, and the others would otherwise wait out the setup limit (10
/// minutes) before the panic is reported.
struct StopOthersOnPanic<'a>(&'a AtomicUsize);

impl Drop for StopOthersOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(0, Ordering::SeqCst);
        }
    }
}

/// Measures the server's CPU and the load generator's own, and reads the server's tick histogram,
/// between `start` and `finish`.
struct CpuMeter {
    cpu: Option<Duration>,
    own: Option<Duration>,
    at: Instant,
    ticks: Option<Vec<(f64, u64)>>,
}

impl CpuMeter {
    fn start(target: &Target) -> Self {
        Self {
            cpu: target.cpu_time(),
            own: own_cpu_time(),
            at: Instant::now(),
            ticks: target.tick_histogram(),
        }
    }

    fn cores(&self, target: &Target) -> Option<f64> {
        let used = target.cpu_time()?.checked_sub(self.cpu?)?;
        Some(used.as_secs_f64() / self.at.elapsed().as_secs_f64())
    }
}

fn base_report(name: &str, target: &Target, options: &Options) -> Report {
    Report {
        scenario: name.to_owned(),
        target: Some(target.kind),
        clients: options.clients,
        rate: options.rate,
        duration_s: options.duration.as_secs_f64(),
        client_hz: options.client_hz,
        auth: match target.access.auth() {
            Auth::InBand => None,
            auth => Some(auth),
        },
        ws_clients: (target.ws_players > 0).then_some(target.ws_players.min(options.clients)),
        ..Report::default()
    }
}

fn finish(report: &mut Report, target: &Target, meter: &CpuMeter, mark: usize) {
    report.server_cpu_core = meter.cores(target);
    if report.loadgen_cpu_core.is_none() {
        report.loadgen_cpu_core = meter
            .own
            .zip(own_cpu_time())
            .and_then(|(before, after)| after.checked_sub(before))
            .map(|used| used.as_secs_f64() / meter.at.elapsed().as_secs_f64());
    }
    if let Some((rss, peak)) = target.rss_mb() {
        report.server_rss_mb = Some(rss);
        report.server_peak_rss_mb = Some(peak);
    }
    if let Some((p50, p99, max)) = target.tick_stats_since(mark) {
        (report.tick_p50_ms, report.tick_p99_ms, report.tick_max_ms) =
            (Some(p50), Some(p99), Some(max));
    }
    // Over every tick of the measured phase, from the server's own histogram (where it has one): the
    // per-second lines above only say each second's p99, and the worst of those is not a p99.
    if let (Some(before), Some(after)) = (&meter.ticks, target.tick_histogram()) {
        let ms = |q| crate::target::histogram_quantile(before, &after, q).map(|s| s * 1000.0);
        if let (Some(p50), Some(p99)) = (ms(0.50), ms(0.99)) {
            (report.tick_p50_ms, report.tick_p99_ms) = (Some(p50), Some(p99));
            report.ticks = after
                .last()
                .map(|&(_, n)| n.saturating_sub(before.last().map_or(0, |&(_, m)| m)));
        }
    }
    if let Some((received, dropped, blocks, sent)) = target.gate_stats_since(mark) {
        (report.datagrams, report.dropped, report.blocks) =
            (Some(received), Some(dropped), Some(blocks));
        report.datagrams_sent = Some(sent);
        // Against `datagram-cost`: how many datagrams (in and out) each core of the server handled.
        let seconds = meter.at.elapsed().as_secs_f64();
        report.datagrams_per_core_s = report
            .server_cpu_core
            .filter(|&cores| cores > 0.0 && seconds > 0.0)
            .map(|cores| (received + sent) as f64 / seconds / cores);
    }
    if report.auth == Some(Auth::Token) {
        report.forged = target.forged_since(mark);
    }
}

/// What a chat phase sent and saw: lines, deliveries expected (each line at every other player), seen,
/// and their latencies in µs.
struct ChatTally {
    sent: u64,
    expected: u64,
    delivered: u64,
    /// Delivery latencies at UDP players, and at WebSocket players.
    latencies_us: Vec<u64>,
    ws_latencies_us: Vec<u64>,
    /// `overload`: each line's receivers, and the lines their senders heard back.
    book: Option<LineBook>,
}

/// Per line: how many of the other players heard it, and whether its sender heard it back (then the
/// server took it: it goes to every player in the same tick).
#[derive(Default)]
struct LineBook {
    heard: HashMap<u64, u64>,
    acknowledged: HashSet<u64>,
}

impl ChatTally {
    fn new(per_line: bool) -> Self {
        Self {
            sent: 0,
            expected: 0,
            delivered: 0,
            latencies_us: Vec::new(),
            ws_latencies_us: Vec::new(),
            book: per_line.then(LineBook::default),
        }
    }

    /// A player heard line `seq`, sent at `sent` (µs), its own if `mine`, over a WebSocket if `ws`.
    fn heard(&mut self, sent: u64, seq: u64, mine: bool, ws: bool) {
        if !mine {
            self.delivered += 1;
            let latency = now_us().saturating_sub(sent);
            if ws {
                self.ws_latencies_us.push(latency);
            } else {
                self.latencies_us.push(latency);
            }
        }
        if let Some(book) = &mut self.book {
            if mine {
                book.acknowledged.insert(seq);
            } else {
                *book.heard.entry(seq).or_default() += 1;
            }
        }
    }

    /// Acknowledged lines, and their deliveries missing among `listeners` players each.
    fn acknowledged(&self, listeners: u64) -> Option<(u64, u64)> {
        let book = self.book.as_ref()?;
        let missing = book
            .acknowledged
            .iter()
            .map(|seq| listeners.saturating_sub(book.heard.get(seq).copied().unwrap_or(0)))
            .sum();
        Some((book.acknowledged.len() as u64, missing))
    }

    /// Writes the chat figures into `report`.
    fn into_report(self, report: &mut Report) {
        (report.sent, report.expected, report.delivered) =
            (self.sent, self.expected, self.delivered);
        report.lost = self.expected.saturating_sub(self.delivered);
        let (mut udp, mut ws) = (self.latencies_us, self.ws_latencies_us);
        if !ws.is_empty() {
            udp.sort_unstable();
            ws.sort_unstable();
            report.by_transport = Some(crate::report::ByTransport {
                udp_p50_ms: quantile_ms(&udp, 0.50),
                udp_p99_ms: quantile_ms(&udp, 0.99),
                ws_p50_ms: quantile_ms(&ws, 0.50),
                ws_p99_ms: quantile_ms(&ws, 0.99),
            });
        }
        udp.append(&mut ws);
        report.set_latencies(udp);
    }
}

/// Sends lines from every sim at `rate` each (spread evenly) while `keep_going` says so, then waits
/// for the lines still in flight.
fn chat_between(
    sims: &mut [Sim],
    kind: Kind,
    rate: f64,
    mut tally: ChatTally,
    mut keep_going: impl FnMut(&mut [Sim]) -> bool,
) -> ChatTally {
    let listeners = sims.len().saturating_sub(1) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let start = Instant::now();
    let mut next: Vec<Instant> = (0..sims.len())
        .map(|i| start + interval.mul_f64(i as f64 / sims.len().max(1) as f64))
        .collect();
    let receive = |sims: &mut [Sim], tally: &mut ChatTally| {
        for sim in sims.iter_mut() {
            let ws = sim.ws.is_some();
            sim.pump(kind, |sent, seq, mine| tally.heard(sent, seq, mine, ws));
        }
    };
    while keep_going(sims) {
        receive(sims, &mut tally);
        let now = Instant::now();
        for (sim, next) in sims.iter_mut().zip(&mut next) {
            if now >= *next {
                if sim.say(tally.sent) {
                    tally.sent += 1;
                    tally.expected += listeners;
                }
                *next += interval;
            }
        }
        idle_pass();
    }
    let drain_until = Instant::now() + DRAIN_LIMIT;
    while tally.delivered < tally.expected && Instant::now() < drain_until {
        receive(sims, &mut tally);
        idle_pass();
    }
    tally
}

/// `chat`: N players log in, then each sends `rate` lines a second for `duration`.
pub fn chat(target: &Target, options: &Options) -> Report {
    let mut sims = join(target, "chat_", options.clients, options.client_hz);
    let (mark, meter) = (target.log_mark(), CpuMeter::start(target));
    let end = Instant::now() + options.duration;
    let tally = chat_between(
        &mut sims,
        target.kind,
        options.rate,
        ChatTally::new(options.per_line),
        |_| Instant::now() < end,
    );
    let mut report = base_report("chat", target, options);
    if target.kind == Kind::Mmo {
        report.reconnects = Some(sims.iter().map(|s| s.reconnects).sum());
    }
    let listeners = options.clients.saturating_sub(1) as u64;
    if let Some((lines, missing)) = tally.acknowledged(listeners) {
        (report.acknowledged, report.acknowledged_lost) = (Some(lines), Some(missing));
    }
    tally.into_report(&mut report);
    finish(&mut report, target, &meter, mark);
    report
}

/// `login-storm`: a pair already online chats at `rate` while N new accounts register and log in at
/// once (on the floor: connect at once). A login's latency runs from its login request to the
/// server's LoggedIn; in token mode that is the HTTPS login, then the UDP connection with its connect
/// token, whose own part (token handed to netcode → LoggedIn; on the floor → connected) is reported
/// as `connect_p50_ms`/`connect_p99_ms`.
pub fn login_storm(target: &Target, options: &Options) -> Report {
    let mut pair = join(target, "pair_", 2, options.client_hz);
    let (mark, meter) = (target.log_mark(), CpuMeter::start(target));
    let storm_start = Instant::now();
    let mut storm = Sim::spawn_all(target, names("storm_", options.clients), options.client_hz);
    let mut storm_done_at = None;
    let deadline = storm_start + SETUP_LIMIT;
    let storm_running = |_: &mut [Sim]| {
        for sim in storm.iter_mut() {
            sim.pump(target.kind, |_, _, _| {});
        }
        if storm_done_at.is_none() && storm.iter().all(|s| s.stage == Stage::Ready) {
            storm_done_at = Some(storm_start.elapsed());
        }
        storm_done_at.is_none() && Instant::now() < deadline
    };
    let tally = chat_between(
        &mut pair,
        target.kind,
        options.rate,
        ChatTally::new(false),
        storm_running,
    );
    let mut report = base_report("login-storm", target, options);
    tally.into_report(&mut report);
    let mut logins: Vec<u64> = storm
        .iter()
        .filter_map(|s| s.logged_in_after)
        .map(|d| d.as_micros() as u64)
        .collect();
    logins.sort_unstable();
    report.login_p50_ms = quantile_ms(&logins, 0.50);
    report.login_p99_ms = quantile_ms(&logins, 0.99);
    report.logins_per_s = storm_done_at.map(|d| options.clients as f64 / d.as_secs_f64());
    let mut connects: Vec<u64> = storm
        .iter()
        .filter_map(|s| s.connected_after)
        .map(|d| d.as_micros() as u64)
        .collect();
    connects.sort_unstable();
    report.connect_p50_ms = quantile_ms(&connects, 0.50);
    report.connect_p99_ms = quantile_ms(&connects, 0.99);
    finish(&mut report, target, &meter, mark);
    report
}

/// `overload`: N players chat at `rate` each, more than the machine carries, for `duration`, while
/// newcomers (a tenth as many, at least 10) try to register and log in; then the chat stops. It shows
/// whether the server loses an acknowledged line (one its sender heard back must reach every other
/// player, however late), how its memory grows, whether newcomers are told "Server busy" while the tick
/// is over budget, and how long after the load ends every newcomer is in.
pub fn overload(target: &Target, options: &Options) -> Report {
    let mut sims = join(target, "over_", options.clients, options.client_hz);
    let (mark, meter) = (target.log_mark(), CpuMeter::start(target));
    let newcomers = (options.clients / 10).max(10);
    let mut late = Sim::spawn_all(target, names("late_", newcomers), options.client_hz);
    let end = Instant::now() + options.duration;
    let mut tally = chat_between(
        &mut sims,
        target.kind,
        options.rate,
        ChatTally::new(true),
        |_| {
            for sim in late.iter_mut() {
                sim.pump(target.kind, |_, _, _| {});
            }
            Instant::now() < end
        },
    );
    let in_during_load = late.iter().filter(|s| s.stage == Stage::Ready).count();
    let busy_during_load: u64 = late.iter().map(|s| s.busy).sum();
    // Recovery: everyone keeps playing (lines still on their way count) until every newcomer is in.
    let deadline = Instant::now() + SETUP_LIMIT;
    while late.iter().any(|s| s.stage != Stage::Ready) && Instant::now() < deadline {
        for sim in sims.iter_mut() {
            let ws = sim.ws.is_some();
            sim.pump(target.kind, |sent, seq, mine| {
                tally.heard(sent, seq, mine, ws)
            });
        }
        for sim in late.iter_mut() {
            sim.pump(target.kind, |_, _, _| {});
        }
        idle_pass();
    }
    let recovered = late
        .iter()
        .all(|s| s.stage == Stage::Ready)
        .then(|| end.elapsed().as_secs_f64());
    let listeners = options.clients.saturating_sub(1) as u64;
    let acknowledged = tally.acknowledged(listeners);
    let mut report = base_report("overload", target, options);
    tally.into_report(&mut report);
    if let Some((lines, missing)) = acknowledged {
        (report.acknowledged, report.acknowledged_lost) = (Some(lines), Some(missing));
    }
    report.busy_answers = Some(busy_during_load);
    report.newcomers = Some(newcomers as u64);
    report.newcomers_in_during_load = Some(in_during_load as u64);
    report.recovered_after_s = recovered;
    finish(&mut report, target, &meter, mark);
    report
}

/// `idle`: N players online doing nothing for `duration`.
pub fn idle(target: &Target, options: &Options) -> Report {
    let mut sims = join(target, "idle_", options.clients, options.client_hz);
    // Let start-up work (joins, history) settle before measuring.
    pump_until(
        &mut sims,
        target.kind,
        options.client_hz,
        Instant::now() + Duration::from_secs(1),
    );
    let (mark, meter) = (target.log_mark(), CpuMeter::start(target));
    pump_until(
        &mut sims,
        target.kind,
        options.client_hz,
        Instant::now() + options.duration,
    );
    let mut report = base_report("idle", target, options);
    finish(&mut report, target, &meter, mark);
    report
}

/// A seeded xorshift generator: wandering needs to be cheap and repeatable, not good.
struct XorShift(u64);

impl XorShift {
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }
}

/// This process's own CPU time (user + system) so far.
fn own_cpu_time() -> Option<Duration> {
    crate::target::cpu_time_of("self")
}
