//! The server binary as a user runs it: flags, start-up on a fresh database file, SIGTERM handling.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use diesel::prelude::*;
use std::time::Duration;

use common::process::plain;
use common::{PASSWORD, TestClient};
use mmo::protocol::{ClientMessage, Pos, ServerMessage};

/// Starts the server binary on a free port with `db`; returns it, its address and its log lines so far
/// (later ones keep arriving on the receiver).
fn start_binary(db: &Path) -> (Child, SocketAddr, Vec<String>, mpsc::Receiver<String>) {
    start_binary_with(db, &["--bind", "127.0.0.1:0"])
}

/// [`start_binary`] with these flags (`--bind` among them).
fn start_binary_with(
    db: &Path,
    flags: &[&str],
) -> (Child, SocketAddr, Vec<String>, mpsc::Receiver<String>) {
    let mut server = Command::new(env!("CARGO_BIN_EXE_mmo"))
        .args(flags)
        .arg("--db")
        .arg(db)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the server binary starts");
    let (tx, logs) = mpsc::channel::<String>();
    let streams: [Box<dyn std::io::Read + Send>; 2] = [
        Box::new(server.stdout.take().unwrap()),
        Box::new(server.stderr.take().unwrap()),
    ];
    for stream in streams {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(plain(&line));
            }
        });
    }
    let mut seen = Vec::new();
    let addr = loop {
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
    (server, addr, seen, logs)
}

#[test]
fn sigterm_disconnects_everyone_flushes_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fresh.sqlite3");
    let (mut server, addr, mut seen, logs) = start_binary(&db);
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
        "--auth",
        "MMO_AUTH",
        "--http-bind",
        "--tls-cert",
        "--tls-key",
        "--public-addr",
        "--netcode-key-file",
        "--session-days",
    ] {
        assert!(text.contains(flag), "{flag} missing from --help:\n{text}");
    }
    let refused = Command::new(env!("CARGO_BIN_EXE_mmo"))
        .args(["--max-clients", "9000"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("1..=8192"));
}

/// Connects, unless `stop` is raised (the server was killed) first.
fn try_connect(addr: SocketAddr, stop: &AtomicBool) -> Option<TestClient> {
    let mut client = TestClient::start_connecting(addr);
    while !client.is_connected() {
        if stop.load(Ordering::SeqCst) {
            return None;
        }
        assert!(!client.is_disconnected(), "refused while the server was up");
        client.pump();
        std::thread::sleep(Duration::from_millis(1));
    }
    Some(client)
}

