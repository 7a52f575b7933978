//! Abuse that must not bother other players: chat floods, packet floods, password guessing, connections
//! that never log in, hostile messages, and an in-band server exposed beyond loopback by mistake.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::{PASSWORD, TestClient, TestServer};
use mmo::config::Config;
use mmo::protocol::ServerMessage;
use mmo::server::{ServerHandle, StartError};
use mmo::udp::connection_request;

#[test]
fn a_chat_flood_is_refused_then_kicked_while_others_chat() {
    let server = TestServer::start_with(|config| {
        config.chat_burst = 5;
        config.chat_per_second = 1.0;
        config.chat_kick_after = 2;
    });
    let mut flooder = server.player("flooder");
    let mut alice = server.player("alice");
    let mut bob = server.player("bob");

    for i in 0..6 {
        flooder.chat(&format!("spam {i}"));
    }
    let mut answers = Vec::new();
    for _ in 0..6 {
        answers.push(flooder.next_chat());
    }
    assert_eq!(
        answers.iter().filter(|a| a.is_ok()).count(),
        5,
        "a burst of five goes through: {answers:?}"
    );
    assert_eq!(
        answers.last().unwrap().as_ref().unwrap_err(),
        "You are sending messages too fast"
    );

    // Keep flooding (4 lines a second) for a few seconds: kicked with a reason. Alice, within the limit
    // (1 line a second), keeps getting through to bob meanwhile.
    let mut round = 0;
    let kicked = loop {
        flooder.chat("more spam");
        if round % 4 == 0 {
            let text = format!("still here {round}");
            alice.chat(&text);
            let got = bob.expect("alice's line", |m| match m {
                ServerMessage::Chat(line) if line.sender == "alice" => Some(line.text.clone()),
                _ => None,
            });
            assert_eq!(got, text);
        }
        round += 1;
        assert!(round < 100, "never kicked: {:?}", flooder.received);
        std::thread::sleep(Duration::from_millis(250));
        flooder.pump();
        let kick = flooder.received.iter().find_map(|m| match m {
            ServerMessage::Kicked { reason } => Some(reason.clone()),
            _ => None,
        });
        if let Some(reason) = kick {
            break reason;
        }
    };
    assert_eq!(kicked, "Kicked for flooding the chat");
    flooder.expect_disconnected();
    // Nothing refused was broadcast: bob saw exactly the lines the flooder saw accepted (its own echoes).
    std::thread::sleep(Duration::from_millis(1000));
    alice.chat("end");
    bob.expect("the end line", |m| {
        matches!(m, ServerMessage::Chat(l) if l.text == "end").then_some(())
    });
    let from_flooder = |received: &[ServerMessage]| {
        received
            .iter()
            .filter(|m| matches!(m, ServerMessage::Chat(l) if l.sender == "flooder"))
            .count()
    };
    let refused = flooder
        .received
        .iter()
        .filter(|m| matches!(m, ServerMessage::Denied { .. }))
        .count();
    assert!(refused >= 5, "{refused} refused");
    assert_eq!(from_flooder(&bob.received), from_flooder(&flooder.received));
}

