//! Server configuration: command-line flags, each with an environment variable twin, and their checks;
//! and the configuration file that holds the same settings ([`mod@file`]).

pub mod file;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use bevy::prelude::Resource;
use clap::Parser;

/// What one netcode server holds (renetcode panics above it): one transport lane's clients.
pub const NETCODE_MAX_CLIENTS: u16 = 1024;
/// Clients a transport lane is planned for (at least one lane per this many of `--max-clients`). The
/// kernel gives each client to a lane by a hash of its address, unevenly: a lane that reached
/// [`NETCODE_MAX_CLIENTS`] would refuse a client while the others have room. At 768 a lane, the 8,192
/// clients of [`MAX_CLIENTS_LIMIT`] over 11 lanes are 745 a lane, and a lane would need 10 standard
/// deviations more to fill.
pub const LANE_PLAN: u16 = 768;
/// Most clients one process takes, over several lanes.
pub const MAX_CLIENTS_LIMIT: u16 = 8 * NETCODE_MAX_CLIENTS;

/// mmo: a headless, authoritative MMO server with accounts and chat.
///
/// Every flag can also be set by the environment variable shown beside it, or in the configuration file
/// (--config) under the flag's name: a flag wins over its variable, which wins over the file.
#[derive(Parser, Resource, Debug, Clone)]
#[command(name = "mmo", version, about, long_about = None)]
pub struct Config {
    /// A TOML file of settings named as the flags are (`max-clients = 1024`); see mmo.example.toml.
    /// An unknown setting or a bad value stops the start, naming the file's line.
    #[arg(long, env = "MMO_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Print the effective configuration (flags, environment, file and defaults, passwords hidden) as a
    /// configuration file, and exit.
    #[arg(long)]
    pub print_config: bool,

    /// UDP address to listen on. In-band login sends passwords over unsecure netcode, so keep it on
    /// loopback or a trusted LAN.
    #[arg(long, env = "MMO_BIND", default_value = "127.0.0.1:5000")]
    pub bind: SocketAddr,

