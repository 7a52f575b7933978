//! The load generator's command line: pick a scenario and a login mode, run it against mmo (and the
//! floor), print a table and one JSON line per run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use mmo::client::api::ApiClient;
use mmo_loadgen::abuse::{Abuse, AbuseKind};
use mmo_loadgen::error_chain;
use mmo_loadgen::relay::Relay;
use mmo_loadgen::report::Report;
use mmo_loadgen::scenario::{self, Options};
use mmo_loadgen::target::{Access, Kind, Target, WsTarget, default_server_bin};
use mmo_loadgen::token::{self, Auth};

/// Drives simulated players against an mmo server on loopback and reports latency, loss, CPU, memory.
#[derive(Parser, Debug)]
#[command(name = "mmo-loadgen", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// N players log in, then each says RATE lines a second for DURATION seconds.
    Chat(Args),
    /// A pair chats at RATE while N new accounts register and log in at once.
    LoginStorm(Args),
    /// N players online, doing nothing, for DURATION seconds.
    Idle(Args),
    /// N players chat at RATE each, more than the machine carries, for DURATION seconds, while a tenth
    /// as many newcomers try to log in; then the chat stops. Reports acknowledged lines lost (lines
    /// their sender heard back that another player never got), "Server busy" answers, peak memory, and
    /// the seconds until every newcomer is in after the load.
    Overload(Args),
    /// N players wander a region sized so each sees about 20 others, picking a new goal every 2-5 s;
    /// measures snapshot age and bytes received per player. On the floor: each sends its position 20
    /// times a second and the relay passes it to everyone (naive all-to-all).
    Move(Args),
    /// What one datagram costs a core alone: netcode's encryption of a BYTES-byte payload and one send
    /// on loopback, in a loop for SECONDS (the physical limit the scenario rows are set against).
    DatagramCost {
        /// Payload bytes a datagram carries (a chat line to one player is about 60, a snapshot of 20
        /// walkers about 200).
        #[arg(long, default_value_t = 100)]
        bytes: usize,
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
    /// The chaos soak's players (`scripts/chaos.sh`): N players in token mode log in over every
    /// shard's HTTPS endpoint, chat, whisper and walk for DURATION seconds, reconnecting by themselves
    /// when their shard goes; then their logs are checked against the driver's outages and the shards'
    /// logs. Fails if an acknowledged line missed a player in play on a live shard, a player was not
    /// back within 10 s, or an account was in play on two shards at once.
    Soak(SoakArgs),
    /// (internal) The floor: a bare renet relay.
    Relay {
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: SocketAddr,
        #[arg(long, default_value_t = 60)]
        tick_hz: u16,
        /// Run in netcode's secure mode with the private key in this file (32 bytes, or 64 hex digits).
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
}

#[derive(clap::Args, Debug, Clone)]
struct SoakArgs {
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u16).range(1..=8000))]
    clients: u16,
    /// Chat lines a second per player.
    #[arg(long, default_value_t = 0.2)]
    rate: f64,
    /// Seconds of play (then 10 s more of listening).
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    #[arg(long, default_value_t = 60)]
    client_hz: u32,
    /// A shard's HTTPS login endpoint (`https://127.0.0.1:PORT`); repeat for each shard.
    #[arg(long, required = true)]
    login_url: Vec<String>,
    /// The certificate to trust (the shards' self-signed `mmo-cert.pem`).
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// The driver's log of what it took down and brought back (`UNIX_MS ACTION PART` lines), read
    /// when the play ends.
    #[arg(long)]
    outages: Option<PathBuf>,
    /// A shard's JSON log (`--log-format json`), as UDP_ADDR=PATH; repeat for each shard.
    #[arg(long)]
    shard_log: Vec<String>,
    /// Writes the numbers of the acknowledged lines here, one a line (each line's text ends with its
    /// number), for the script to look for in the database.
    #[arg(long)]
    acknowledged: Option<PathBuf>,
}

