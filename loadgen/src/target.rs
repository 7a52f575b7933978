//! The system under test: an mmo server or the floor relay, started as a child process (release build,
//! temp database, free loopback port) or given by address; and its CPU time, memory and tick statistics
//! read from /proc and from its log.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// Which server a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Mmo,
    Floor,
}

/// A running server.
pub struct Target {
    pub kind: Kind,
    pub addr: SocketAddr,
    child: Option<Child>,
    pid: Option<u32>,
    logs: Arc<Mutex<Vec<String>>>,
    _dir: Option<tempfile::TempDir>,
}

/// Where the `mmo` server binary is: beside this executable (both built by `cargo build --release`).
pub fn default_server_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.with_file_name("mmo")
}

impl Target {
    /// Starts `mmo` on a free port with a temp database, reporting tick stats every second; with
    /// `lift_chat_limit`, players may chat at any rate.
    pub fn start_mmo(
        bin: &std::path::Path,
        tick_hz: u16,
        lift_chat_limit: bool,
    ) -> std::io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut command = Command::new(bin);
        command
            .args([
                "--bind",
                "127.0.0.1:0",
                "--stats-interval",
                "1",
                "--max-clients",
                "1024",
            ])
            .args([
                "--tick-hz",
                &tick_hz.to_string(),
                "--auth-queue",
                "2048",
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
        let mut target = Self::spawn(Kind::Mmo, command)?;
        target._dir = Some(dir);
        Ok(target)
    }

    /// Starts the floor relay (this executable's `relay` subcommand) on a free port.
    pub fn start_floor(tick_hz: u16) -> std::io::Result<Self> {
        let mut command = Command::new(std::env::current_exe()?);
        command.args([
            "relay",
            "--bind",
            "127.0.0.1:0",
            "--tick-hz",
            &tick_hz.to_string(),
        ]);
        Self::spawn(Kind::Floor, command)
    }

    /// A server someone else started: no CPU or memory figures unless `pid` is given.
    pub fn external(kind: Kind, addr: SocketAddr, pid: Option<u32>) -> Self {
        Self {
            kind,
            addr,
            child: None,
            pid,
            logs: Arc::default(),
            _dir: None,
        }
    }

    fn spawn(kind: Kind, mut command: Command) -> std::io::Result<Self> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let logs: Arc<Mutex<Vec<String>>> = Arc::default();
        let (addr_tx, addr_rx) = mpsc::channel();
        let streams: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("piped")),
            Box::new(child.stderr.take().expect("piped")),
        ];
        for stream in streams {
            let (logs, addr_tx) = (logs.clone(), addr_tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let line = strip_ansi(&line);
                    if line.contains("listening")
                        && let Some(addr) = field(&line, "addr")
                    {
                        let _ = addr_tx.send(addr.to_owned());
                    }
                    logs.lock().expect("log lock").push(line);
                }
            });
        }
        let addr = match addr_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr.parse().map_err(std::io::Error::other)?,
            Err(_) => {
                let _ = child.kill();
                let logs = logs.lock().expect("log lock").join("\n");
                return Err(std::io::Error::other(format!(
                    "{kind:?} did not start listening:\n{logs}"
                )));
            }
        };
        Ok(Self {
            kind,
            addr,
            pid: Some(child.id()),
            child: Some(child),
            logs,
            _dir: None,
        })
    }

    /// CPU time (user + system) the process has used so far.
    pub fn cpu_time(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid?)).ok()?;
        // Fields after the command name (which may contain spaces) start at field 3.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(Duration::from_secs_f64(
            ticks as f64 / clock_ticks_per_second(),
        ))
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

    /// What the server's packet gate saw since `mark`: (datagrams received, dropped, addresses blocked),
    /// summed over its tick stats lines.
    pub fn gate_stats_since(&self, mark: usize) -> Option<(u64, u64, u64)> {
        let logs = self.logs.lock().expect("log lock");
        let mut sums = None;
        for line in logs.iter().skip(mark).filter(|l| l.contains("tick stats")) {
            let get = |key| field(line, key).and_then(|v| v.parse::<u64>().ok());
            let (received, dropped, blocks) = sums.get_or_insert((0, 0, 0));
            *received += get("datagrams")?;
            *dropped += get("dropped")?;
            *blocks += get("blocks")?;
        }
        sums
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

/// The value of `key=value` in a log line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
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

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}
