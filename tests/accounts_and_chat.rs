//! End to end: a real server, real UDP clients, a temp database. What a player would see.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::{PASSWORD, TestServer};
use mmo::protocol::{ClientMessage, Request, ServerMessage};

#[test]
fn register_login_and_chat_between_two_clients() {
    let server = TestServer::start();
    let mut alice = server.client();
    assert_eq!(alice.register("Alice", PASSWORD), Ok("Alice".into()));
    assert_eq!(
        alice.login("alice", PASSWORD),
        Ok("Alice".into()),
        "login is case-insensitive, the display name kept"
    );
    let online = alice.expect("online list", |m| match m {
        ServerMessage::OnlinePlayers { names } => Some(names.clone()),
        _ => None,
    });
    assert_eq!(online, ["Alice"]);

    let mut bob = server.player("bob");
    alice.expect("bob joined", |m| {
        (*m == ServerMessage::PlayerJoined { name: "bob".into() }).then_some(())
    });

    bob.chat("  hello Alice, καλημέρα, привет  ");
    for client in [&mut alice, &mut bob] {
        let line = client.next_chat().expect("a chat line");
        assert_eq!(line.sender, "bob");
        assert_eq!(
            line.text, "hello Alice, καλημέρα, привет",
            "trimmed, Unicode intact"
        );
        assert!(
            line.sent_at_ms > 1_700_000_000_000,
            "stamped with the server's clock"
        );
    }
    alice.chat("hi bob");
    assert_eq!(bob.next_chat().unwrap().text, "hi bob");

    // A third player gets the recent history, oldest first.
    let mut carol = server.client();
    carol.register("carol", PASSWORD).unwrap();
    carol.login("carol", PASSWORD).unwrap();
    let history = carol.expect("history", |m| match m {
        ServerMessage::ChatHistory { lines } => Some(lines.clone()),
        _ => None,
    });
    let said: Vec<_> = history
        .iter()
        .map(|l| (l.sender.as_str(), l.text.as_str()))
        .collect();
    assert_eq!(
        said,
        [
            ("bob", "hello Alice, καλημέρα, привет"),
            ("Alice", "hi bob")
        ]
    );

    drop(carol);
    bob.expect("carol left", |m| {
        (*m == ServerMessage::PlayerLeft {
            name: "carol".into(),
        })
        .then_some(())
    });
}

#[test]
fn every_line_reaches_every_player_once_and_in_order() {
    let server = TestServer::start();
    let mut players: Vec<_> = ["pl1", "pl2", "pl3"]
        .iter()
        .map(|n| server.player(n))
        .collect();
    for round in 0..10 {
        for (i, player) in players.iter_mut().enumerate() {
            player.chat(&format!("line {round} from {i}"));
        }
    }
    // Each player's own lines arrive in the order sent; all players see the same total order.
    let mut orders = Vec::new();
    for player in &mut players {
        let lines: Vec<_> = (0..30).map(|_| player.next_chat().unwrap()).collect();
        orders.push(
            lines
                .iter()
                .map(|l| (l.sender.clone(), l.text.clone()))
                .collect::<Vec<_>>(),
        );
    }
    assert!(
        orders.windows(2).all(|w| w[0] == w[1]),
        "everyone sees one order"
    );
    for sender in ["pl1", "pl2", "pl3"] {
        let own: Vec<_> = orders[0]
            .iter()
            .filter(|(s, _)| s == sender)
            .map(|(_, t)| t.clone())
            .collect();
        let i = sender[2..].parse::<usize>().unwrap() - 1;
        let expected: Vec<_> = (0..10)
            .map(|round| format!("line {round} from {i}"))
            .collect();
        assert_eq!(own, expected);
    }
    // Nothing was delivered twice: the next thing each player sees is a fresh line.
    players[0].chat("end");
    for player in &mut players {
        assert_eq!(player.next_chat().unwrap().text, "end");
    }
}

