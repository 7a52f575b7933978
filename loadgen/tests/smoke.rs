//! The load generator's scenarios run and count correctly, in-band and in token mode (a few clients, a
//! few seconds; no timing assertions: figures are for BENCHMARKS.md, measured in release builds).

use std::time::Duration;

use mmo::client::api::ApiClient;
use mmo::config::{AuthMode, Config};
use mmo::server::ServerHandle;
use mmo_loadgen::relay::Relay;
use mmo_loadgen::scenario::{self, Options};
use mmo_loadgen::target::{Access, Kind, Target, WsTarget};
use mmo_loadgen::token::{self, Auth};

fn options(clients: usize) -> Options {
    Options {
        clients,
        rate: 5.0,
        duration: Duration::from_secs(1),
        client_hz: 60,
        per_line: false,
    }
}

/// A server in token mode (chat limit lifted, `tweak` applied) on a database in `dir`, and a target
/// whose players log in over its HTTPS endpoint (and play over its WebSocket, as many as
/// `ws_players` says: none unless set).
fn token_server(dir: &std::path::Path, tweak: impl FnOnce(&mut Config)) -> (ServerHandle, Target) {
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), dir.join("db.sqlite3"));
    config.auth = AuthMode::Token;
    config.http_bind = Some("127.0.0.1:0".parse().unwrap());
    (config.chat_burst, config.chat_per_second) = (1000, 1000.0);
    tweak(&mut config);
    let server = ServerHandle::spawn(config).expect("server starts");
    let https = server.https().expect("token mode serves HTTPS");
    let api = ApiClient::with_ca_file(&https.url, Some(&https.cert_path)).unwrap();
    let mut target = Target::external(Kind::Mmo, server.addr(), Some(std::process::id()))
        .with_access(Access::Https(api));
    target.ws = Some(WsTarget::new(&https.url, Some(&https.cert_path)).unwrap());
    (server, target)
}

#[test]
fn chat_and_login_storm_count_every_line_against_mmo() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.path().join("db.sqlite3"),
    );
    (config.chat_burst, config.chat_per_second) = (1000, 1000.0);
    let server = ServerHandle::spawn(config).expect("server starts");
    let target = Target::external(Kind::Mmo, server.addr(), Some(std::process::id()));

    let report = scenario::chat(
        &target,
        &Options {
            per_line: true,
            ..options(3)
        },
    );
    assert!(report.sent >= 3, "{report:?}");
    assert_eq!(report.acknowledged, Some(report.sent), "{report:?}");
    assert_eq!(report.acknowledged_lost, Some(0));
    assert_eq!(
        report.expected,
        report.sent * 2,
        "each line is expected at the two other players"
    );
    assert_eq!(report.delivered, report.expected, "{report:?}");
    assert_eq!(report.lost, 0);
    assert!(
        report.p50_ms.is_some()
            && report.server_cpu_core.is_some()
            && report.server_rss_mb.is_some()
    );

    let storm = scenario::login_storm(&target, &options(4));
    assert_eq!(storm.lost, 0, "{storm:?}");
    assert!(
        storm.logins_per_s.is_some() && storm.login_p99_ms.is_some(),
        "{storm:?}"
    );

    let idle = scenario::idle(
        &target,
        &Options {
            duration: Duration::from_millis(300),
            ..options(2)
        },
    );
    assert_eq!(idle.sent, 0);
    let json: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
    for key in [
        "lost",
        "p50_ms",
        "p99_ms",
        "max_ms",
        "server_cpu_core",
        "server_rss_mb",
    ] {
        assert!(json.get(key).is_some(), "{key} missing from {json}");
    }
    server.stop();
}

#[test]
fn chat_counts_every_line_on_the_floor_relay() {
    let relay = Relay::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let target = Target::external(Kind::Floor, relay.addr, None);
    std::thread::spawn(move || relay.run(60));
    let report = scenario::chat(&target, &options(3));
    assert!(report.sent >= 3);
    assert_eq!(
        (report.delivered, report.lost),
        (report.expected, 0),
        "{report:?}"
    );
}

#[test]
fn token_mode_logs_in_over_https_and_counts_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let (server, target) = token_server(dir.path(), |_| {});

    let report = scenario::chat(
        &target,
        &Options {
            per_line: true,
            ..options(3)
        },
    );
    assert!(report.sent >= 3, "{report:?}");
    assert_eq!(report.acknowledged, Some(report.sent), "{report:?}");
    assert_eq!(report.acknowledged_lost, Some(0));
    assert_eq!(
        (report.delivered, report.lost),
        (report.expected, 0),
        "{report:?}"
    );
    assert_eq!(report.auth, Some(Auth::Token));
    let json: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
    assert_eq!(json["auth"], "token", "{json}");

    let storm = scenario::login_storm(&target, &options(3));
    assert_eq!(storm.lost, 0, "{storm:?}");
    assert!(
        storm.logins_per_s.is_some()
            && storm.login_p99_ms.is_some()
            && storm.connect_p99_ms.is_some(),
        "{storm:?}"
    );
    server.stop();
}

