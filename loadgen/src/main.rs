//! The load generator's command line: pick a scenario, run it against mmo (and the floor), print a
//! table and one JSON line per run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use mmo_loadgen::abuse::{Abuse, AbuseKind};
use mmo_loadgen::report::Report;
use mmo_loadgen::scenario::{self, Options};
use mmo_loadgen::target::{Kind, Target, default_server_bin};

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
    /// (internal) The floor: a bare renet relay.
    Relay {
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: SocketAddr,
        #[arg(long, default_value_t = 60)]
        tick_hz: u16,
    },
}

#[derive(clap::Args, Debug, Clone)]
struct Args {
    /// Simulated players (at most 1000: netcode's limit is 1024 per server).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(0..=1000))]
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (name, args) = match cli.command {
        Command::Relay { bind, tick_hz } => match mmo_loadgen::relay::Relay::bind(bind) {
            Ok(relay) => {
                eprintln!("relay listening addr={}", relay.addr);
                relay.run(tick_hz)
            }
            Err(error) => {
                eprintln!("relay: {error}");
                return ExitCode::FAILURE;
            }
        },
        Command::Chat(args) => ("chat", args),
        Command::LoginStorm(args) => ("login-storm", args),
        Command::Idle(args) => ("idle", args),
    };
    if let Some(addr) = args.server
        && !addr.ip().is_loopback()
    {
        eprintln!("mmo-loadgen only targets loopback addresses; {addr} is not one");
        return ExitCode::FAILURE;
    }
    let options = Options {
        clients: usize::from(args.clients),
        rate: args.rate,
        duration: Duration::from_secs_f64(args.duration.max(0.0)),
        client_hz: args.client_hz,
    };
    let run = |target: &Target| -> Report {
        let abuse = args
            .abuse
            .map(|kind| Abuse::start(kind, target.addr, args.abuse_rate));
        let mut report = match name {
            "chat" => scenario::chat(target, &options),
            "login-storm" => scenario::login_storm(target, &options),
            _ => scenario::idle(target, &options),
        };
        if let Some(abuse) = abuse {
            report.abuse = args.abuse;
            report.abuse_rate = Some(args.abuse_rate);
            report.abuse_actions = Some(abuse.stop());
        }
        report
    };
    let mmo = match args.server {
        Some(addr) => Target::external(Kind::Mmo, addr, args.server_pid),
        None => match Target::start_mmo(
            &args.server_bin.clone().unwrap_or_else(default_server_bin),
            args.tick_hz,
            args.abuse.is_none(),
        ) {
            Ok(target) => target,
            Err(error) => {
                eprintln!(
                    "cannot start the server (build it with `cargo build --release`): {error}"
                );
                return ExitCode::FAILURE;
            }
        },
    };
    let mut reports = vec![run(&mmo)];
    drop(mmo);
    if args.floor {
        match Target::start_floor(args.tick_hz) {
            Ok(floor) => reports.push(run(&floor)),
            Err(error) => {
                eprintln!("cannot start the floor relay: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!("{}", Report::HEADER);
    for report in &reports {
        println!("{}", report.row());
    }
    if let [mmo, floor] = &reports[..] {
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "-".to_owned(),
        };
        println!(
            "mmo/floor: p99 {}  cpu {}  rss {}",
            ratio(mmo.p99_ms, floor.p99_ms),
            ratio(mmo.server_cpu_core, floor.server_cpu_core),
            ratio(mmo.server_rss_mb, floor.server_rss_mb)
        );
    }
    for report in &reports {
        println!("{}", report.json());
    }
    if reports.iter().any(|r| r.lost > 0) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
