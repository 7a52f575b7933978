//! Running it in production, as an operator does: a configuration file (and its precedence under flags
//! and environment variables), health and readiness checks, JSON logs, logs that stay small under abuse,
//! IP bans and the allow-list.

mod common;

use std::process::Command;

use common::process::ServerProcess;
use common::*;

const MMO: &str = env!("CARGO_BIN_EXE_mmo");

/// `mmo ARGS` with `env`, every other MMO_ variable of the test's environment removed: (exit code,
/// stdout, stderr).
fn mmo(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(MMO);
    for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("MMO_")) {
        command.env_remove(key);
    }
    let out = command
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_flag_beats_its_variable_which_beats_the_file_which_beats_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mmo.toml");
    std::fs::write(
        &file,
        "tick-hz = 30\nstats-interval = 7\nmax-clients = 50\nshard = \"from-file\"\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let (code, text, errors) = mmo(
        &["--config", file, "--print-config", "--max-clients", "40"],
        &[("MMO_STATS_INTERVAL", "9"), ("MMO_MAX_CLIENTS", "45")],
    );
    assert_eq!(code, 0, "{errors}");
    for line in [
        "tick-hz = 30",
        "stats-interval = 9",
        "max-clients = 40",
        "shard = \"from-file\"",
        "snapshot-hz = 20",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
    }

    // The variable names the file too.
    let (code, text, _) = mmo(&["--print-config"], &[("MMO_CONFIG", file)]);
    assert_eq!(code, 0);
    assert!(text.lines().any(|l| l == "tick-hz = 30"), "{text}");
}

#[test]
fn a_bad_configuration_file_stops_the_start_naming_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |name: &str, text: &str| {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        let (code, _, errors) = mmo(&["--config", file.to_str().unwrap()], &[]);
        assert_eq!(code, 2, "{errors}");
        errors
    };
    let unknown = refused("unknown.toml", "tick-hz = 30\nmax_clients = 5\n");
    assert!(
        unknown.contains("unknown.toml line 2: unknown setting `max_clients`"),
        "{unknown}"
    );
    let bad = refused("bad.toml", "\n\nmax-clients = 9000\n");
    assert!(
        bad.contains("bad.toml line 3: `max-clients`: invalid value '9000'"),
        "{bad}"
    );
    let missing = mmo(&["--config", "/nonexistent/mmo.toml"], &[]);
    assert_eq!(missing.0, 2);
    assert!(
        missing
            .2
            .contains("cannot read the configuration file /nonexistent/mmo.toml")
    );
}

#[test]
fn the_example_configuration_starts_a_server_players_can_use() {
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/mmo.example.toml");
    let server = ServerProcess::start(&test_db(dir.path()), &["--config", example]);
    let mut alice = TestClient::connect(server.addr);
    alice.register("Alice", PASSWORD).expect("register");
    alice.login("Alice", PASSWORD).expect("login");
    alice.chat("configured");
    assert_eq!(alice.next_chat().unwrap().text, "configured");
}

/// What curl got back.
struct Curl {
    status: u16,
    /// The Retry-After header, if any.
    retry_after: Option<u64>,
    body: String,
}

/// `curl` against the token-mode server's HTTPS endpoint, trusting its certificate: `path`, with
/// `body` POSTed as JSON when given (from a file, however large).
fn curl(server: &TestServer, path: &str, body: Option<&[u8]>) -> Curl {
    let https = server.https();
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("headers");
    let mut command = Command::new("curl");
    command
        .args(["--silent", "--show-error", "--cacert"])
        .arg(&https.cert_path)
        .arg("--dump-header")
        .arg(&headers)
        .args(["--write-out", "\n%{http_code}"]);
    if let Some(body) = body {
        let file = dir.path().join("body");
        std::fs::write(&file, body).unwrap();
        command
            .args([
                "--header",
                "Content-Type: application/json",
                "--data-binary",
            ])
            .arg(format!("@{}", file.display()));
    }
    let out = command
        .arg(format!("{}{path}", https.url))
        .output()
        .expect("curl runs (Debian's curl package)");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    let retry_after = std::fs::read_to_string(&headers)
        .unwrap_or_default()
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("retry-after")
                .then(|| value.trim().parse().ok())?
        });
    Curl {
        status: status.trim().parse().unwrap(),
        retry_after,
        body: body.to_owned(),
    }
}

