//! The server's transport as a client sees it on the wire: a recording proxy between them counts what
//! the server sends.

mod common;

use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::*;

/// Pumps `client` for `time`.
fn pump_for(client: &mut TestClient, time: Duration) {
    let until = Instant::now() + time;
    while Instant::now() < until {
        client.pump();
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_quiet_player_gets_acks_ten_times_a_second_and_lines_at_once() {
    let server = TestServer::start();
    let proxy = Proxy::start(server.addr);
    let mut alice = TestClient::connect(proxy.addr);
    alice.register("Alice", PASSWORD).unwrap();
    alice.login("Alice", PASSWORD).unwrap();
    let mut bob = server.player("Bob");
    // Alice's client sends a packet every frame (60 a second), so she is always owed acks; once the
    // login's messages are acknowledged she has nothing else coming.
    pump_for(&mut alice, Duration::from_millis(500));
    let before = proxy.sent_to_client();
    pump_for(&mut alice, Duration::from_secs(2));
    let quiet = proxy.sent_to_client() - before;
    assert!(
        (10..=40).contains(&quiet),
        "a quiet player is sent about 10 packets a second, not one a tick (60): {quiet} in 2 s"
    );

    bob.chat("still instant");
    assert_eq!(alice.next_chat().unwrap().text, "still instant");
    alice.chat("and back");
    for expected in ["still instant", "and back"] {
        assert_eq!(bob.next_chat().unwrap().text, expected);
    }
}
