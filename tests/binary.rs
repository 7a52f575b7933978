//! The server binary as a user runs it: flags, start-up on a fresh database file, SIGTERM handling.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{PASSWORD, TestClient};
use mmo::protocol::ServerMessage;

/// Removes ANSI colour codes from a log line.
fn plain(line: &str) -> String {
    let mut out = String::new();
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

#[test]
fn sigterm_disconnects_everyone_flushes_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fresh.sqlite3");
    let mut server = Command::new(env!("CARGO_BIN_EXE_mmo"))
        .args(["--bind", "127.0.0.1:0", "--db"])
        .arg(&db)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the server binary starts");

    // Log lines from both streams; the "listening" line carries the real port.
    let (tx, logs) = mpsc::channel::<String>();
    for stream in [
        Box::new(server.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(server.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(plain(&line));
            }
        });
    }
    let mut seen = Vec::new();
    let addr: SocketAddr = loop {
        let line = logs
            .recv_timeout(Duration::from_secs(30))
            .expect("the server logs that it listens");
        seen.push(line.clone());
        if line.contains("listening")
            && let Some(addr) = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
        {
            break addr.parse().unwrap();
        }
    };
    assert!(db.exists(), "the database file was created");

    let mut alice = TestClient::connect(addr);
    alice.register("alice", PASSWORD).unwrap();
    alice.login("alice", PASSWORD).unwrap();

    let status = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let reason = alice.expect("the shutdown notice", |m| match m {
        ServerMessage::Kicked { reason } => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(reason, "Server is shutting down");
    alice.expect_disconnected();
    let exit = server.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "logs: {seen:#?}");
    seen.extend(logs.try_iter());
    for event in [
        "connected",
        "registered",
        "logged in",
        "shutting down",
        "logged out",
    ] {
        assert!(
            seen.iter().any(|l| l.contains(event)),
            "no '{event}' in the logs: {seen:#?}"
        );
    }
}

#[test]
fn help_documents_every_flag_and_bad_values_are_refused() {
    let help = Command::new(env!("CARGO_BIN_EXE_mmo"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8(help.stdout).unwrap();
    for flag in [
        "--bind",
        "MMO_BIND",
        "--db",
        "MMO_DB",
        "--max-clients",
        "--tick-hz",
    ] {
        assert!(text.contains(flag), "{flag} missing from --help:\n{text}");
    }
    let refused = Command::new(env!("CARGO_BIN_EXE_mmo"))
        .args(["--max-clients", "5000"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("1..=1024"));
}