#[test]
fn an_oversized_body_gets_a_413_whatever_its_size() {
    let server = TestServer::start_token();
    for size in [6 * 1024, 200 * 1024, 5 * 1024 * 1024] {
        let mut body = b"{\"username\":\"".to_vec();
        body.resize(size, b'a');
        let answer = curl(&server, "/api/login", Some(&body));
        assert_eq!(answer.status, 413, "{size} bytes: {}", answer.body);
        assert!(
            answer.body.contains("Request body over"),
            "{size} bytes: {}",
            answer.body
        );
    }
    // The endpoint still answers after them.
    assert_eq!(curl(&server, "/healthz", None).status, 200);
}

#[test]
fn logins_have_a_budget_per_address_and_sessions_one_each() {
    let server = TestServer::start_token_with(|config| config.logins_per_minute = 5);
    let api = server.api();
    api.register("alice", PASSWORD).unwrap();
    let credentials = format!("{{\"username\":\"alice\",\"password\":\"{PASSWORD}\"}}");
    for _ in 0..5 {
        assert_eq!(
            curl(&server, "/api/login", Some(credentials.as_bytes())).status,
            200
        );
    }
    let refused = curl(&server, "/api/login", Some(credentials.as_bytes()));
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!(
        refused.body.contains("Too many logins from this address"),
        "{}",
        refused.body
    );
    assert!(
        refused
            .retry_after
            .is_some_and(|secs| (1..=60).contains(&secs))
    );

    // One session, resumed in a loop: six a minute, then 429.
    let server = TestServer::start_token_with(|config| config.logins_per_minute = 1_000);
    let api = server.api();
    api.register("bob", PASSWORD).unwrap();
    let session = api.login("bob", PASSWORD).unwrap().session_token;
    let resume = format!("{{\"session_token\":\"{session}\"}}");
    for _ in 0..6 {
        assert_eq!(
            curl(&server, "/api/session", Some(resume.as_bytes())).status,
            200
        );
    }
    let refused = curl(&server, "/api/session", Some(resume.as_bytes()));
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!(
        refused.body.contains("This session logs in too often"),
        "{}",
        refused.body
    );
    assert!(refused.retry_after.is_some());
}

#[test]
fn healthz_fails_while_the_tick_is_stuck_and_recovers() {
    let stall = Stall::default();
    let hook = stall.clone();
    let server = TestServer::start_extended(
        |config| config.metrics_bind = Some("127.0.0.1:0".parse().unwrap()),
        move |app| hook.install(app),
    );
    let metrics = server.metrics_addr();
    probe_until(metrics, "/healthz", 200, "\"status\":\"ok\"");
    probe_until(metrics, "/readyz", 200, "\"status\":\"ok\"");
    stall.next_tick(std::time::Duration::from_secs(7));
    probe_until(metrics, "/healthz", 503, "the tick has not advanced for");
    assert_eq!(http_get(metrics, "/readyz").0, 503, "not ready while stuck");
    probe_until(metrics, "/healthz", 200, "\"status\":\"ok\"");
}

#[test]
fn readyz_fails_while_a_shutdown_counts_down_on_both_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(
        &test_db(dir.path()),
        &[
            "--metrics-bind",
            "127.0.0.1:0",
            "--auth",
            "token",
            "--http-bind",
            "127.0.0.1:0",
        ],
    );
    let metrics: std::net::SocketAddr = server
        .logged("url")
        .and_then(|url| {
            url.strip_prefix("http://")?
                .strip_suffix("/metrics")
                .map(str::to_owned)
        })
        .expect("the metrics address")
        .parse()
        .unwrap();
    probe_until(metrics, "/readyz", 200, "\"status\":\"ok\"");
    assert_eq!(
        server.run("shutdown 10m maintenance"),
        "Shutting down in 10m"
    );
    let body = probe_until(metrics, "/readyz", 503, "shutting down in 9m");
    assert!(body.contains("\"status\":\"unavailable\""), "{body}");
    assert_eq!(http_get(metrics, "/healthz").0, 200, "still alive");
    assert_eq!(server.run("shutdown cancel"), "Shutdown cancelled");
    probe_until(metrics, "/readyz", 200, "\"status\":\"ok\"");
}