    /// The account database, created and migrated at start if needed: an SQLite file, or (in a build
    /// with `--features postgres`) a PostgreSQL URL, postgres://USER:PASSWORD@HOST:PORT/NAME, which
    /// several shards share. The password never appears in logs.
    #[arg(
        long,
        env = "MMO_DB",
        default_value = "mmo.sqlite3",
        hide_env_values = true
    )]
    pub db: DbLocation,

    /// Copy every row of the database at --db into this one (an SQLite path or a PostgreSQL URL, new or
    /// without accounts), then exit: how a game moves from one machine's SQLite to PostgreSQL, and how
    /// to back up a running server (the copy is one consistent snapshot).
    #[arg(long, value_name = "DB")]
    pub copy_to: Option<DbLocation>,

    /// Most clients connected at once (logged in or not), 1 to 8192: past 1,024 (netcode's limit per
    /// lane) the transport runs at least a lane per 768 (the kernel spreads clients over lanes unevenly).
    #[arg(long, env = "MMO_MAX_CLIENTS", default_value_t = 1024,
          value_parser = clap::value_parser!(u16).range(1..=MAX_CLIENTS_LIMIT as i64))]
    pub max_clients: u16,

    /// Server ticks per second: how often it reads the network, runs game systems and sends.
    #[arg(long, env = "MMO_TICK_HZ", default_value_t = 60,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub tick_hz: u16,

    /// Threads that hash passwords and run account queries, off the tick.
    #[arg(long, env = "MMO_AUTH_WORKERS", default_value_t = default_workers(),
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub auth_workers: u16,

    /// Register/login requests that may wait for a worker; beyond it, "Server busy, try again".
    #[arg(long, env = "MMO_AUTH_QUEUE", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub auth_queue: u32,

    /// Chat lines kept in memory and sent to each player after login.
    #[arg(long, env = "MMO_CHAT_HISTORY", default_value_t = 50,
          value_parser = clap::value_parser!(u16).range(0..=1000))]
    pub chat_history: u16,

    /// Chat lines a player may send at once before the per-player limit applies.
    #[arg(long, env = "MMO_CHAT_BURST", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub chat_burst: u32,

    /// Chat lines a second a player may keep sending; faster lines are refused.
    #[arg(long, env = "MMO_CHAT_PER_SECOND", default_value_t = 1.0)]
    pub chat_per_second: f32,

    /// Days chat lines are kept in the database; older ones are deleted in small batches by the chat
    /// writer thread (at start, then every minute). 0 keeps everything. Fractions are allowed (0.5: 12 h).
    #[arg(long, env = "MMO_CHAT_RETENTION_DAYS", default_value_t = 30.0,
          value_parser = parse_non_negative)]
    pub chat_retention_days: f64,

    /// Seconds a player may keep going over the chat limit before being kicked.
    #[arg(long, env = "MMO_CHAT_KICK_AFTER", default_value_t = 10)]
    pub chat_kick_after: u32,

    /// Chat lines that may wait to be stored (while the database is slow or away). Past it, new lines
    /// are refused with "Chat is paused, the server cannot store it right now" until it drains: a line
    /// is never sent to anyone before it is queued for storage. ~200 bytes a line: 10 MB by default.
    #[arg(long, env = "MMO_CHAT_QUEUE", default_value_t = 50_000,
          value_parser = clap::value_parser!(u64).range(16..=10_000_000))]
    pub chat_queue: u64,

    /// World units a player walks per second.
    #[arg(long, env = "MMO_MOVE_SPEED", default_value_t = 40.0,
          value_parser = parse_positive)]
    pub move_speed: f32,

    /// World units a player sees around itself: players farther away are not sent to it.
    #[arg(long, env = "MMO_VIEW_RADIUS", default_value_t = 100.0,
          value_parser = parse_positive)]
    pub view_radius: f32,

    /// Other players a player is told of at most. In a crowd (a thousand players at the spawn point) the
    /// ones already in view stay, the nearest others fill the rest; it bounds what one player costs.
    #[arg(long, env = "MMO_MAX_IN_VIEW", default_value_t = 64,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub max_in_view: u16,

    /// World snapshots a second sent to each player (at most the tick rate).
    #[arg(long, env = "MMO_SNAPSHOT_HZ", default_value_t = 20,
          value_parser = clap::value_parser!(u16).range(1..=240))]
    pub snapshot_hz: u16,

    /// Non-player characters the server spawns around the spawn point: they wander while a player is
    /// near and answer /greet NAME. 0: none.
    #[arg(long, env = "MMO_NPCS", default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(0..=10_000))]
    pub npcs: u16,

    /// Threads (and sockets of the one port) that read, decrypt and send the network: one per core by
    /// default, and at least one per 768 of --max-clients past 1,024.
    #[arg(long, env = "MMO_TRANSPORT_THREADS",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub transport_threads: Option<u16>,

    /// Seconds a connection may stay without logging in before it is disconnected.
    #[arg(long, env = "MMO_LOGIN_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    pub login_timeout: u32,

    /// Datagrams a second a connected client may send (and at once). A game client sends one a frame;
    /// an address sending over twice this within a second is blocked and its connection closed.
    #[arg(long, env = "MMO_PACKET_RATE", default_value_t = 600,
          value_parser = clap::value_parser!(u32).range(30..=1_000_000))]
    pub packet_rate: u32,

    /// Seconds a flooding address stays blocked (every datagram from it is dropped unread).
    #[arg(long, env = "MMO_PACKET_BLOCK_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub packet_block_secs: u32,

    /// Decrypted packets and connection events the transport holds for a tick that is late (a long
    /// tick, a stalled one). Beyond it, packets are dropped as if lost on the wire (renet resends what
    /// mattered, and the "tick stats" line counts them as queue_drops); connection events always wait.
    #[arg(long, env = "MMO_TRANSPORT_QUEUE", default_value_t = 32_768,
          value_parser = clap::value_parser!(u32).range(16..=1_048_576))]
    pub transport_queue: u32,

    /// Allow in-band login (passwords over unsecure netcode) on a non-loopback address. Only for a LAN
    /// you trust: anyone on the path can read the passwords.
    #[arg(long, env = "MMO_ALLOW_INSECURE_REMOTE")]
    pub allow_insecure_remote: bool,

    /// A private server: only the account names on the allow-list (`allow NAME` at the console or by
    /// a moderator) may register and log in; others are told "This server is private".
    #[arg(long, env = "MMO_ALLOW_LIST")]
    pub allow_list: bool,

    /// Never refuse logins because the ticks overrun their period (by default, while most ticks of the
    /// last second overran, logins and registrations are answered "Server busy, try again"): for tests
    /// on a crowded machine.
    #[arg(long, env = "MMO_NO_SHEDDING")]
    pub no_shedding: bool,

    /// How players log in. `in-band`: over UDP in netcode's unsecure mode (loopback and trusted LANs only).
    /// `token`: over HTTPS (`--http-bind`), then encrypted UDP with a netcode connect token: safe to run
    /// on a public address.
    #[arg(long, env = "MMO_AUTH", value_enum, default_value_t = AuthMode::InBand)]
    pub auth: AuthMode,

    /// Token mode: the HTTPS login endpoint's address. Default: the UDP bind's IP, port 5443.
    #[arg(long, env = "MMO_HTTP_BIND")]
    pub http_bind: Option<SocketAddr>,

    /// Token mode: the TLS certificate chain (PEM). Without it (and --tls-key), a self-signed
    /// certificate is created beside the database on first start and reused afterwards.
    #[arg(long, env = "MMO_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Token mode: the TLS private key (PEM) of --tls-cert.
    #[arg(long, env = "MMO_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Token mode: the UDP address written into connect tokens, where clients send their packets.
    /// Needed when binding 0.0.0.0 or behind NAT. Default: the bind address.
    #[arg(long, env = "MMO_PUBLIC_ADDR")]
    pub public_addr: Option<SocketAddr>,

    /// Token mode: a file holding the 32-byte netcode private key (raw, or 64 hex digits), for several
    /// processes that must accept each other's tokens. Default: a random key per start.
    #[arg(long, env = "MMO_NETCODE_KEY_FILE")]
    pub netcode_key_file: Option<PathBuf>,

    /// Token mode: days a session token (the client's "Remember me") stays valid.
    #[arg(long, env = "MMO_SESSION_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub session_days: u32,

    /// Token mode: accounts one client IP address may register a minute (and at once) over HTTPS.
    #[arg(long, env = "MMO_REGISTRATIONS_PER_MINUTE", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub registrations_per_minute: u32,

    /// Token mode: logins (with a password or a session) one client IP address may make a minute (and
    /// at once) over HTTPS; past it, 429 with Retry-After. Each session may be resumed 6 times a minute.
    #[arg(long, env = "MMO_LOGINS_PER_MINUTE", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub logins_per_minute: u32,

    /// Token mode: WebSockets (browser players) one client IP address may hold open at once; past it,
    /// 429. Raise it behind a reverse proxy (every player then comes from the proxy's address).
    #[arg(long, env = "MMO_WS_PER_ADDRESS", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub ws_per_address: u32,

    /// Serve Prometheus metrics (OpenMetrics text) over plain HTTP at http://ADDR/metrics; off unless
    /// given. Bind it to loopback or a private network: it tells anyone who reaches it how busy you are.
    #[arg(long, env = "MMO_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,

    /// Join other shards through Redis (redis://HOST:PORT): chat, whispers, announcements and who is
    /// online span every shard sharing this bus and the account database; a login elsewhere kicks the
    /// session here. Off unless given.
    #[arg(long, env = "MMO_BUS", hide_env_values = true)]
    pub bus: Option<BusUrl>,

    /// This shard's name on the bus (default: random per start).
    #[arg(long, env = "MMO_SHARD")]
    pub shard: Option<String>,

    /// Entries the bus's Redis stream keeps (about: Redis trims in blocks). A shard away from the bus
    /// catches up on what was said meanwhile if it is still there; past it, its players are told that
    /// lines may be missing. At ~100 bytes an entry the default holds ~10 MB, minutes of a busy world.
    #[arg(long, env = "MMO_BUS_STREAM_LEN", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub bus_stream_len: u64,

    /// Events that may wait for the bus (while Redis is away). Once nine tenths are taken, chat lines are
    /// refused ("Chat is paused…") rather than said here but never elsewhere; the last tenth is kept for
    /// logins' claims, joins and leaves; past it, events are dropped and counted. Rosters are not
    /// queued while the bus is away (the next one goes out on return).
    #[arg(long, env = "MMO_BUS_QUEUE", default_value_t = 50_000,
          value_parser = clap::value_parser!(u64).range(100..=10_000_000))]
    pub bus_queue: u64,

    /// How the log (on stderr) is written: `text` for people, `json` for a log pipeline (one object a
    /// line, the same fields).
    #[arg(long, env = "MMO_LOG_FORMAT", value_enum, default_value_t = crate::logs::LogFormat::Text)]
    pub log_format: crate::logs::LogFormat,

    /// Seconds between "tick stats" log lines (tick duration p50/p99/max, connections, players); 0 = off.
    #[arg(long, env = "MMO_STATS_INTERVAL", default_value_t = 60)]
    pub stats_interval: u32,
}