#[test]
fn a_connection_that_never_logs_in_is_closed() {
    let server = TestServer::start_with(|config| config.login_timeout = 3);
    // A player who logs in in time (well within the 3 s) stays after the timeout.
    let mut player = server.client();
    player.register("alice", PASSWORD).unwrap();
    player.login("alice", PASSWORD).unwrap();
    let mut idle = server.client();
    let reason = idle.expect("the timeout", |m| match m {
        ServerMessage::Kicked { reason } => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(reason, "Login timed out");
    idle.expect_disconnected();
    player.chat("still here");
    assert_eq!(player.next_chat().unwrap().text, "still here");
}

#[test]
fn in_band_mode_refuses_a_non_loopback_address_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::new("0.0.0.0:0".parse().unwrap(), dir.path().join("db.sqlite3"));
    match ServerHandle::spawn(config.clone()) {
        Err(StartError::InsecureRemote(addr)) => assert_eq!(addr, config.bind),
        other => panic!("expected a refusal, got {:?}", other.map(|h| h.addr())),
    }
    let allowed = ServerHandle::spawn(Config {
        allow_insecure_remote: true,
        ..config
    })
    .expect("starts when allowed");
    allowed.stop();
}

#[test]
fn password_guessing_is_locked_out_without_revealing_which_names_exist() {
    let server = TestServer::start();
    server.player("alice");
    let locked = "Too many failed logins. Try again in 30 seconds";

    // Per account name: five wrong passwords from five connections lock the name, known or not.
    for name in ["alice", "nobody_here"] {
        for _ in 0..5 {
            let mut guesser = server.client();
            assert_eq!(
                guesser.login(name, "wrong password"),
                Err("Username or password incorrect".into())
            );
        }
        let mut next = server.client();
        assert_eq!(
            next.login(name, "wrong password"),
            Err(locked.into()),
            "{name}"
        );
        if name == "alice" {
            assert_eq!(
                next.login(name, PASSWORD),
                Err(locked.into()),
                "even the right password waits"
            );
        }
    }

    // Per connection: five failures on different names lock the connection.
    let mut spray = server.client();
    for i in 0..5 {
        assert_eq!(
            spray.login(&format!("user_{i}"), "wrong password"),
            Err("Username or password incorrect".into())
        );
    }
    assert_eq!(
        spray.login("someone_else", "wrong password"),
        Err(locked.into())
    );
    // Other connections and names are unaffected.
    let mut bob = server.client();
    bob.register("bob", PASSWORD).unwrap();
    assert_eq!(bob.login("bob", PASSWORD), Ok("bob".into()));
}

#[test]
fn registrations_are_limited_per_connection() {
    let server = TestServer::start();
    let mut client = server.client();
    for i in 0..5 {
        client.register(&format!("name_{i}"), PASSWORD).unwrap();
    }
    assert_eq!(
        client.register("name_5", PASSWORD),
        Err("Too many registrations from this connection".into())
    );
    assert_eq!(
        server.client().register("name_5", PASSWORD),
        Ok("name_5".into())
    );
}

#[test]
fn random_and_mutated_messages_never_stop_the_server() {
    let server = TestServer::start();
    let mut alice = server.player("alice");
    let mut bob = server.player("bob");
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let valid = [
        mmo::protocol::ClientMessage::Login {
            username: "alice".into(),
            password: "wrong".into(),
        }
        .encode(),
        mmo::protocol::ClientMessage::Chat {
            text: "hello".into(),
        }
        .encode(),
        mmo::protocol::ClientMessage::Register {
            username: "mallory".into(),
            password: PASSWORD.into(),
        }
        .encode(),
    ];
    for round in 0..24 {
        let mut vandal = server.client();
        for _ in 0..3 {
            let mut bytes = valid[(next() % 3) as usize].clone();
            let at = (next() as usize) % bytes.len();
            match round % 3 {
                0 => bytes[at] ^= 1 << (next() % 8),
                1 => bytes.truncate(at),
                _ => bytes = (0..(next() % 40)).map(|_| next() as u8).collect(),
            }
            vandal.send_raw(bytes);
        }
        // Whatever it sent, the vandal gets answers or is cut off; it never takes the server down.
        vandal.pump();
    }
    alice.chat("still standing");
    let line = bob.expect("alice's line", |m| match m {
        ServerMessage::Chat(line) if line.sender == "alice" => Some(line.text.clone()),
        _ => None,
    });
    assert_eq!(line, "still standing");
}

#[test]
fn a_player_flooding_valid_packets_is_disconnected_and_others_lose_nothing() {
    let server = TestServer::start();
    let mut alice = server.player("alice");
    let mut bob = server.player("bob");
    let mut mallory = server.player("mallory");

    // Valid, encrypted netcode packets from a logged-in player, as fast as the loop goes: far over the
    // per-address budget (600 a second by default). Alice keeps chatting to bob meanwhile.
    let started = Instant::now();
    let mut sent = 0u64;
    let mut lines = 0;
    while !mallory.is_disconnected() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the flooder was never disconnected after {sent} packets"
        );
        for _ in 0..200 {
            mallory.flush();
            sent += 1;
        }
        mallory.pump();
        if sent.is_multiple_of(2_000) {
            alice.chat(&format!("line {lines}"));
            lines += 1;
        }
        bob.pump();
    }
    alice.chat("after the flood");
    lines += 1;
    let texts: Vec<String> = (0..lines)
        .map(|_| {
            bob.expect("alice's lines", |m| match m {
                ServerMessage::Chat(line) if line.sender == "alice" => Some(line.text.clone()),
                _ => None,
            })
        })
        .collect();
    let mut expected: Vec<String> = (0..lines - 1).map(|i| format!("line {i}")).collect();
    expected.push("after the flood".into());
    assert_eq!(texts, expected, "every line, in order");
    assert!(
        bob.received
            .iter()
            .any(|m| matches!(m, ServerMessage::PlayerLeft { name } if name == "mallory")),
        "the others saw the flooder leave"
    );
    // The server still takes new players.
    let mut carol = server.player("carol");
    carol.chat("hi");
    assert_eq!(carol.next_chat().unwrap().text, "hi");
}