#[test]
fn the_https_listener_answers_the_probes_too() {
    let server = TestServer::start_token();
    // Alive once the first tick has run ("starting: no tick yet" until then; a loaded machine may
    // answer the first request before it).
    let deadline = std::time::Instant::now() + PATIENCE;
    let alive = loop {
        let alive = curl(&server, "/healthz", None);
        if alive.status == 200 || std::time::Instant::now() >= deadline {
            break alive;
        }
        assert!(alive.body.contains("starting"), "{}", alive.body);
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(
        (alive.status, alive.body.as_str()),
        (200, "{\"status\":\"ok\"}")
    );
    let ready = curl(&server, "/readyz", None);
    assert_eq!(ready.status, 200, "{}", ready.body);
}

/// A player connected to `server` over UDP (in-band), registered and logged in as `name`.
fn udp_player(server: &ServerProcess, name: &str) -> TestClient {
    let mut client = TestClient::connect(server.addr);
    client.register(name, PASSWORD).expect("register");
    client.login(name, PASSWORD).expect("login");
    client
}

#[test]
fn banip_refuses_an_ipv6_address_at_the_gate_kicks_who_plays_from_it_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = test_db(dir.path());
    let mut server = ServerProcess::start_on("[::1]:0", &db, &[]);
    assert!(server.addr.is_ipv6());
    let mut bob = udp_player(&server, "bob");

    assert_eq!(
        server.run("banip ::1 alt accounts"),
        "::1 is banned until lifted"
    );
    assert!(
        bob.kicked()
            .starts_with("This address is banned until lifted: alt accounts")
    );
    // A new connection from it never gets past the gate.
    let mut again = TestClient::start_connecting(server.addr);
    assert!(!again.connects_within(std::time::Duration::from_secs(2)));

    // A range holding it, across a restart.
    assert_eq!(server.run("unbanip ::1"), "::1 is no longer banned");
    assert_eq!(server.run("banip ::/64 2h"), "::/64 is banned for 2h");
    drop(server);
    let mut server = ServerProcess::start_on("[::1]:0", &db, &[]);
    let mut blocked = TestClient::start_connecting(server.addr);
    assert!(!blocked.connects_within(std::time::Duration::from_secs(2)));
    assert_eq!(server.run("unbanip ::/64"), "::/64 is no longer banned");
    udp_player(&server, "carol");
    let audit = server.run_long("audit 3");
    for action in [" unbanip ::/64", " banip ::/64 for 2h", " unbanip ::1"] {
        assert!(
            audit.iter().any(|l| l.contains(action)),
            "{action} in {audit:#?}"
        );
    }
}

#[test]
fn banip_of_a_range_refuses_its_https_requests_before_anything_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(
        &test_db(dir.path()),
        &["--auth", "token", "--http-bind", "127.0.0.1:0"],
    );
    let url = server.logged("url").expect("the https url");
    let cert = server.logged("cert").expect("the certificate");
    let api =
        mmo::client::api::ApiClient::with_ca_file(&url, Some(std::path::Path::new(&cert))).unwrap();
    api.register("alice", PASSWORD).unwrap();
    let login = api.login("alice", PASSWORD).unwrap();
    let mut alice = TestClient::connect_with_token(&login.connect_token);
    alice.expect("logged in", |m| {
        matches!(m, mmo::protocol::ServerMessage::LoggedIn { .. }).then_some(())
    });

    assert_eq!(
        server.run("banip 127.0.0.0/8 1h spam"),
        "127.0.0.0/8 is banned for 1h"
    );
    assert!(alice.kicked().contains(": spam"));
    let refused = api.login("alice", PASSWORD).unwrap_err().to_string();
    assert!(
        refused.contains("This address is banned until"),
        "{refused}"
    );
    assert!(refused.contains("spam"), "{refused}");

    assert_eq!(
        server.run("unbanip 127.0.0.0/8"),
        "127.0.0.0/8 is no longer banned"
    );
    api.login("alice", PASSWORD).expect("in again");
}