/// How players log in: see [`Config::auth`].
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Register and Login messages over netcode's unsecure mode.
    #[default]
    InBand,
    /// HTTPS login, then netcode's secure mode with a connect token.
    Token,
}

/// The HTTPS port when `--http-bind` is not given.
pub const DEFAULT_HTTP_PORT: u16 = 5443;

fn default_workers() -> u16 {
    std::thread::available_parallelism().map_or(2, |n| n.get().min(8) as u16)
}

/// A finite number above 0 (and at most a world's width: a bigger one means "everything").
fn parse_positive(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value.min(crate::protocol::WORLD_SIZE)),
        _ => Err(format!("{text:?} is not a number above 0")),
    }
}

fn parse_non_negative(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        _ => Err(format!("{text:?} is not a number of 0 or more")),
    }
}

/// Where the accounts live (`--db`). Its `Display` and `Debug` never show a password, so a config or a
/// location can be logged as it is.
#[derive(Clone, PartialEq, Eq)]
pub enum DbLocation {
    /// An SQLite file (the default; nothing to install).
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (`postgres://` or `postgresql://`).
    Postgres(String),
}

impl FromStr for DbLocation {
    // Never fails: clap repeats a refused value in its error, and this one may hold a password. A URL
    // this build cannot open is refused when the database is opened, with the password redacted.
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(
            if text.starts_with("postgres://") || text.starts_with("postgresql://") {
                DbLocation::Postgres(text.to_owned())
            } else {
                DbLocation::Sqlite(PathBuf::from(text))
            },
        )
    }
}