/// Registers `name` on `client`; `Some(true)` once acknowledged, `Some(false)` if refused, `None` if
/// `stop` was raised (the server died) before an answer came.
fn try_register(client: &mut TestClient, name: &str, stop: &AtomicBool) -> Option<bool> {
    client.send(&ClientMessage::Register {
        username: name.into(),
        password: PASSWORD.into(),
    });
    loop {
        client.pump();
        for message in client.received.drain(..) {
            match message {
                ServerMessage::Registered { username } if username == name => return Some(true),
                ServerMessage::Denied { .. } => return Some(false),
                _ => {}
            }
        }
        if stop.load(Ordering::SeqCst) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn sigkill_loses_no_acknowledged_registration() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.sqlite3");
    let (mut server, addr, _, _logs) = start_binary(&db);
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));

    // Players chatting, and clients registering accounts back to back, five per connection.
    let mut chatter = TestClient::connect(addr);
    chatter.register("chatter", PASSWORD).unwrap();
    chatter.login("chatter", PASSWORD).unwrap();
    let registrars: Vec<_> = (0..8)
        .map(|t| {
            let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
            std::thread::spawn(move || {
                for round in 0.. {
                    let Some(mut client) = try_connect(addr, &stop) else {
                        return;
                    };
                    for i in 0..5 {
                        let name = format!("r{t}_{round}_{i}");
                        match try_register(&mut client, &name, &stop) {
                            Some(true) => acknowledged.lock().unwrap().push(name),
                            Some(false) => panic!("{name} refused"),
                            None => return,
                        }
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        chatter.chat("the server is about to die");
        chatter.pump();
        std::thread::sleep(Duration::from_millis(50));
    }
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    stop.store(true, Ordering::SeqCst);
    for registrar in registrars {
        registrar.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 5,
        "some registrations went through before the kill: {acknowledged:?}"
    );

    // The database is intact and every acknowledged account can log in after a restart.
    let mut conn = SqliteConnection::establish(db.to_str().unwrap()).unwrap();
    let check: Vec<IntegrityCheck> = diesel::sql_query("PRAGMA integrity_check")
        .load(&mut conn)
        .unwrap();
    assert_eq!(
        check
            .iter()
            .map(|c| c.integrity_check.as_str())
            .collect::<Vec<_>>(),
        ["ok"]
    );
    drop(conn);
    let (mut restarted, addr, _, _logs) = start_binary(&db);
    for name in &acknowledged {
        let mut client = TestClient::connect(addr);
        assert_eq!(
            client.login(name, PASSWORD),
            Ok(name.clone()),
            "{name} was acknowledged"
        );
    }
    restarted.kill().unwrap();
    restarted.wait().unwrap();
}

#[test]
fn sigkill_loses_at_most_the_last_seconds_of_walking() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("walk.sqlite3");
    let flags = ["--bind", "127.0.0.1:0", "--move-speed", "40"];
    let (mut server, addr, _, _logs) = start_binary_with(&db, &flags);
    let mut alice = TestClient::connect(addr);
    alice.register("alice", PASSWORD).unwrap();
    alice.login("alice", PASSWORD).unwrap();
    let (id, start) = alice.spawned();

    // She sets off on a ten-second walk east; the server is killed four seconds in.
    let goal = Pos::quantize(start.x() + 400.0, start.y());
    alice.send(&ClientMessage::MoveTo {
        x: goal.x(),
        y: goal.y(),
    });
    let walking = Instant::now();
    while walking.elapsed() < Duration::from_secs(4) {
        alice.pump();
        std::thread::sleep(Duration::from_millis(5));
    }
    let last_seen = alice.last_seen(id).expect("her own steps in the snapshots");
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();

    // After a restart she stands on her path, at most a few seconds' walk behind where she was last seen.
    let (mut restarted, addr, _, _logs) = start_binary_with(&db, &flags);
    let mut alice = TestClient::connect(addr);
    alice.login("alice", PASSWORD).unwrap();
    let (_, at) = alice.spawned();
    assert_eq!(at.y(), start.y(), "on her path");
    assert!(
        at.x() >= start.x() + 40.0,
        "more than her first second of walking survived: from {start:?} to {at:?}"
    );
    assert!(
        last_seen.x() - at.x() <= 3.0 * 40.0,
        "at most three seconds of walking lost: last seen at {last_seen:?}, back at {at:?}"
    );
    restarted.kill().unwrap();
    restarted.wait().unwrap();
}

#[derive(QueryableByName)]
struct IntegrityCheck {
    #[diesel(sql_type = diesel::sql_types::Text)]
    integrity_check: String,
}

/// The value of `name=` in a log line.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
}

/// POSTs JSON with curl, trusting `cert`; the status and the body.
fn curl(url: &str, cert: &str, json: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--cacert", cert])
        .args(["--header", "Content-Type: application/json", "--data", json])
        .args(["--write-out", "\n%{http_code}", url])
        .output()
        .expect("curl runs (Debian's curl package)");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.trim().parse().unwrap(), body.to_owned())
}

#[test]
fn token_mode_binds_every_address_and_logs_in_over_https_with_curl() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("token.sqlite3");
    // A free UDP port, so the public address can name it before the server binds it.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (bind, public) = (format!("0.0.0.0:{port}"), format!("127.0.0.1:{port}"));
    let flags = [
        "--auth",
        "token",
        "--bind",
        &bind,
        "--public-addr",
        &public,
        "--http-bind",
        "127.0.0.1:0",
    ];
    let (mut server, _, mut seen, logs) = start_binary_with(&db, &flags);
    let ready = loop {
        if let Some(line) = seen
            .iter()
            .find(|l| l.contains("https login endpoint ready"))
        {
            break line.clone();
        }
        seen.push(
            logs.recv_timeout(Duration::from_secs(30))
                .expect("the https line"),
        );
    };
    let (url, cert) = (
        field(&ready, "url").unwrap(),
        field(&ready, "cert").unwrap(),
    );
    assert_eq!(field(&ready, "sha256").unwrap().len(), 95, "{ready}");
    assert!(
        Path::new(cert).starts_with(dir.path()),
        "beside the database: {cert}"
    );

    let credentials = format!(r#"{{"username": "Carol", "password": "{PASSWORD}"}}"#);
    assert_eq!(
        curl(&format!("{url}/api/register"), cert, &credentials).0,
        201
    );
    let (status, body) = curl(&format!("{url}/api/login"), cert, &credentials);
    assert_eq!(status, 200, "{body}");
    let login: mmo::api::LoggedIn = serde_json::from_str(&body).unwrap();
    let mut carol = TestClient::connect_with_token(&login.connect_token);
    carol.expect("logged in over the public bind", |m| {
        matches!(m, ServerMessage::LoggedIn { name } if name == "Carol").then_some(())
    });
    carol.chat("hello from token mode");
    assert_eq!(carol.next_chat().unwrap().text, "hello from token mode");

    // Without the certificate, curl refuses the self-signed server.
    let untrusted = Command::new("curl")
        .args(["--silent", &format!("{url}/api/health")])
        .status()
        .unwrap();
    assert!(!untrusted.success());
    server.kill().unwrap();
    server.wait().unwrap();
}