#[test]
fn junk_from_many_addresses_never_reaches_the_players() {
    let server = TestServer::start();
    let mut alice = server.player("alice");
    let mut bob = server.player("bob");

    // 32 sockets, each sending 1,000 datagrams: half random bytes, half shaped like a netcode connection
    // request for our protocol (so only decryption could reject them), as fast as possible.
    let target = server.addr;
    let flood = std::thread::spawn(move || {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut request = connection_request::lookalike(mmo::protocol::PROTOCOL_ID);
        let sockets: Vec<UdpSocket> = (0..32)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        for round in 0..1_000 {
            for socket in &sockets {
                for byte in request[connection_request::SEALED].iter_mut() {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    *byte = state as u8;
                }
                let datagram = if round % 2 == 0 {
                    &request[..]
                } else {
                    &request[connection_request::SEALED]
                };
                let _ = socket.send_to(datagram, target);
            }
        }
    });
    let mut sent = Vec::new();
    for i in 0.. {
        let text = format!("line {i}");
        alice.chat(&text);
        sent.push(text);
        std::thread::sleep(Duration::from_millis(20));
        if flood.is_finished() {
            break;
        }
    }
    flood.join().unwrap();
    let received: Vec<String> = sent
        .iter()
        .map(|_| {
            bob.expect("alice's lines", |m| match m {
                ServerMessage::Chat(line) if line.sender == "alice" => Some(line.text.clone()),
                _ => None,
            })
        })
        .collect();
    assert_eq!(received, sent, "every line, in order");
    // Blocking the junk's addresses did not stop newcomers.
    let mut carol = server.player("carol");
    carol.chat("hi");
    assert_eq!(carol.next_chat().unwrap().text, "hi");
}

#[test]
fn the_login_timeout_spares_requests_waiting_for_a_worker() {
    // One worker and a 1 s limit: 80 registrations at once keep the last ones queued past the limit
    // (argon2 takes tens of milliseconds each). Queued is not idle: every one is answered.
    let server = TestServer::start_with(|config| {
        config.login_timeout = 1;
        config.auth_workers = 1;
    });
    // Connect all at once, then ask all at once, so every connection's clock starts together.
    let mut clients: Vec<_> = (0..80)
        .map(|_| TestClient::start_connecting(server.addr))
        .collect();
    while !clients.iter().all(|c| c.is_connected()) {
        clients.iter_mut().for_each(|c| c.pump());
        std::thread::sleep(Duration::from_millis(1));
    }
    let started = Instant::now();
    for (i, client) in clients.iter_mut().enumerate() {
        client.send(&mmo::protocol::ClientMessage::Register {
            username: format!("queued_{i}"),
            password: PASSWORD.into(),
        });
    }
    for mut client in clients {
        client.expect("registered", |m| {
            matches!(m, ServerMessage::Registered { .. }).then_some(())
        });
    }
    assert!(
        started.elapsed() > Duration::from_secs(1),
        "the queue did not outlast the limit; the test proves nothing"
    );
}