#[test]
fn lines_said_in_one_tick_reach_each_player_as_one_message_in_order() {
    let server = TestServer::start();
    let mut alice = server.player("alice");
    let mut bob = server.player("bob");
    let lines: Vec<String> = (0..4).map(|i| format!("together {i}")).collect();
    let messages: Vec<ClientMessage> = lines
        .iter()
        .map(|text| ClientMessage::Chat { text: text.clone() })
        .collect();
    alice.send_together(&messages);
    let wire = bob.wire_messages_for(Duration::from_secs(2));
    let batches: Vec<Vec<String>> = wire
        .iter()
        .filter_map(|message| match message {
            Some(ServerMessage::ChatLines { lines }) => {
                Some(lines.iter().map(|l| l.text.clone()).collect())
            }
            Some(ServerMessage::Chat(line)) => Some(vec![line.text.clone()]),
            _ => None,
        })
        .collect();
    assert_eq!(
        batches,
        std::slice::from_ref(&lines),
        "one message, every line in order"
    );
    // Alice's client shows them as four lines, like any other.
    let shown: Vec<String> = (0..4).map(|_| alice.next_chat().unwrap().text).collect();
    assert_eq!(shown, lines);
}

#[test]
fn wrong_password_and_unknown_user_get_the_same_answer() {
    let server = TestServer::start();
    let mut client = server.client();
    client.register("alice", PASSWORD).unwrap();
    let wrong_password = client.login("alice", "not the password").unwrap_err();
    let unknown_user = client.login("mallory", PASSWORD).unwrap_err();
    let malformed_name = client.login("no such name!", PASSWORD).unwrap_err();
    assert_eq!(wrong_password, "Username or password incorrect");
    assert_eq!(unknown_user, wrong_password);
    assert_eq!(malformed_name, wrong_password);
    // Still in the LOGIN state: the right password works afterwards.
    assert_eq!(client.login("alice", PASSWORD), Ok("alice".into()));
}

#[test]
fn a_taken_name_in_another_case_is_refused() {
    let server = TestServer::start();
    let mut first = server.client();
    first.register("Alice", PASSWORD).unwrap();
    let mut second = server.client();
    assert_eq!(
        second.register("aLICE", "another password"),
        Err("This username is already taken".into())
    );
    assert_eq!(
        second.register("Alice", "another password"),
        Err("This username is already taken".into())
    );
    // The original owner's password is untouched.
    assert_eq!(
        second.login("alice", "another password"),
        Err("Username or password incorrect".into())
    );
    assert_eq!(second.login("ALICE", PASSWORD), Ok("Alice".into()));
}

#[test]
fn account_rules_are_enforced_with_clear_reasons() {
    let server = TestServer::start();
    let mut client = server.client();
    let too_short = client.register("al", PASSWORD).unwrap_err();
    assert!(too_short.contains("3 to 20"), "{too_short}");
    let bad_chars = client.register("al ice", PASSWORD).unwrap_err();
    assert!(bad_chars.contains("letters, digits and _"), "{bad_chars}");
    let short_password = client.register("alice", "1234567").unwrap_err();
    assert!(short_password.contains("8 to 128"), "{short_password}");
    let long_password = client.register("alice", &"x".repeat(129)).unwrap_err();
    assert!(long_password.contains("8 to 128"), "{long_password}");
    assert_eq!(
        client.register("alice_2", &"é".repeat(128)),
        Ok("alice_2".into())
    );
}

#[test]
fn chat_before_login_is_refused_and_not_broadcast() {
    let server = TestServer::start();
    let mut alice = server.player("alice");
    let mut stranger = server.client();
    stranger.chat("buy gold at example.com");
    assert_eq!(stranger.next_chat(), Err("You must log in to chat".into()));

    // Had the stranger's line been broadcast, it would reach alice before this one (one ordered channel).
    alice.chat("anyone here?");
    assert_eq!(alice.next_chat().unwrap().text, "anyone here?");

    // And an unauthenticated connection receives none of the players' chat: its own request's answer
    // comes after alice's line was broadcast, and nothing came before it.
    stranger.chat("still not logged in");
    assert_eq!(stranger.next_chat(), Err("You must log in to chat".into()));
    assert!(
        !stranger.received.iter().any(|m| matches!(
            m,
            ServerMessage::Chat(_) | ServerMessage::PlayerJoined { .. }
        )),
        "{:?}",
        stranger.received
    );
}