#[test]
fn websocket_players_chat_and_walk_with_udp_players() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut target) = token_server(dir.path(), |config| {
        config.move_speed = mmo_loadgen::target::MOVE_SPEED;
    });
    target.ws_players = 2;

    // Two of four players over the WebSocket: every line reaches everyone, either way.
    let report = scenario::chat(
        &target,
        &Options {
            per_line: true,
            ..options(4)
        },
    );
    assert_eq!(report.ws_clients, Some(2), "{report:?}");
    assert!(report.sent >= 4, "{report:?}");
    assert_eq!(report.acknowledged, Some(report.sent), "{report:?}");
    assert_eq!(
        (report.delivered, report.lost),
        (report.expected, 0),
        "{report:?}"
    );
    let json: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
    assert_eq!(json["ws_clients"], 2, "{json}");
    let by = report.by_transport.expect("latency by transport");
    assert!(by.udp_p99_ms.is_some() && by.ws_p99_ms.is_some(), "{by:?}");

    // All over the WebSocket: snapshots arrive as on UDP.
    target.ws_players = 3;
    let walk = scenario::wander(
        &target,
        &Options {
            duration: Duration::from_secs(2),
            ..options(3)
        },
    );
    assert_eq!(walk.disconnected, Some(0), "{walk:?}");
    assert!(
        walk.snapshots_per_player_per_s.is_some_and(|s| s > 0.0),
        "{walk:?}"
    );
    server.stop();
}

#[test]
fn token_mode_players_log_in_again_with_their_session_when_the_server_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let https_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = Config::new(udp.local_addr().unwrap(), dir.path().join("db.sqlite3"));
    config.auth = AuthMode::Token;
    config.http_bind = Some(https_port.local_addr().unwrap());
    drop((udp, https_port));
    let server = ServerHandle::spawn(config.clone()).expect("server starts");
    let https = server.https().expect("token mode serves HTTPS");
    let api = ApiClient::with_ca_file(&https.url, Some(&https.cert_path)).unwrap();
    let target = Target::external(Kind::Mmo, server.addr(), Some(std::process::id()))
        .with_access(Access::Https(api));

    // A second into the walk the server stops (its players are told it is shutting down); it is back
    // on the same addresses a second later.
    let restart = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        server.stop();
        std::thread::sleep(Duration::from_secs(1));
        ServerHandle::spawn(config).expect("server starts again")
    });
    let report = scenario::wander(
        &target,
        &Options {
            duration: Duration::from_secs(6),
            ..options(3)
        },
    );
    let _server = restart.join().unwrap();
    // Once each: a stopping server hands out no connect token (503), so each got back in to the new one.
    assert_eq!(report.reconnects, Some(3), "{report:?}");
    assert_eq!(report.disconnected, Some(0), "{report:?}");
}

#[test]
fn chat_and_login_storm_run_on_the_secure_floor_relay() {
    let key = token::random_key();
    let relay = Relay::bind_secure("127.0.0.1:0".parse().unwrap(), key).unwrap();
    let target = Target::external(Kind::Floor, relay.addr, None).with_access(Access::Key(key));
    std::thread::spawn(move || relay.run(60));
    let report = scenario::chat(&target, &options(3));
    assert!(report.sent >= 3);
    assert_eq!(
        (report.delivered, report.lost),
        (report.expected, 0),
        "{report:?}"
    );
    let storm = scenario::login_storm(&target, &options(3));
    assert!(storm.connect_p99_ms.is_some(), "{storm:?}");
}

#[test]
fn in_band_reports_keep_their_json_keys() {
    let json: serde_json::Value =
        serde_json::from_str(&mmo_loadgen::report::Report::default().json()).unwrap();
    for key in ["auth", "forged", "connect_p50_ms", "connect_p99_ms"] {
        assert!(
            json.get(key).is_none(),
            "{key} in an in-band report: {json}"
        );
    }
}

#[test]
fn move_measures_snapshot_age_and_bytes_against_mmo_and_the_floor() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.path().join("db.sqlite3"),
    );
    config.move_speed = mmo_loadgen::target::MOVE_SPEED;
    let server = ServerHandle::spawn(config).expect("server starts");
    let target = Target::external(Kind::Mmo, server.addr(), Some(std::process::id()));
    // Two seconds: players pause up to a few seconds between walks, and a standing player is not sent.
    let report = scenario::wander(
        &target,
        &Options {
            duration: Duration::from_secs(2),
            ..options(4)
        },
    );
    assert_eq!(report.scenario, "move");
    assert!(
        report.bytes_per_player_per_s.is_some_and(|b| b > 0.0),
        "{report:?}"
    );
    assert!(
        report.snapshot_age_p50_ms.is_some() && report.snapshot_age_p99_ms.is_some(),
        "{report:?}"
    );
    assert!(
        report.snapshots_per_player_per_s.is_some_and(|s| s > 0.0),
        "{report:?}"
    );
    assert_eq!(report.disconnected, Some(0), "{report:?}");
    let json: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
    for key in [
        "bytes_per_player_per_s",
        "snapshot_age_p50_ms",
        "snapshot_age_p99_ms",
        "server_cpu_core",
    ] {
        assert!(json.get(key).is_some(), "{key} missing from {json}");
    }
    server.stop();

    let relay = Relay::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let floor = Target::external(Kind::Floor, relay.addr, None);
    std::thread::spawn(move || relay.run(60));
    let report = scenario::wander(&floor, &options(3));
    assert!(
        report.bytes_per_player_per_s.is_some_and(|b| b > 0.0),
        "{report:?}"
    );
    assert_eq!(report.snapshot_age_p50_ms, None);
    assert_eq!(report.disconnected, Some(0), "{report:?}");
}

#[test]
fn a_player_refused_its_websocket_fails_the_setup_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut target) = token_server(dir.path(), |config| {
        config.ws_per_address = 1;
        (config.registrations_per_minute, config.logins_per_minute) = (1000, 1000);
    });
    target.ws_players = 40;
    let started = std::time::Instant::now();
    let setup = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        scenario::idle(&target, &options(40))
    }));
    // The player's thread says which player and why ("… could not open its WebSocket: … 429 …").
    assert!(setup.is_err(), "39 players cannot open their sockets");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "the other threads stopped waiting"
    );
    server.stop();
}