impl From<PathBuf> for DbLocation {
    fn from(path: PathBuf) -> Self {
        DbLocation::Sqlite(path)
    }
}

impl From<&Path> for DbLocation {
    fn from(path: &Path) -> Self {
        DbLocation::Sqlite(path.to_owned())
    }
}

impl fmt::Display for DbLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbLocation::Sqlite(path) => write!(f, "{}", path.display()),
            DbLocation::Postgres(url) => f.write_str(&redacted(url)),
        }
    }
}

impl fmt::Debug for DbLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

/// The Redis URL of `--bus`, which may hold a password (`redis://:PASSWORD@HOST:PORT`). Like
/// [`DbLocation`], its `Display` and `Debug` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct BusUrl(String);

impl BusUrl {
    /// The URL as given, password included: for the Redis client only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for BusUrl {
    // Never fails, for the reason given at `DbLocation`'s: a bad URL is refused by the Redis client.
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(BusUrl(text.to_owned()))
    }
}

impl From<String> for BusUrl {
    fn from(url: String) -> Self {
        BusUrl(url)
    }
}

impl fmt::Display for BusUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redacted(&self.0))
    }
}

impl fmt::Debug for BusUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

/// A URL with its credentials (`user:password@`) replaced by `***`, for logs.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

impl Config {
    /// How long chat lines are kept; `None` keeps them forever (`--chat-retention-days 0`).
    pub fn chat_retention(&self) -> Option<Duration> {
        (self.chat_retention_days > 0.0)
            .then(|| Duration::from_secs_f64((self.chat_retention_days * 86_400.0).min(1e12)))
    }

    /// The defaults, with another address and database (what tests and embedders start from).
    pub fn new(bind: SocketAddr, db: impl Into<DbLocation>) -> Self {
        let mut config = Self::parse_from(["mmo"]);
        config.bind = bind;
        config.db = db.into();
        config
    }

    /// How many transport lanes to run: `--transport-threads` (default: the cores), and at least one per
    /// [`LANE_PLAN`] of `--max-clients` past netcode's 1,024.
    pub fn lanes(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let wanted = self.transport_threads.map_or(cores, usize::from);
        // One lane holds netcode's whole 1,024; past that, lanes share clients as the kernel spreads them.
        let needed = if self.max_clients <= NETCODE_MAX_CLIENTS {
            1
        } else {
            usize::from(self.max_clients).div_ceil(usize::from(LANE_PLAN))
        };
        wanted.max(needed).max(1)
    }

    /// `--shard`, else a random name (a restarted shard is a new one to the others).
    pub fn shard_name(&self) -> String {
        self.shard
            .clone()
            .unwrap_or_else(|| format!("shard-{:08x}", rand::random::<u32>()))
    }