#[test]
fn bad_chat_lines_are_denied_with_a_reason_and_not_broadcast() {
    let server = TestServer::start();
    let mut alice = server.player("alice");
    let mut bob = server.player("bob");
    alice.chat("   ");
    assert_eq!(alice.next_chat(), Err("Message is empty".into()));
    alice.chat(&"x".repeat(257));
    assert_eq!(
        alice.next_chat(),
        Err("Message is too long (at most 256 characters)".into())
    );
    alice.chat("bell\u{7}");
    assert_eq!(
        alice.next_chat(),
        Err("Message contains control characters".into())
    );
    alice.chat(&"ü".repeat(256));
    assert_eq!(
        bob.next_chat().unwrap().text,
        "ü".repeat(256),
        "the first line bob sees is the legal one"
    );
}

#[test]
fn a_client_cannot_make_a_line_appear_under_another_name() {
    let server = TestServer::start();
    let mut alice = server.player("alice");
    let mut bob = server.player("bob");
    let mut mallory = server.player("mallory");

    // The Chat message has no sender field: whatever the text says, the server names the session.
    mallory.chat("alice says: \"send me your password\"");
    let line = bob.next_chat().unwrap();
    assert_eq!(line.sender, "mallory");

    // A hand-made message that smuggles a sender after the text does not decode: mallory is cut off.
    let mut forged = ClientMessage::Chat {
        text: "I am alice".into(),
    }
    .encode();
    forged.extend_from_slice(&[5, b'a', b'l', b'i', b'c', b'e']);
    mallory.send_raw(forged);
    mallory.expect_disconnected();

    alice.chat("hello");
    let line = bob.next_chat().unwrap();
    assert_eq!(
        (line.sender.as_str(), line.text.as_str()),
        ("alice", "hello")
    );
    assert!(
        bob.received
            .iter()
            .all(|m| !matches!(m, ServerMessage::Chat(l) if l.text == "I am alice"))
    );
}

#[test]
fn a_user_registered_before_a_restart_can_log_in_after_it() {
    let mut server = TestServer::start();
    let mut alice = server.player("alice");
    alice.chat("remember me");
    alice.next_chat().unwrap();
    server.restart();
    let mut again = server.client();
    assert_eq!(again.login("alice", PASSWORD), Ok("alice".into()));
    let history = again.expect("history", |m| match m {
        ServerMessage::ChatHistory { lines } => Some(lines.clone()),
        _ => None,
    });
    assert_eq!(
        history.last().map(|l| l.text.as_str()),
        Some("remember me"),
        "history is stored too"
    );
    assert_eq!(
        server.client().register("ALICE", PASSWORD),
        Err("This username is already taken".into())
    );
}

#[test]
fn garbage_bytes_disconnect_the_sender_while_others_keep_chatting() {
    let server = TestServer::start();
    let mut alice = server.player("alice");
    let mut bob = server.player("bob");
    let mut vandal = server.client();

    // Raw junk at the UDP socket, outside netcode: dropped without a trace.
    let junk = UdpSocket::bind("127.0.0.1:0").unwrap();
    for size in [0, 1, 100, 1200] {
        junk.send_to(&vec![0xAB; size], server.addr).unwrap();
    }
    // Junk inside a valid renet message: the sender is disconnected.
    vandal.send_raw(vec![0xFF, 0x00, 0x13, 0x37, 0x42]);
    vandal.expect_disconnected();

    // An oversized message (past the decode limit) from a logged-in player: disconnected too.
    let mut big = server.player("big");
    big.send_raw(vec![2; 4096]);
    big.expect_disconnected();

    for i in 0..5 {
        alice.chat(&format!("still here {i}"));
        assert_eq!(bob.next_chat().unwrap().text, format!("still here {i}"));
    }
}