#[test]
fn with_the_allow_list_only_listed_names_get_in_and_a_disallowed_player_is_kicked() {
    let dir = tempfile::tempdir().unwrap();
    let db = test_db(dir.path());
    let mut server = ServerProcess::start(&db, &["--allow-list"]);
    let mut stranger = TestClient::connect(server.addr);
    assert_eq!(
        stranger.register("mallory", PASSWORD),
        Err("This server is private".to_owned())
    );
    assert_eq!(
        stranger.login("mallory", PASSWORD),
        Err("This server is private".to_owned())
    );

    assert_eq!(server.run("allow Carol"), "Carol may log in");
    assert_eq!(server.run("allow dave"), "dave may log in");
    let mut carol = udp_player(&server, "carol");
    carol.chat("hello, private world");
    assert_eq!(carol.next_chat().unwrap().text, "hello, private world");
    assert_eq!(server.run("disallow carol"), "carol may no longer log in");
    assert_eq!(carol.kicked(), "This server is private");

    // Kept across a restart: dave still may, carol still may not.
    drop(server);
    let server = ServerProcess::start(&db, &["--allow-list"]);
    udp_player(&server, "dave");
    let mut carol = TestClient::connect(server.addr);
    assert_eq!(
        carol.login("carol", PASSWORD),
        Err("This server is private".to_owned())
    );
}

/// How long each abuse runs at full speed.
const ABUSE: std::time::Duration = std::time::Duration::from_secs(4);
/// The most a server may log under one abuse, whatever its speed.
const LOG_BOUND: usize = 6 * 1024;

/// Runs `abuse` against `server` for [`ABUSE`] (calling it again and again) and measures what the server
/// logs meanwhile: asserts it stays under [`LOG_BOUND`], prints the rate (BENCHMARKS.md's "Logs under
/// abuse"), and returns the lines.
fn log_under(server: &ServerProcess, what: &str, mut abuse: impl FnMut()) -> Vec<String> {
    // What the start still logs (its first tick's lines) is not the abuse's.
    while server
        .logs
        .recv_timeout(std::time::Duration::from_millis(300))
        .is_ok()
    {}
    let started = std::time::Instant::now();
    let mut rounds = 0u64;
    while started.elapsed() < ABUSE {
        abuse();
        rounds += 1;
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let lines: Vec<String> = server.logs.try_iter().collect();
    let bytes: usize = lines.iter().map(|line| line.len() + 1).sum();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "log under abuse: {what}: {rounds} rounds, {} lines, {bytes} bytes in {secs:.1} s ({:.0} B/s)",
        lines.len(),
        bytes as f64 / secs
    );
    assert!(
        bytes <= LOG_BOUND,
        "{what}: {bytes} bytes logged in {secs:.1} s:\n{}",
        lines.join("\n")
    );
    lines
}

fn lifted_chat_limit() -> [&'static str; 4] {
    ["--chat-burst", "1000", "--chat-per-second", "1000"]
}

#[test]
fn connecting_and_leaving_in_a_loop_logs_a_few_lines() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&test_db(dir.path()), &[]);
    let lines = log_under(&server, "connection churn", || {
        let mut client = TestClient::start_connecting(server.addr);
        client.connects_within(std::time::Duration::from_millis(500));
    });
    assert!(
        lines.iter().any(|l| l.contains("connected")),
        "the first are logged"
    );
}

#[test]
fn garbage_messages_in_a_loop_log_a_few_lines() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&test_db(dir.path()), &[]);
    log_under(&server, "undecodable messages", || {
        let mut client = TestClient::start_connecting(server.addr);
        if client.connects_within(std::time::Duration::from_millis(500)) {
            client.send_raw(vec![0xFF; 64]);
            client.flush();
        }
    });
}

