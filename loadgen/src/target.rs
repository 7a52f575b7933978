//! The system under test: an mmo server or the floor relay, started as a child process (release build,
//! temp database, free loopback port) or given by address; how players get in ([`Access`]: in-band,
//! over mmo's HTTPS login endpoint, or with tokens for the secure floor); and its CPU time, memory and
//! tick statistics read from /proc and from its log.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use mmo::client::api::{ApiClient, ApiError};

use crate::token::{self, Auth, Key};

/// Which server a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Mmo,
    Floor,
}

/// How players get into a target.
#[derive(Clone)]
pub enum Access {
    /// Netcode's unsecure mode: on mmo, Register and Login messages over UDP; on the floor, straight in.
    InBand,
    /// mmo in token mode: register and log in at this HTTPS endpoint, then connect in secure mode.
    Https(ApiClient),
    /// The floor relay in secure mode: connect tokens made with its private key.
    Key(Key),
}

impl Access {
    /// The mode this access belongs to.
    pub fn auth(&self) -> Auth {
        match self {
            Access::InBand => Auth::InBand,
            Access::Https(_) | Access::Key(_) => Auth::Token,
        }
    }
}

/// Why a target did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("{kind:?} exited or did not say it was ready within {limit:?}:\n{logs}")]
    NotReady {
        kind: Kind,
        limit: Duration,
        logs: String,
    },
    #[error("{kind:?} logged an address that does not parse: {addr}")]
    BadAddress { kind: Kind, addr: String },
    #[error("cannot use the server's HTTPS login endpoint")]
    Api(#[from] ApiError),
}

/// The environment twin of mmo's `--registrations-per-minute` (HTTPS registrations one address may
/// make a minute, and at once).
pub const REGISTRATIONS_ENV: &str = "MMO_REGISTRATIONS_PER_MINUTE";
/// The same for `--logins-per-minute` (every simulated player logs in from 127.0.0.1).
pub const LOGINS_ENV: &str = "MMO_LOGINS_PER_MINUTE";
/// The same for `--ws-per-address` (every WebSocket player connects from 127.0.0.1).
pub const WS_PER_ADDRESS_ENV: &str = "MMO_WS_PER_ADDRESS";

/// World units a second the mmo this tool starts walks its players (`--move-speed`): fast, so that
/// `move`'s players spread over their region within seconds.
pub const MOVE_SPEED: f32 = 100.0;

/// How long a started server has to log that it listens.
const START_LIMIT: Duration = Duration::from_secs(60);

/// A running server.
pub struct Target {
    pub kind: Kind,
    /// Its UDP address.
    pub addr: SocketAddr,
    /// More shards of the same world (in-band players are spread over `addr` and these).
    pub shards: Vec<SocketAddr>,
    pub access: Access,
    /// Token mode: the WebSocket players' endpoint (the HTTPS login server's `/ws`).
    pub ws: Option<WsTarget>,
    /// Of each group of players, how many play over the WebSocket (the first ones; `--ws-clients`).
    pub ws_players: usize,
    child: Option<Child>,
    pid: Option<u32>,
    logs: Arc<Mutex<Vec<String>>>,
    _dir: Option<tempfile::TempDir>,
}

/// Where WebSocket players connect: the login server's URL and the certificate to trust.
#[derive(Debug, Clone)]
pub struct WsTarget {
    pub url: String,
    pub ca_pem: Option<Vec<u8>>,
}

impl WsTarget {
    pub fn new(url: &str, ca_cert: Option<&Path>) -> Result<Self, ApiError> {
        let ca_pem = ca_cert
            .map(|path| {
                std::fs::read(path).map_err(|error| ApiError::CaCert {
                    path: path.display().to_string(),
                    detail: error.to_string(),
                })
            })
            .transpose()?;
        Ok(Self {
            url: url.to_owned(),
            ca_pem,
        })
    }
}

/// Where the `mmo` server binary is: beside this executable (both built by `cargo build --release`).
pub fn default_server_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.with_file_name("mmo")
}