#[test]
fn a_second_login_kicks_the_older_session() {
    let server = TestServer::start();
    let mut watcher = server.player("watcher");
    let mut first = server.player("alice");
    watcher.expect("alice joined", |m| {
        matches!(m, ServerMessage::PlayerJoined { .. }).then_some(())
    });

    let mut second = server.client();
    assert_eq!(second.login("Alice", PASSWORD), Ok("alice".into()));
    let reason = first.expect("kick", |m| match m {
        ServerMessage::Kicked { reason } => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(reason, "Logged in from another location");
    first.expect_disconnected();

    // The new session is the one that speaks for alice.
    second.chat("it's me");
    assert_eq!(watcher.next_chat().unwrap().sender, "alice");
    let online = second.expect("online list", |m| match m {
        ServerMessage::OnlinePlayers { names } => Some(names.clone()),
        _ => None,
    });
    assert_eq!(online, ["alice", "watcher"]);
}

#[test]
fn one_request_at_a_time_and_no_second_login() {
    let server = TestServer::start();
    let mut client = server.client();
    client.send(&ClientMessage::Register {
        username: "alice".into(),
        password: PASSWORD.into(),
    });
    client.send(&ClientMessage::Register {
        username: "alice2".into(),
        password: PASSWORD.into(),
    });
    let answers: Vec<_> = (0..2).map(|_| client.next_message()).collect();
    assert!(
        answers.contains(&ServerMessage::Registered {
            username: "alice".into()
        }),
        "{answers:?}"
    );
    assert!(
        answers.contains(&ServerMessage::Denied {
            request: Request::Register,
            reason: "Please wait for the answer to your last request".into()
        }),
        "{answers:?}"
    );
    client.login("alice", PASSWORD).unwrap();
    assert_eq!(
        client.login("alice", PASSWORD),
        Err("You are already logged in".into())
    );
}

#[test]
fn login_storm_of_20_completes_while_a_pair_keeps_chatting() {
    let server = TestServer::start();
    let mut alice = server.player("alice");
    let mut bob = server.player("bob");
    let addr = server.addr;

    let storm: Vec<_> = (0..20)
        .map(|i| {
            std::thread::spawn(move || {
                let mut client = common::TestClient::connect(addr);
                let name = format!("storm_{i}");
                client
                    .register(&name, PASSWORD)
                    .expect("register during the storm");
                client
                    .login(&name, PASSWORD)
                    .expect("login during the storm")
            })
        })
        .collect();

    // The pair keeps talking while the storm runs: every line arrives, in order.
    let mut sent = 0;
    while !storm.iter().all(|t| t.is_finished()) || sent < 10 {
        alice.chat(&format!("during the storm {sent}"));
        let line = bob.expect("alice's line", |m| match m {
            ServerMessage::Chat(line) if line.sender == "alice" => Some(line.text.clone()),
            _ => None,
        });
        assert_eq!(line, format!("during the storm {sent}"));
        sent += 1;
    }
    let names: Vec<String> = storm
        .into_iter()
        .map(|t| t.join().expect("storm client"))
        .collect();
    assert_eq!(names.len(), 20);
    assert!(names.iter().all(|n| n.starts_with("storm_")));
}

#[test]
fn graceful_shutdown_tells_every_client_and_keeps_what_was_said() {
    let mut server = TestServer::start();
    let mut alice = server.player("alice");
    let mut stranger = server.client();
    alice.chat("last words");
    alice.next_chat().unwrap();

    server.stop();
    for client in [&mut alice, &mut stranger] {
        let reason = client.expect("shutdown notice", |m| match m {
            ServerMessage::Kicked { reason } => Some(reason.clone()),
            _ => None,
        });
        assert_eq!(reason, "Server is shutting down");
        client.expect_disconnected();
    }
    server.restart();
    let mut again = server.client();
    again.login("alice", PASSWORD).unwrap();
    let history = again.expect("history", |m| match m {
        ServerMessage::ChatHistory { lines } => Some(lines.clone()),
        _ => None,
    });
    assert_eq!(history.last().map(|l| l.text.as_str()), Some("last words"));
}