#[test]
fn failed_logins_in_a_loop_log_a_few_lines() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&test_db(dir.path()), &[]);
    udp_player(&server, "alice");
    let mut guesser = TestClient::connect(server.addr);
    log_under(&server, "failed logins (in-band)", || {
        if guesser.login("alice", "not the password").is_err() && guesser.is_disconnected() {
            guesser = TestClient::connect(server.addr);
        }
    });
}

#[test]
fn commands_at_full_speed_log_a_few_lines() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&test_db(dir.path()), &lifted_chat_limit());
    let mut alice = udp_player(&server, "alice");
    let lines = log_under(&server, "commands", || {
        let _ = alice.command("who");
    });
    assert!(
        lines.iter().any(|l| l.contains("command")),
        "the first are logged"
    );
}

/// A token-mode server binary and an HTTPS client of it.
fn token_server(dir: &std::path::Path) -> (ServerProcess, mmo::client::api::ApiClient) {
    let mut server = ServerProcess::start(
        &test_db(dir),
        &["--auth", "token", "--http-bind", "127.0.0.1:0"],
    );
    let url = server.logged("url").expect("the https url");
    let cert = server.logged("cert").expect("the certificate");
    let api =
        mmo::client::api::ApiClient::with_ca_file(&url, Some(std::path::Path::new(&cert))).unwrap();
    (server, api)
}

#[test]
fn one_session_resumed_in_a_loop_logs_a_few_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = token_server(dir.path());
    api.register("alice", PASSWORD).unwrap();
    let session = api.login("alice", PASSWORD).unwrap().session_token;
    log_under(&server, "session logins (https)", || {
        let _ = api.resume(&session);
    });
}

#[test]
fn failed_https_logins_in_a_loop_log_a_few_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = token_server(dir.path());
    api.register("alice", PASSWORD).unwrap();
    log_under(&server, "failed logins (https)", || {
        let _ = api.login("alice", "not the password");
    });
}

#[test]
fn broken_tls_handshakes_in_a_loop_log_nothing() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let (mut server, _) = token_server(dir.path());
    let addr: std::net::SocketAddr = server
        .logged("url")
        .and_then(|url| url.strip_prefix("https://").map(str::to_owned))
        .unwrap()
        .parse()
        .unwrap();
    // A ClientHello's record header, then junk: rustls refuses it.
    let lines = log_under(&server, "broken TLS handshakes", || {
        if let Ok(mut stream) = std::net::TcpStream::connect(addr) {
            let _ = stream.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]);
            let _ = stream.write_all(&[0xAB; 256]);
        }
    });
    assert!(lines.is_empty(), "{lines:#?}");
}

#[test]
fn the_systemd_units_verify() {
    // The units as shipped, pointed at the binary under test (systemd checks that it exists).
    let dir = tempfile::tempdir().unwrap();
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/systemd");
    let mut units = Vec::new();
    for entry in std::fs::read_dir(shipped).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let unit = dir.path().join(path.file_name().unwrap());
        std::fs::write(&unit, text.replace("/usr/local/bin/mmo", MMO)).unwrap();
        units.push(unit);
    }
    assert_eq!(
        units.len(),
        3,
        "mmo.service, mmo-backup.service, mmo-backup.timer"
    );
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .expect("systemd-analyze runs (Debian's systemd package; .ci/run installs it)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}

#[test]
fn with_log_format_json_every_log_line_is_one_json_object_with_the_same_fields() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("json.sqlite3");
    let mut child = Command::new(MMO)
        .args(["--log-format", "json", "--bind", "127.0.0.1:0", "--db"])
        .arg(&db)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let listening = loop {
        let line = lines
            .next()
            .expect("the server logs until it listens")
            .unwrap();
        let object: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|error| panic!("not one JSON object ({error}): {line}"));
        seen.push(object.clone());
        if object["message"] == "listening" {
            break object;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    for field in ["timestamp", "level", "target", "message"] {
        assert!(
            seen.iter().all(|o| o.get(field).is_some()),
            "{field} in {seen:#?}"
        );
    }
    assert_eq!(listening["level"], "INFO");
    assert_eq!(listening["target"], "mmo::server");
    assert_eq!(listening["auth"], "in-band");
    assert!(
        listening["addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:"))
    );
}