    /// Token mode's HTTPS address: `--http-bind`, else the UDP bind's IP on [`DEFAULT_HTTP_PORT`].
    pub fn http_addr(&self) -> SocketAddr {
        self.http_bind
            .unwrap_or_else(|| SocketAddr::new(self.bind.ip(), DEFAULT_HTTP_PORT))
    }

    /// How long a session token lives.
    pub fn session_lifetime(&self) -> Duration {
        Duration::from_secs(u64::from(self.session_days) * 86_400)
    }

    /// The time between two ticks.
    pub fn tick(&self) -> Duration {
        Duration::from_secs_f64(1.0 / f64::from(self.tick_hz))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_the_logs() {
        assert_eq!(
            redacted("redis://:s3cret@10.0.0.5:6379/0"),
            "redis://***@10.0.0.5:6379/0"
        );
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        let db: DbLocation = "postgres://mmo:s3cret@db:5432/mmo".parse().unwrap();
        assert_eq!(
            db,
            DbLocation::Postgres("postgres://mmo:s3cret@db:5432/mmo".into())
        );
        assert_eq!(db.to_string(), "postgres://***@db:5432/mmo");
        assert!(!format!("{db:?}").contains("s3cret"));
        let config = Config::try_parse_from([
            "mmo",
            "--db",
            "postgresql://u:s3cret@db/mmo",
            "--bus",
            "redis://:s3cret@10.0.0.5:6379",
        ])
        .unwrap();
        assert!(!format!("{config:?}").contains("s3cret"));
        let bus = config.bus.unwrap();
        assert_eq!(bus.to_string(), "redis://***@10.0.0.5:6379");
        assert_eq!(bus.expose(), "redis://:s3cret@10.0.0.5:6379");
        assert_eq!(
            "data/mmo.sqlite3".parse::<DbLocation>().unwrap(),
            DbLocation::Sqlite("data/mmo.sqlite3".into())
        );
    }

    #[test]
    fn defaults_just_work() {
        let config = Config::try_parse_from(["mmo"]).unwrap();
        assert_eq!(config.bind, "127.0.0.1:5000".parse().unwrap());
        assert_eq!(config.db, DbLocation::Sqlite(PathBuf::from("mmo.sqlite3")));
        assert_eq!(config.max_clients, 1024);
        assert_eq!(config.tick_hz, 60);
        assert_eq!(config.auth, AuthMode::InBand);
        assert_eq!(config.http_addr(), "127.0.0.1:5443".parse().unwrap());
    }

    #[test]
    fn token_mode_flags_parse_and_pair() {
        let config = Config::try_parse_from([
            "mmo",
            "--auth",
            "token",
            "--bind",
            "0.0.0.0:5000",
            "--public-addr",
            "203.0.113.7:5000",
        ])
        .unwrap();
        assert_eq!(config.auth, AuthMode::Token);
        assert_eq!(config.http_addr(), "0.0.0.0:5443".parse().unwrap());
        assert_eq!(
            config.public_addr,
            Some("203.0.113.7:5000".parse().unwrap())
        );
        let err = Config::try_parse_from(["mmo", "--tls-cert", "c.pem"]).unwrap_err();
        assert!(err.to_string().contains("--tls-key"), "{err}");
    }

    #[test]
    fn max_clients_beyond_the_lanes_is_a_clear_error() {
        let err = Config::try_parse_from(["mmo", "--max-clients", "8193"]).unwrap_err();
        assert!(err.to_string().contains("1..=8192"), "{err}");
        assert!(Config::try_parse_from(["mmo", "--max-clients", "0"]).is_err());
    }

    #[test]
    fn the_transport_runs_a_lane_per_core_and_enough_for_its_clients() {
        let lanes = |flags: &[&str]| {
            let mut args = vec!["mmo"];
            args.extend(flags);
            Config::try_parse_from(args).unwrap().lanes()
        };
        assert_eq!(lanes(&["--transport-threads", "1"]), 1);
        assert_eq!(lanes(&["--transport-threads", "3"]), 3);
        assert_eq!(
            lanes(&["--transport-threads", "1", "--max-clients", "1024"]),
            1
        );
        assert_eq!(
            lanes(&["--transport-threads", "1", "--max-clients", "2000"]),
            3
        );
        assert_eq!(
            lanes(&["--max-clients", "8192", "--transport-threads", "2"]),
            11
        );
        assert!(lanes(&[]) >= 1);
    }
}