#[derive(clap::Args, Debug, Clone)]
struct Args {
    /// Simulated players (at most 8,000: the server takes 8,192).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(0..=8000))]
    clients: u16,
    /// Chat lines per second per player (chat, and the pair in login-storm).
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Frames per second of each simulated client.
    #[arg(long, default_value_t = 60)]
    client_hz: u32,
    /// Server tick rate (for the servers this tool starts).
    #[arg(long, default_value_t = 60)]
    tick_hz: u16,
    /// Run against a server already listening here (loopback only) instead of starting one.
    #[arg(long)]
    server: Option<SocketAddr>,
    /// With --server: its process id, to read its CPU and memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// With --server (in-band): more shards of the same world (`mmo --bus`); players are spread over
    /// --server and these in turn, so lines cross between shards. Repeat for each.
    #[arg(long, requires = "server")]
    also_server: Vec<SocketAddr>,
    /// The mmo binary to start (default: `mmo` beside this executable).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Attack the server this way while the scenario runs, to see whether the players notice. The
    /// server then keeps its default chat limit (1 line a second, bursts of 5), which abuse tests.
    #[arg(long, value_enum)]
    abuse: Option<AbuseKind>,
    /// How hard: actions a second (datagrams, packets, lines, login attempts, garbage connections),
    /// or for `stall`, connections held open.
    #[arg(long, default_value_t = 1000)]
    abuse_rate: u32,
    /// Also run the same scenario against the floor relay, and print the ratio.
    #[arg(long)]
    floor: bool,
    /// chat: keep a book of every line, and report the lines the server acknowledged (their sender got
    /// them back) and how many of their deliveries are missing; lines it refused ("Chat is paused")
    /// are not acknowledged. Costs the generator a hash update per delivery.
    #[arg(long)]
    per_line: bool,
    /// How players log in; the server this tool starts runs in the same mode (`--auth token`), and so
    /// does the floor relay.
    #[arg(long, value_enum, default_value_t = Auth::InBand)]
    auth: Auth,
    /// With --server in token mode: its HTTPS login endpoint (`https://127.0.0.1:PORT`).
    #[arg(long, requires = "server")]
    login_url: Option<String>,
    /// With --login-url: the certificate to trust (a self-signed server's `cert.pem`).
    #[arg(long, requires = "login_url")]
    ca_cert: Option<PathBuf>,
    /// Token mode: of --clients, this many play over a WebSocket on the HTTPS port (as browsers do),
    /// the rest over UDP; all of them for a WebSocket-only run.
    #[arg(long, default_value_t = 0)]
    ws_clients: u16,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (name, args) = match cli.command {
        Command::Relay {
            bind,
            tick_hz,
            key_file,
        } => {
            let relay = match key_file.map(|path| token::read_key_file(&path)) {
                None => Relay::bind(bind),
                Some(Ok(key)) => Relay::bind_secure(bind, key),
                Some(Err(error)) => {
                    eprintln!("relay: {}", error_chain(&error));
                    return ExitCode::FAILURE;
                }
            };
            match relay {
                Ok(relay) => {
                    eprintln!("relay listening addr={}", relay.addr);
                    relay.run(tick_hz)
                }
                Err(error) => {
                    eprintln!("relay: {error}");
                    return ExitCode::FAILURE;
                }
            }
        }
        Command::DatagramCost { bytes, seconds } => {
            return match mmo_loadgen::cost::measure(bytes, seconds) {
                Ok(cost) => {
                    println!(
                        "datagram-cost: {} payload bytes ({} on the wire): {:.0} ns per encrypt + send, \
                         {:.0} datagrams/s and {:.1} MB/s per core",
                        cost.payload_bytes,
                        cost.datagram_bytes,
                        cost.ns_each,
                        cost.datagrams_per_core_s,
                        cost.bytes_per_core_s / 1e6
                    );
                    println!("{}", serde_json::to_string(&cost).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("datagram-cost: {error}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Soak(args) => return soak(&args),
        Command::Chat(args) => ("chat", args),
        Command::LoginStorm(args) => ("login-storm", args),
        Command::Idle(args) => ("idle", args),
        Command::Overload(args) => ("overload", args),
        Command::Move(args) => ("move", args),
    };
    if let Some(addr) = args.server
        && !addr.ip().is_loopback()
    {
        eprintln!("mmo-loadgen only targets loopback addresses; {addr} is not one");
        return ExitCode::FAILURE;
    }
    if let Some(url) = &args.login_url
        && !is_loopback_url(url)
    {
        eprintln!("mmo-loadgen only targets loopback addresses; {url} is not one");
        return ExitCode::FAILURE;
    }
    if args.auth == Auth::Token
        && args
            .abuse
            .is_some_and(|kind| !matches!(kind, AbuseKind::Junk | AbuseKind::JunkMany))
    {
        eprintln!(
            "in token mode only --abuse junk and junk-many run: the others log in or connect in-band, \
             which a token-mode server refuses"
        );
        return ExitCode::FAILURE;
    }
    if args.ws_clients > 0 && (args.auth != Auth::Token || args.ws_clients > args.clients) {
        eprintln!("--ws-clients needs --auth token and at most --clients players");
        return ExitCode::FAILURE;
    }
    let options = Options {
        clients: usize::from(args.clients),
        rate: args.rate,
        duration: Duration::from_secs_f64(args.duration.max(0.0)),
        client_hz: args.client_hz,
        per_line: args.per_line,
    };
    let run = |target: &Target| -> Report {
        let abuse = args
            .abuse
            .map(|kind| Abuse::start(kind, target.addr, args.abuse_rate));
        let mut report = match name {
            "chat" => scenario::chat(target, &options),
            "login-storm" => scenario::login_storm(target, &options),
            "move" => scenario::wander(target, &options),
            "overload" => scenario::overload(target, &options),
            _ => scenario::idle(target, &options),
        };
        if let Some(abuse) = abuse {
            report.abuse = args.abuse;
            report.abuse_rate = Some(args.abuse_rate);
            report.abuse_actions = Some(abuse.stop());
        }
        report
    };
    let mmo = match (args.server, args.auth) {
        (Some(addr), Auth::InBand) => {
            Target::external(Kind::Mmo, addr, args.server_pid).with_shards(args.also_server.clone())
        }
        (Some(addr), Auth::Token) => {
            let Some(url) = &args.login_url else {
                eprintln!(
                    "--server with --auth token needs --login-url (and --ca-cert if self-signed)"
                );
                return ExitCode::FAILURE;
            };
            let ws = WsTarget::new(url, args.ca_cert.as_deref());
            match ApiClient::with_ca_file(url, args.ca_cert.as_deref())
                .and_then(|api| Ok((api, ws?)))
            {
                Ok((api, ws)) => {
                    let mut target = Target::external(Kind::Mmo, addr, args.server_pid)
                        .with_access(Access::Https(api));
                    target.ws = Some(ws);
                    target
                }
                Err(error) => {
                    eprintln!("{error}");
                    return ExitCode::FAILURE;
                }
            }
        }
        (None, auth) => match Target::start_mmo(
            &args.server_bin.clone().unwrap_or_else(default_server_bin),
            args.tick_hz,
            args.abuse.is_none(),
            auth,
            server_capacity(args.clients),
        ) {
            Ok(target) => target,
            Err(error) => {
                eprintln!(
                    "cannot start the server (build it with `cargo build --release`): {}",
                    error_chain(&error)
                );
                return ExitCode::FAILURE;
            }
        },
    };
    let mut mmo = mmo;
    mmo.ws_players = usize::from(args.ws_clients);
    let mut reports = vec![run(&mmo)];
    drop(mmo);
    if args.floor {
        match Target::start_floor(args.tick_hz, args.auth) {
            Ok(floor) => reports.push(run(&floor)),
            Err(error) => {
                eprintln!("cannot start the floor relay: {}", error_chain(&error));
                return ExitCode::FAILURE;
            }
        }
    }
    if args.auth == Auth::Token {
        println!(
            "auth: token (mmo: HTTPS login, then netcode secure mode; floor: secure-mode relay)"
        );
    }
    if args.ws_clients > 0 {
        println!(
            "transport: {} of {} mmo players over a WebSocket on the HTTPS port, the rest over UDP",
            args.ws_clients, args.clients
        );
    }
    println!("{}", Report::HEADER);
    for report in &reports {
        println!("{}", report.row());
    }
    for report in &reports {
        if let Some(by) = report.by_transport {
            let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
            println!(
                "chat latency at UDP players: p50 {} ms  p99 {} ms; at WebSocket players: p50 {} ms  p99 {} ms",
                ms(by.udp_p50_ms),
                ms(by.udp_p99_ms),
                ms(by.ws_p50_ms),
                ms(by.ws_p99_ms)
            );
        }
        if let (Some(p50), Some(p99)) = (report.connect_p50_ms, report.connect_p99_ms) {
            let what = match report.target {
                Some(Kind::Mmo) => "mmo: UDP part of a login (connect token to LoggedIn)",
                _ => "floor: secure connect (connect token to connected)",
            };
            println!("{what}: p50 {p50:.2} ms  p99 {p99:.2} ms");
        }
        if report.scenario != "move"
            && let Some(cores) = report.loadgen_cpu_core
        {
            let ticks = report
                .ticks
                .map_or_else(|| "-".to_owned(), |n| n.to_string());
            println!(
                "{}: ticks measured {ticks}  loadgen_cpu_core {cores:.3}",
                report.scenario
            );
        }
        if report.scenario == "move" {
            let target = match report.target {
                Some(Kind::Mmo) => "mmo",
                _ => "floor",
            };
            let count = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
            let cores = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
            println!(
                "move {target}: region {:.0} units  snapshots/player/s {}  entered_view {}  left_view {}  \
                 disconnected {}  loadgen_cpu_core {}",
                report.region_side.unwrap_or_default(),
                report
                    .snapshots_per_player_per_s
                    .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}")),
                count(report.entered_view),
                count(report.left_view),
                count(report.disconnected),
                cores(report.loadgen_cpu_core),
            );
        }
    }
    if let [mmo, floor] = &reports[..] {
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "-".to_owned(),
        };
        println!(
            "mmo/floor: p99 {}  cpu {}  rss {}  bytes/player/s {}",
            ratio(mmo.p99_ms, floor.p99_ms),
            ratio(mmo.server_cpu_core, floor.server_cpu_core),
            ratio(mmo.server_rss_mb, floor.server_rss_mb),
            ratio(mmo.bytes_per_player_per_s, floor.bytes_per_player_per_s)
        );
    }
    for report in &reports {
        println!("{}", report.json());
    }
    // A player the server dropped is a failure; the floor's all-to-all dropping players under `move`
    // is what it measures.
    let dropped_players = |r: &Report| r.target == Some(Kind::Mmo) && r.disconnected > Some(0);
    if reports.iter().any(|r| r.lost > 0 || dropped_players(r)) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `mmo-loadgen soak`: plays, then checks and prints the verdict.
fn soak(args: &SoakArgs) -> ExitCode {
    use mmo_loadgen::scenario::soak;
    let fail = |what: String| {
        eprintln!("soak: {what}");
        ExitCode::FAILURE
    };
    let mut apis = Vec::new();
    for url in &args.login_url {
        if !is_loopback_url(url) {
            return fail(format!(
                "only loopback addresses are targets; {url} is not one"
            ));
        }
        match ApiClient::with_ca_file(url, args.ca_cert.as_deref()) {
            Ok(api) => apis.push(api),
            Err(error) => return fail(error_chain(&error)),
        }
    }
    let mut shard_logs = Vec::new();
    for spec in &args.shard_log {
        let parsed = spec
            .split_once('=')
            .and_then(|(addr, path)| Some((addr.parse::<SocketAddr>().ok()?, PathBuf::from(path))));
        match parsed {
            Some(log) => shard_logs.push(log),
            None => return fail(format!("--shard-log {spec}: expected UDP_ADDR=PATH")),
        }
    }
    let options = soak::SoakOptions {
        clients: usize::from(args.clients),
        rate: args.rate,
        duration: Duration::from_secs_f64(args.duration.max(0.0)),
        client_hz: args.client_hz,
        apis,
    };
    let run = soak::run(&options);
    let end = mmo_loadgen::scenario::now_ms();
    let read = |path: &PathBuf| {
        std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
    };
    let outages = match args.outages.as_ref().map(read).transpose() {
        Ok(text) => match soak::read_outages(text.as_deref().unwrap_or_default(), end) {
            Ok(outages) => outages,
            Err(error) => return fail(error.to_string()),
        },
        Err(error) => return fail(error),
    };
    let mut shards = Vec::new();
    for (shard, path) in &shard_logs {
        let kills: Vec<u64> = outages
            .iter()
            .filter(|o| o.part == soak::Part::Shard(*shard) && o.how == "kill")
            .map(|o| o.from)
            .collect();
        match read(path).map(|text| soak::read_sessions(*shard, &text, &kills, end)) {
            Ok(Ok(found)) => shards.push(found),
            Ok(Err(error)) => return fail(format!("{}: {error}", path.display())),
            Err(error) => return fail(error),
        }
    }
    if let Some(path) = &args.acknowledged {
        let numbers: String = run.acknowledged().map(|seq| format!("{seq}\n")).collect();
        if let Err(error) = std::fs::write(path, numbers) {
            return fail(format!("{}: {error}", path.display()));
        }
    }
    let verdict = soak::check(&run, &outages, &shards);
    let sessions: usize = shards.iter().map(|s| s.sessions.len()).sum();
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for outage in &outages {
        let part = match outage.part {
            soak::Part::Shard(_) => "shard",
            soak::Part::Redis => "redis",
            soak::Part::Postgres => "postgres",
        };
        *kinds.entry(format!("{} {part}", outage.how)).or_default() += 1;
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!(
        "soak: {} players, {:.0} s; outages: {} ({}); shard sessions read: {sessions}",
        args.clients,
        args.duration,
        outages.len(),
        kinds.join(", "),
    );
    println!(
        "lines {}  acknowledged {}  deliveries owed {}  missing {} (told of a gap {}, sender killed {})  \
         gap notices {}  whispers {}  moves {}",
        verdict.lines,
        verdict.acknowledged,
        verdict.deliveries_owed,
        verdict.deliveries_missing,
        verdict.missing_but_told,
        verdict.missing_sender_killed,
        verdict.gap_notices,
        run.whispers,
        run.moves
    );
    println!(
        "shard lost {} times  back within {} ms at worst  late (> 10 s) {}  not back {}  in play twice {}  \
         session lines left out of the shards' logs {}",
        verdict.losses,
        verdict.back_max_ms,
        verdict.back_late,
        verdict.never_back,
        verdict.in_play_twice,
        verdict.session_lines_left_out
    );
    for (cause, (losses, slowest)) in &verdict.losses_by_cause {
        println!("  lost to {cause}: {losses} times, back within {slowest} ms at worst");
    }
    for example in &verdict.examples {
        println!("  {example}");
    }
    println!("{}", serde_json::to_string(&verdict).unwrap_or_default());
    if verdict.passed() {
        println!("soak: passed");
        ExitCode::SUCCESS
    } else {
        println!("soak: FAILED");
        ExitCode::FAILURE
    }
}

/// Whether `url` (`https://HOST[:PORT][/…]`) names a loopback host.
fn is_loopback_url(url: &str) -> bool {
    let rest = url.strip_prefix("https://").unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The `--max-clients` of a server the load generator starts for `clients` players: netcode's 1,024 (the
/// server's own default, one lane per core) until they need more, then room for them and the abusers.
fn server_capacity(clients: u16) -> u16 {
    clients.saturating_add(64).clamp(1024, 8192)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_login_urls_are_targets() {
        for url in [
            "https://127.0.0.1:5443",
            "https://localhost:5443/",
            "https://[::1]:5443",
        ] {
            assert!(is_loopback_url(url), "{url}");
        }
        for url in [
            "https://example.com:5443",
            "https://10.0.0.1",
            "https://[2001:db8::1]:1",
        ] {
            assert!(!is_loopback_url(url), "{url}");
        }
    }

    #[test]
    fn auth_defaults_to_in_band_and_takes_token() {
        let cli = Cli::try_parse_from(["mmo-loadgen", "chat"]).unwrap();
        let Command::Chat(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.auth, Auth::InBand);
        let cli = Cli::try_parse_from(["mmo-loadgen", "login-storm", "--auth", "token", "--floor"])
            .unwrap();
        let Command::LoginStorm(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.auth, Auth::Token);
        assert!(
            Cli::try_parse_from(["mmo-loadgen", "chat", "--login-url", "https://127.0.0.1:1"])
                .is_err()
        );
    }
}