impl Target {
    /// Starts `mmo` on a free port with a temp database, reporting tick stats every second; with
    /// `lift_chat_limit`, players may chat at any rate. In token mode its HTTPS endpoint takes a free
    /// port too, with the self-signed certificate it makes beside the database.
    pub fn start_mmo(
        bin: &Path,
        tick_hz: u16,
        lift_chat_limit: bool,
        auth: Auth,
        max_clients: u16,
    ) -> Result<Self, StartError> {
        let dir = tempfile::tempdir()?;
        let mut command = Command::new(bin);
        command
            .args([
                "--bind",
                "127.0.0.1:0",
                "--stats-interval",
                "1",
                // The tick histogram the report's tick figures come from.
                "--metrics-bind",
                "127.0.0.1:0",
            ])
            .args([
                "--max-clients",
                &max_clients.to_string(),
                "--tick-hz",
                &tick_hz.to_string(),
                "--auth-queue",
                "2048",
                "--move-speed",
                &MOVE_SPEED.to_string(),
                // 1,000 players joining at once wait over a minute for argon2 (two hashes each, ~24 a
                // second on 2 cores); the 30 s login timeout is for connections that never try.
                "--login-timeout",
                "600",
                "--db",
            ])
            .arg(dir.path().join("loadgen.sqlite3"))
            .env("NO_COLOR", "1");
        if lift_chat_limit {
            // Scenarios set their own line rates (the login-storm pair says 10 a second): lift the
            // per-player chat limit, which is abuse protection, not capacity.
            command.args(["--chat-burst", "1000", "--chat-per-second", "1000"]);
        }
        if auth == Auth::Token {
            command.args(["--auth", "token", "--http-bind", "127.0.0.1:0"]);
            // Every simulated player registers from 127.0.0.1: lift the per-address registration
            // allowance (abuse protection, not capacity). Given as the env twin of
            // `--registrations-per-minute`, which a server without that flag ignores.
            command.env(REGISTRATIONS_ENV, "1000000");
            command.env(LOGINS_ENV, "1000000");
            command.env(WS_PER_ADDRESS_ENV, "1000000");
        }
        let mut target = Self::spawn(Kind::Mmo, command, auth == Auth::Token)?;
        target._dir = Some(dir);
        Ok(target)
    }

    /// Starts the floor relay (this executable's `relay` subcommand) on a free port; in token mode in
    /// netcode's secure mode, with a fresh key handed over in a temp file.
    pub fn start_floor(tick_hz: u16, auth: Auth) -> Result<Self, StartError> {
        let mut command = Command::new(std::env::current_exe()?);
        command.args([
            "relay",
            "--bind",
            "127.0.0.1:0",
            "--tick-hz",
            &tick_hz.to_string(),
        ]);
        let secure = match auth {
            Auth::InBand => None,
            Auth::Token => {
                let (dir, key) = (tempfile::tempdir()?, token::random_key());
                let path = dir.path().join("relay.key");
                token::write_key_file(&path, &key)?;
                command.arg("--key-file").arg(&path);
                Some((dir, key))
            }
        };
        let mut target = Self::spawn(Kind::Floor, command, false)?;
        if let Some((dir, key)) = secure {
            (target.access, target._dir) = (Access::Key(key), Some(dir));
        }
        Ok(target)
    }

    /// A server someone else started: no CPU or memory figures unless `pid` is given. Players get in
    /// in-band unless [`Target::with_access`] says otherwise.
    pub fn external(kind: Kind, addr: SocketAddr, pid: Option<u32>) -> Self {
        Self {
            kind,
            addr,
            shards: Vec::new(),
            access: Access::InBand,
            ws: None,
            ws_players: 0,
            child: None,
            pid,
            logs: Arc::default(),
            _dir: None,
        }
    }

    /// Other shards of the same world, for an [`external`](Target::external) server.
    pub fn with_shards(mut self, shards: Vec<SocketAddr>) -> Self {
        self.shards = shards;
        self
    }

    /// Player `index`'s server: `addr` and the shards in turn.
    pub fn addr_for(&self, index: usize) -> SocketAddr {
        match index % (self.shards.len() + 1) {
            0 => self.addr,
            i => self.shards[i - 1],
        }
    }

