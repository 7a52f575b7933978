//! The server's transport as a client sees it on the wire: a recording proxy between them counts what
//! the server sends.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::*;
use mmo::protocol::{ClientMessage, ServerMessage};

/// The tests here count the process's threads, so they run one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Names of this process's threads that belong to a server (netcode, HTTPS, auth workers).
fn server_threads() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
                .map(|name| name.trim().to_owned())
                .filter(|name| name.starts_with("mmo-") || name.starts_with("auth-"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_quiet_player_acks_ten_times_a_second_is_not_acked_back_and_lines_go_at_once() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = TestServer::start();
    let proxy = Proxy::start(server.addr);
    let mut alice = TestClient::connect(proxy.addr);
    alice.register("Alice", PASSWORD).unwrap();
    alice.login("Alice", PASSWORD).unwrap();
    let mut bob = server.player("Bob");
    // renet acknowledges acks, so the two sides are always owed acks; once the login's messages are
    // acknowledged neither has anything else to send. Alice's client runs at 60 frames a second, the
    // server at 60 ticks. The server does not acknowledge a packet of acks: it sends her only
    // netcode's keep-alives (4 a second).
    pump_for(&mut [&mut alice], Duration::from_millis(500));
    let before = (proxy.sent_to_client(), proxy.sent_to_server());
    pump_for(&mut [&mut alice], Duration::from_secs(2));
    let quiet = proxy.sent_to_client() - before.0;
    assert!(
        quiet <= 12,
        "a quiet player is sent keep-alives (4 a second), not an ack a tick (60) or for each of its \
         acks (10): {quiet} in 2 s"
    );
    let quiet = proxy.sent_to_server() - before.1;
    assert!(
        (10..=40).contains(&quiet),
        "a quiet client sends about 10 packets a second, not one a frame (60): {quiet} in 2 s"
    );

    bob.chat("still instant");
    assert_eq!(alice.next_chat().unwrap().text, "still instant");
    alice.chat("and back");
    for expected in ["still instant", "and back"] {
        assert_eq!(bob.next_chat().unwrap().text, expected);
    }
}

#[test]
fn stopping_with_packets_in_flight_loses_no_acknowledged_line_and_leaves_no_thread() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !std::path::Path::new("/proc/self/task").exists() {
        return; // thread names are read from Linux's /proc
    }
    let mut server = TestServer::start_token();
    // A new thread takes its name from inside itself, a moment after it starts.
    let expected = ["mmo-netcode", "mmo-https-main", "mmo-server"];
    let deadline = Instant::now() + PATIENCE;
    loop {
        let threads = server_threads();
        if expected
            .iter()
            .all(|name| threads.iter().any(|t| t == name))
        {
            break;
        }
        assert!(Instant::now() < deadline, "missing threads: {threads:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut alice = server.token_player("Alice");
    let mut bob = server.token_player("Bob");
    for i in 0..20 {
        alice.chat(&format!("line {i}"));
    }
    // Acknowledged: the server echoed the last line back to its sender.
    alice.expect("the last line echoed", |m| {
        matches!(m, ServerMessage::Chat(line) if line.text == "line 19").then_some(())
    });
    bob.flush();
    server.stop();
    let left: Vec<String> = server_threads();
    assert!(left.is_empty(), "threads left behind: {left:?}");

    server.restart();
    let api = server.api();
    api.register("Carol", PASSWORD).unwrap();
    let login = api.login("Carol", PASSWORD).unwrap();
    let mut carol = TestClient::connect_with_token(&login.connect_token);
    let history = carol.expect("history", |m| match m {
        ServerMessage::ChatHistory { lines } => Some(lines.clone()),
        _ => None,
    });
    let said: Vec<&str> = history.iter().map(|line| line.text.as_str()).collect();
    let expected: Vec<String> = (0..20).map(|i| format!("line {i}")).collect();
    assert_eq!(said, expected, "every acknowledged line is in the history");
}

#[test]
fn a_stalled_tick_with_its_queue_full_keeps_every_connection_and_loses_no_line() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let stalls = Stall::default();
    let hook = stalls.clone();
    let server = TestServer::start_extended(
        |config| {
            config.chat_burst = 1000;
            config.chat_per_second = 1000.0;
            // Two players flushing 60 times a second fill this within a second of a stalled tick.
            config.transport_queue = 32;
        },
        move |app| hook.install(app),
    );
    let mut alice = server.player("Alice");
    let mut bob = server.player("Bob");

    // The tick stops for 3 s; meanwhile Alice talks, both keep flushing, and Carol connects.
    stalls.next_tick(Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(100));
    for i in 0..10 {
        alice.send(&ClientMessage::Chat {
            text: format!("said during the stall {i}"),
        });
    }
    let mut carol = TestClient::start_connecting(server.addr);
    pump_for(
        &mut [&mut alice, &mut bob, &mut carol],
        Duration::from_millis(2_500),
    );
    // The netcode thread answered Carol's handshake and kept everyone alive without the tick.
    assert!(carol.is_connected(), "Carol's handshake needs no tick");
    assert!(alice.is_connected() && bob.is_connected());

    // After the stall: every line reaches Bob, in order (what the full queue dropped, renet resent).
    for i in 0..10 {
        let text = format!("said during the stall {i}");
        bob.expect(&text, |m| {
            matches!(m, ServerMessage::Chat(line) if line.sender == "Alice" && line.text == text)
                .then_some(())
        });
    }
    assert!(
        stalls.queue_drops() > 0,
        "the queue filled and dropped payloads"
    );
    // Carol's connection reached the tick although the queue was full: she can log in.
    carol.register("Carol", PASSWORD).expect("Carol registers");
    carol.login("Carol", PASSWORD).expect("Carol logs in");
    bob.expect("Carol joined", |m| {
        matches!(m, ServerMessage::PlayerJoined { name } if name == "Carol").then_some(())
    });
    assert!(alice.is_connected() && bob.is_connected());
}

#[test]
fn a_player_who_stops_reading_is_disconnected_before_the_server_buffers_much_for_him() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = TestServer::start_extended(
        |config| {
            config.chat_burst = 100_000;
            config.chat_per_second = 100_000.0;
            // Alice's batches are bursts of datagrams; the gate is not what this is about.
            config.packet_rate = 20_000;
        },
        |_| {},
    );
    let mut alice = server.player("Alice");
    // Bob logs in and then never reads again (his frames stalled, or he is gone without a word).
    let bob = server.player("Bob");
    let started = Instant::now();
    // About 400 KB for Bob, in batches Alice's own channel holds.
    let text = "x".repeat(180);
    for _ in 0..20 {
        for _ in 0..100 {
            alice.chat(&text);
        }
        pump_for(&mut [&mut alice], Duration::from_millis(100));
    }
    alice.expect("Bob dropped for not reading", |m| {
        matches!(m, ServerMessage::PlayerLeft { name } if name == "Bob").then_some(())
    });
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "within STALLED_AFTER of his backlog passing the limit, well before netcode's 15 s timeout: \
         {:?}",
        started.elapsed()
    );
    drop(bob);
}