    /// How players get in (for an [`external`](Target::external) server in token mode).
    pub fn with_access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    /// Starts `command` and waits until it logs its UDP address and, with `https`, its login endpoint.
    fn spawn(kind: Kind, mut command: Command, https: bool) -> Result<Self, StartError> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let logs: Arc<Mutex<Vec<String>>> = Arc::default();
        let (ready_tx, ready_rx) = mpsc::channel();
        let streams: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("piped")),
            Box::new(child.stderr.take().expect("piped")),
        ];
        for stream in streams {
            let (logs, ready_tx) = (logs.clone(), ready_tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let line = strip_ansi(&line);
                    if let Some(ready) = Ready::parse(&line) {
                        let _ = ready_tx.send(ready);
                    }
                    logs.lock().expect("log lock").push(line);
                }
            });
        }
        // Once both streams close (the child exited), waiting ends at once.
        drop(ready_tx);
        let deadline = Instant::now() + START_LIMIT;
        let (mut addr, mut endpoint) = (None, None);
        while addr.is_none() || (https && endpoint.is_none()) {
            let wait = deadline.saturating_duration_since(Instant::now());
            match ready_rx.recv_timeout(wait) {
                Ok(Ready::Udp(text)) => addr = Some(text),
                Ok(Ready::Https { url, cert }) => endpoint = Some((url, cert)),
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let logs = logs.lock().expect("log lock").join("\n");
                    return Err(StartError::NotReady {
                        kind,
                        limit: START_LIMIT,
                        logs,
                    });
                }
            }
        }
        let mut target = Self {
            kind,
            addr: ([127, 0, 0, 1], 0).into(),
            shards: Vec::new(),
            access: Access::InBand,
            ws: None,
            ws_players: 0,
            pid: Some(child.id()),
            child: Some(child),
            logs,
            _dir: None,
        };
        // From here on, dropping the target ends the child.
        let addr = addr.expect("waited for");
        target.addr = addr
            .parse()
            .map_err(|_| StartError::BadAddress { kind, addr })?;
        if let Some((url, cert)) = endpoint {
            target.access = Access::Https(ApiClient::with_ca_file(&url, Some(&cert))?);
            target.ws = Some(WsTarget::new(&url, Some(&cert))?);
        }
        Ok(target)
    }

    /// CPU time (user + system) the process has used so far.
    pub fn cpu_time(&self) -> Option<Duration> {
        cpu_time_of(&self.pid?.to_string())
    }

    /// (current, peak) resident memory in MiB.
    pub fn rss_mb(&self) -> Option<(f64, f64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid?)).ok()?;
        let kb = |key: &str| {
            status.lines().find_map(|l| {
                l.strip_prefix(key)?
                    .split_whitespace()
                    .next()?
                    .parse::<f64>()
                    .ok()
            })
        };
        Some((kb("VmRSS:")? / 1024.0, kb("VmHWM:")? / 1024.0))
    }

    /// The server's tick histogram now: cumulative counts by upper bound (seconds), the last `+Inf`;
    /// `None` without its metrics (the floor, or a server started elsewhere).
    pub fn tick_histogram(&self) -> Option<Vec<(f64, u64)>> {
        let url = {
            let logs = self.logs.lock().expect("log lock");
            logs.iter()
                .find(|l| l.contains("metrics endpoint ready"))
                .and_then(|l| field(l, "url"))?
                .to_owned()
        };
        let addr = url.strip_prefix("http://")?.strip_suffix("/metrics")?;
        let text = http_get(addr, "/metrics")?;
        let buckets: Vec<(f64, u64)> = text
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("mmo_tick_seconds_bucket{le=\"")?;
                let (bound, count) = rest.split_once("\"} ")?;
                let bound = match bound {
                    "+Inf" => f64::INFINITY,
                    bound => bound.parse().ok()?,
                };
                Some((bound, count.trim().parse().ok()?))
            })
            .collect();
        (!buckets.is_empty()).then_some(buckets)
    }

    /// How many log lines there are so far (a mark for [`Target::tick_stats_since`]).
    pub fn log_mark(&self) -> usize {
        self.logs.lock().expect("log lock").len()
    }

    /// The server's own tick durations since `mark`: (median of the per-second p50s, worst p99, worst
    /// max), in milliseconds.
    pub fn tick_stats_since(&self, mark: usize) -> Option<(f64, f64, f64)> {
        let logs = self.logs.lock().expect("log lock");
        let mut p50s = Vec::new();
        let (mut p99, mut max) = (0u64, 0u64);
        for line in logs.iter().skip(mark).filter(|l| l.contains("tick stats")) {
            let get = |key| field(line, key).and_then(|v| v.parse::<u64>().ok());
            p50s.push(get("p50_us")?);
            p99 = p99.max(get("p99_us")?);
            max = max.max(get("max_us")?);
        }
        if p50s.is_empty() {
            return None;
        }
        p50s.sort_unstable();
        Some((
            p50s[p50s.len() / 2] as f64 / 1000.0,
            p99 as f64 / 1000.0,
            max as f64 / 1000.0,
        ))
    }

    /// What the server's packet gate saw since `mark`: (datagrams received, dropped, addresses blocked,
    /// datagrams sent), summed over its tick stats lines.
    pub fn gate_stats_since(&self, mark: usize) -> Option<(u64, u64, u64, u64)> {
        let logs = self.logs.lock().expect("log lock");
        let mut sums = None;
        for line in logs.iter().skip(mark).filter(|l| l.contains("tick stats")) {
            let get = |key| field(line, key).and_then(|v| v.parse::<u64>().ok());
            let (received, dropped, blocks, sent) = sums.get_or_insert((0, 0, 0, 0));
            *received += get("datagrams")?;
            *dropped += get("dropped")?;
            *blocks += get("blocks")?;
            *sent += get("sent").unwrap_or(0);
        }
        sums
    }

    /// Token mode: connection requests the gate found not sealed with the server's key since `mark`
    /// (within `dropped`), summed over its tick stats lines; `None` if the server does not count them.
    pub fn forged_since(&self, mark: usize) -> Option<u64> {
        let logs = self.logs.lock().expect("log lock");
        let mut sum = None;
        for line in logs.iter().skip(mark).filter(|l| l.contains("tick stats")) {
            let forged = field(line, "forged").and_then(|v| v.parse::<u64>().ok())?;
            *sum.get_or_insert(0) += forged;
        }
        sum
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A log line that says the server is ready, in part.
#[derive(Debug, PartialEq, Eq)]
enum Ready {
    /// "listening" with `addr=`: the UDP socket.
    Udp(String),
    /// "https login endpoint ready" with `url=` and `cert=` (token mode).
    Https { url: String, cert: PathBuf },
}

impl Ready {
    fn parse(line: &str) -> Option<Self> {
        if line.contains("https login endpoint ready") {
            return Some(Ready::Https {
                url: field(line, "url")?.to_owned(),
                cert: PathBuf::from(field(line, "cert")?),
            });
        }
        if line.contains("listening") {
            return Some(Ready::Udp(field(line, "addr")?.to_owned()));
        }
        None
    }
}

/// `GET path` from a plain-HTTP server at `addr`: the body of a 200.
fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// The `q`-quantile (0..=1) of what a histogram counted between two readings of it (cumulative counts by
/// upper bound), interpolated linearly within its bucket; in the bounds' unit.
pub fn histogram_quantile(before: &[(f64, u64)], after: &[(f64, u64)], q: f64) -> Option<f64> {
    let counts: Vec<(f64, u64)> = after
        .iter()
        .map(|&(bound, count)| {
            let earlier = before
                .iter()
                .find(|(b, _)| *b == bound)
                .map_or(0, |&(_, c)| c);
            (bound, count.saturating_sub(earlier))
        })
        .collect();
    let total = counts.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).max(1.0);
    let (mut lower, mut below) = (0.0, 0u64);
    for &(bound, count) in &counts {
        if count as f64 >= rank {
            if bound.is_infinite() {
                return Some(lower);
            }
            let within = (count - below).max(1) as f64;
            return Some(lower + (bound - lower) * (rank - below as f64) / within);
        }
        (lower, below) = (bound, count);
    }
    None
}

/// The value of `key=value` in a log line (without the quotes a `Debug` field has).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
        .map(|value| value.trim_matches('"'))
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            out.push(c);
        }
    }
    out
}

/// CPU time (user + system) the process `/proc/{pid}` (a number, or `self`) has used so far.
pub fn cpu_time_of(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(
        ticks as f64 / clock_ticks_per_second(),
    ))
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_what_the_histogram_counted_between_two_readings() {
        let before = [(0.001, 10), (0.002, 10), (0.004, 10), (f64::INFINITY, 10)];
        // 100 more ticks: 50 under 1 ms, 40 from 1 to 2 ms, 9 from 2 to 4 ms, 1 past 4 ms.
        let after = [
            (0.001, 60),
            (0.002, 100),
            (0.004, 109),
            (f64::INFINITY, 110),
        ];
        let q = |q| histogram_quantile(&before, &after, q).unwrap();
        assert!((q(0.5) - 0.001).abs() < 1e-9, "{}", q(0.5));
        assert!((q(0.9) - 0.002).abs() < 1e-9, "{}", q(0.9));
        assert!(q(0.95) > 0.002 && q(0.95) < 0.004);
        assert_eq!(q(1.0), 0.004, "past the last bound: the last bound");
        assert_eq!(
            histogram_quantile(&after, &after, 0.5),
            None,
            "nothing counted"
        );
    }

    #[test]
    fn the_ready_lines_give_the_udp_address_and_the_login_endpoint() {
        let udp = "2026-11-21T10:00:00.000000Z  INFO mmo::server: listening addr=127.0.0.1:40000 \
                   db=/tmp/x/loadgen.sqlite3 tick_hz=60 max_clients=1024";
        assert_eq!(
            Ready::parse(udp),
            Some(Ready::Udp("127.0.0.1:40000".into()))
        );
        let https = "2026-11-21T10:00:00.000000Z  INFO mmo::http: https login endpoint ready \
                     url=https://127.0.0.1:40001 cert=\"/tmp/x/cert.pem\" sha256=AB:CD";
        assert_eq!(
            Ready::parse(https),
            Some(Ready::Https {
                url: "https://127.0.0.1:40001".into(),
                cert: "/tmp/x/cert.pem".into(),
            })
        );
        assert_eq!(Ready::parse("tick stats p50_us=10"), None);
        let relay = "relay listening addr=127.0.0.1:40002";
        assert_eq!(
            Ready::parse(relay),
            Some(Ready::Udp("127.0.0.1:40002".into()))
        );
    }
}
