//! Several server processes as one world (`--bus`): two shards sharing the account database and a real
//! Redis (started on loopback by the test), players on each chatting, whispering across, seeing each
//! other online; a second login across shards (in turn, racing, and while Redis is away); a shard that
//! dies; Redis going away and coming back empty.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::process::ServerProcess;
use common::redis::{RedisLink, TestRedis};
use common::*;
use mmo::protocol::{ClientMessage, ServerMessage};

/// Shard `a` on a fresh database with `redis` as its bus (chat limits lifted, as in other tests).
fn first_shard(redis: &TestRedis) -> TestServer {
    first_shard_with(redis, |_| {})
}

/// [`first_shard`], with `tweak` on its configuration.
fn first_shard_with(
    redis: &TestRedis,
    tweak: impl Fn(&mut mmo::config::Config) + 'static,
) -> TestServer {
    let url = redis.url();
    TestServer::start_with(move |config| {
        config.chat_burst = 1000;
        config.chat_per_second = 1000.0;
        config.bus = Some(url.clone().into());
        config.shard = Some("a".into());
        tweak(config);
    })
}

/// Shard `a` serving metrics, and shard `b` beside it without.
fn shards_a_with_metrics_and_b(redis: &TestRedis) -> (TestServer, TestServer) {
    let a = first_shard_with(redis, |config| {
        config.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
    });
    let b = a.another(|config| {
        config.shard = Some("b".into());
        config.metrics_bind = None;
    });
    (a, b)
}

/// Asks `/who` until the answer is `expected` (presence crosses shards within a roster period).
fn who_until(client: &mut TestClient, expected: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answer = client.command("who").unwrap();
        if answer == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/who still says {answer:?}, not {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn players_on_two_shards_chat_whisper_and_see_each_other() {
    let redis = TestRedis::start();
    let a = first_shard(&redis);
    let b = a.another(|config| config.shard = Some("b".into()));
    let mut alice = a.player("alice");
    let mut bob = b.player("bob");

    who_until(&mut alice, "2 online: alice, bob");
    who_until(&mut bob, "2 online: alice, bob");
    alice.chat("hello from shard a");
    let line = bob.next_chat().unwrap();
    assert_eq!(
        (line.sender.as_str(), line.text.as_str()),
        ("alice", "hello from shard a")
    );
    assert_eq!(alice.next_chat().unwrap().text, "hello from shard a");

    bob.chat("/w alice psst");
    let whisper = alice.next_whisper();
    assert_eq!(
        (whisper.from.as_str(), whisper.text.as_str()),
        ("bob", "psst")
    );
    assert_eq!(bob.next_whisper().to, "alice");
    assert_eq!(
        bob.command("w nobody hi"),
        Err("nobody is not online".into())
    );

    // A third player, on a, hears of bob, and sees him leave when he logs out of b.
    let mut carol = a.player("carol");
    let online = carol
        .received
        .iter()
        .find_map(|m| match m {
            ServerMessage::OnlinePlayers { names } => Some(names.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(online, ["alice", "bob", "carol"]);
    drop(bob);
    carol.expect("bob leaving", |m| {
        matches!(m, ServerMessage::PlayerLeft { name } if name == "bob").then_some(())
    });
}

/// Shard `b` beside `a`, reaching Redis through `link` (so a test can cut it), with `tweak`; alice
/// plays on `a`, bob on `b`, they see each other, and a line crosses before the test begins.
fn b_through_link(
    a: &TestServer,
    link: &RedisLink,
    tweak: impl Fn(&mut mmo::config::Config),
) -> (TestServer, TestClient, TestClient) {
    let through_link = link.url();
    let b = a.another(|config| {
        config.shard = Some("b".into());
        config.bus = Some(through_link.clone().into());
        tweak(config);
    });
    let mut alice = a.player("alice");
    let mut bob = b.player("bob");
    who_until(&mut bob, "2 online: alice, bob");
    who_until(&mut alice, "2 online: alice, bob");
    alice.chat("before");
    assert_eq!(bob.next_chat().unwrap().text, "before");
    assert_eq!(alice.next_chat().unwrap().text, "before");
    (b, alice, bob)
}

#[test]
fn a_shard_away_from_the_bus_for_5_s_catches_up_on_every_line_in_order() {
    let redis = TestRedis::start();
    let link = RedisLink::start(redis.port);
    let a = first_shard(&redis);
    let (_b, mut alice, mut bob) = b_through_link(&a, &link, |_| {});

    // Shard b loses Redis for 5 s while alice talks on a.
    link.cut();
    let said: Vec<String> = (0..50).map(|i| format!("while b was away {i}")).collect();
    for text in &said {
        alice.chat(text);
        pump_for(&mut [&mut alice, &mut bob], Duration::from_millis(100));
    }
    link.restore();
    alice.chat("after");
    let heard: Vec<String> = (0..=said.len())
        .map(|_| bob.next_chat().unwrap().text)
        .collect();
    let mut expected = said.clone();
    expected.push("after".into());
    assert_eq!(heard, expected, "every line, once, in order");
    assert!(
        !bob.received
            .iter()
            .any(|m| matches!(m, ServerMessage::System { text } if text == mmo::bus::MISSED)),
        "nothing was missed"
    );
}

#[test]
fn a_shard_long_away_from_the_bus_pauses_chat_at_its_queue_bound_and_loses_no_acknowledged_line() {
    let redis = TestRedis::start();
    let link = RedisLink::start(redis.port);
    let a = first_shard(&redis);
    let (_b, mut alice, mut bob) = b_through_link(&a, &link, |config| config.bus_queue = 100);

    // Bob talks while shard b cannot reach Redis: his lines wait in b's bus queue until nine tenths of
    // it are taken, then chat pauses.
    link.cut();
    let mut acknowledged = Vec::new();
    for n in 0..200 {
        let text = format!("from b {n}");
        bob.chat(&text);
        match bob.next_chat() {
            Ok(line) => {
                assert_eq!(line.text, text);
                acknowledged.push(text);
            }
            Err(reason) => {
                assert_eq!(reason, mmo::chat::PAUSED);
                break;
            }
        }
    }
    assert!(
        (85..=95).contains(&acknowledged.len()),
        "{} lines acknowledged with a bus queue of 100",
        acknowledged.len()
    );
    link.restore();
    // Back: every acknowledged line reaches alice on a, in order, and chat goes on.
    for text in &acknowledged {
        assert_eq!(&alice.next_chat().unwrap().text, text);
    }
    let deadline = Instant::now() + PATIENCE;
    loop {
        bob.chat("back");
        match bob.next_chat() {
            Ok(line) if line.text == "back" => break,
            Ok(line) => panic!("unexpected {line:?}"),
            Err(reason) => assert_eq!(reason, mmo::chat::PAUSED),
        }
        assert!(Instant::now() < deadline, "chat stayed paused");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(alice.next_chat().unwrap().text, "back");
}

#[test]
fn junk_on_the_bus_is_skipped_and_counted_and_the_lines_after_it_cross() {
    let redis = TestRedis::start();
    let (a, b) = shards_a_with_metrics_and_b(&redis);
    let mut alice = a.player("alice");
    let mut bob = b.player("bob");
    who_until(&mut alice, "2 online: alice, bob");

    // Anyone who can write to Redis: an entry without the field, one that does not decode, one too big
    // (its value read from stdin: `-x`).
    let big = "x".repeat(300 * 1024);
    for (field, value) in [("other", "1"), ("e", "garbage"), ("e", big.as_str())] {
        let mut add = std::process::Command::new("redis-cli")
            .args([
                "-p",
                &redis.port.to_string(),
                "-x",
                "XADD",
                "mmo:events",
                "*",
                field,
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-cli runs");
        use std::io::Write;
        add.stdin
            .take()
            .unwrap()
            .write_all(value.as_bytes())
            .unwrap();
        assert!(add.wait().unwrap().success());
    }
    bob.chat("after the junk");
    assert_eq!(alice.next_chat().unwrap().text, "after the junk");
    let metrics = http_get(a.metrics_addr(), "/metrics").1;
    assert!(
        metrics.contains("\nmmo_bus_entries_undecodable_total 3\n"),
        "{metrics}"
    );
}

#[test]
fn a_shard_away_longer_than_the_stream_keeps_tells_its_players() {
    let redis = TestRedis::start();
    let link = RedisLink::start(redis.port);
    let a = first_shard_with(&redis, |config| config.bus_stream_len = 100);
    let (_b, mut alice, mut bob) = b_through_link(&a, &link, |_| {});

    link.cut();
    for i in 0..400 {
        alice.chat(&format!("too many {i}"));
    }
    pump_for(&mut [&mut alice, &mut bob], Duration::from_millis(500));
    link.restore();
    bob.expect("the notice that lines may be missing", |m| {
        matches!(m, ServerMessage::System { text } if text == mmo::bus::MISSED).then_some(())
    });
    // And the bus carries on.
    let deadline = Instant::now() + PATIENCE;
    loop {
        alice.chat("still there?");
        pump_for(&mut [&mut alice, &mut bob], Duration::from_millis(200));
        if bob
            .unread()
            .iter()
            .any(|m| matches!(m, ServerMessage::Chat(line) if line.text == "still there?"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "the bus never carried on");
    }
}

#[test]
fn a_second_login_on_another_shard_kicks_the_first() {
    let redis = TestRedis::start();
    let a = first_shard(&redis);
    let b = a.another(|config| config.shard = Some("b".into()));
    let mut on_a = a.player("alice");
    let mut on_b = b.login_again("alice");
    assert_eq!(on_a.kicked(), "Logged in from another location");
    on_a.expect_disconnected();
    on_b.chat("still here");
    assert_eq!(on_b.next_chat().unwrap().text, "still here");
    assert!(on_b.is_connected());
}

#[test]
fn two_shards_racing_to_log_in_one_account_end_with_one_session() {
    let redis = TestRedis::start();
    let a = first_shard(&redis);
    let b = a.another(|config| config.shard = Some("b".into()));
    a.client().register("alice", PASSWORD).unwrap();
    let mut bob = b.player("bob");
    let kicked = |client: &TestClient| {
        client.received.iter().find_map(|m| match m {
            ServerMessage::Kicked { reason } => Some(reason.clone()),
            _ => None,
        })
    };
    for round in 0..3 {
        // The same login sent to both shards at once: both succeed, then the claim decides.
        let (mut on_a, mut on_b) = (a.client(), b.client());
        let login = ClientMessage::Login {
            username: "alice".into(),
            password: PASSWORD.into(),
        };
        on_a.send(&login);
        on_b.send(&login);
        let deadline = Instant::now() + PATIENCE;
        let (mut winner, loser) = loop {
            on_a.pump();
            on_b.pump();
            match (kicked(&on_a), kicked(&on_b)) {
                (Some(_), Some(_)) => panic!("round {round}: both sessions were closed"),
                (Some(_), None) => break (on_b, on_a),
                (None, Some(_)) => break (on_a, on_b),
                (None, None) => {
                    assert!(Instant::now() < deadline, "round {round}: two sessions");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        assert_eq!(
            kicked(&loser).as_deref(),
            Some("Logged in from another location")
        );
        // The other plays on, and is the only alice anyone sees.
        let text = format!("round {round}");
        winner.chat(&text);
        bob.expect("alice's line", |m| {
            matches!(m, ServerMessage::Chat(line) if line.text == text).then_some(())
        });
        who_until(&mut bob, "2 online: alice, bob");
        winner.pump();
        assert_eq!(kicked(&winner), None, "round {round}");
        drop((winner, loser));
        who_until(&mut bob, "1 online: bob");
    }
}

#[test]
fn a_shard_that_dies_leaves_everyones_list_within_seconds_and_its_players_play_on_elsewhere() {
    let redis = TestRedis::start();
    let a = first_shard(&redis);
    let mut alice = a.player("alice");
    let flags = ["--bus", &redis.url(), "--shard", "doomed"];
    let b = ServerProcess::start(&a.db, &flags);
    let mut bob = TestClient::connect(b.addr);
    bob.register("bob", PASSWORD).unwrap();
    bob.login("bob", PASSWORD).unwrap();
    who_until(&mut alice, "2 online: alice, bob");

    drop(b); // SIGKILL: no goodbye on the bus
    let killed = Instant::now();
    alice.expect("bob leaving", |m| {
        matches!(m, ServerMessage::PlayerLeft { name } if name == "bob").then_some(())
    });
    assert!(
        killed.elapsed() < Duration::from_secs(10),
        "took {:?}",
        killed.elapsed()
    );
    assert_eq!(alice.command("who"), Ok("1 online: alice".into()));

    // Nothing acknowledged is lost: the account bob registered on the dead shard logs in on `a` at
    // once (its claim on the account does not outlive the shard), and everyone sees him back.
    let mut bob = a.login_again("bob");
    who_until(&mut alice, "2 online: alice, bob");
    bob.chat("back on a");
    assert_eq!(alice.next_chat().unwrap().text, "back on a");
}

#[test]
fn without_redis_a_shard_keeps_its_players_chatting_and_resynchronises_when_it_returns() {
    let mut redis = TestRedis::start();
    let (a, b) = shards_a_with_metrics_and_b(&redis);
    let metric_until = |name: &str, value: &str| {
        let deadline = Instant::now() + PATIENCE;
        while !http_get(a.metrics_addr(), "/metrics")
            .1
            .contains(&format!("\n{name} {value}\n"))
        {
            assert!(Instant::now() < deadline, "{name} never {value}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let bus_up = |up: &str| metric_until("mmo_bus_up", up);
    let mut alice = a.player("alice");
    let mut carol = a.player("carol");
    let mut bob = b.player("bob");
    who_until(&mut alice, "3 online: alice, bob, carol");

    bus_up("1");
    // a hears one other shard, with bob on it.
    metric_until("mmo_bus_shards", "1");
    metric_until("mmo_players_elsewhere", "1");
    let port = redis.port;
    redis.kill();
    bus_up("0");
    alice.chat("redis is down");
    assert_eq!(carol.next_chat().unwrap().text, "redis is down");
    assert_eq!(alice.next_chat().unwrap().text, "redis is down");

    let _redis = TestRedis::start_on(port);
    // Once both shards are back on the bus (this Redis restarted empty: what the stream held is gone,
    // so alice says it again until it crosses), chat crosses again; presence too.
    let deadline = Instant::now() + PATIENCE;
    let crossed = |bob: &mut TestClient| {
        bob.unread()
            .iter()
            .any(|m| matches!(m, ServerMessage::Chat(line) if line.text == "anyone on b?"))
    };
    while !crossed(&mut bob) {
        assert!(Instant::now() < deadline, "chat never crossed again");
        alice.chat("anyone on b?");
        std::thread::sleep(Duration::from_millis(300));
    }
    who_until(&mut bob, "3 online: alice, bob, carol");
    bus_up("1");

    // Resynchronised, not rebuilt: Redis came back empty, yet bob never saw a's players leave.
    let left: Vec<_> = bob
        .received
        .iter()
        .filter(|m| matches!(m, ServerMessage::PlayerLeft { .. }))
        .collect();
    assert!(left.is_empty(), "bob saw {left:?}");
    // The accounts online on a were claimed again: carol logging in on b still ends her session on a.
    let mut carol_on_b = b.login_again("carol");
    assert_eq!(carol.kicked(), "Logged in from another location");
    carol_on_b.chat("moved to b");
    alice.expect("carol's line from b", |m| {
        matches!(m, ServerMessage::Chat(line) if line.text == "moved to b").then_some(())
    });
}

#[test]
fn a_second_login_while_redis_is_away_ends_with_one_session_when_it_returns() {
    let mut redis = TestRedis::start();
    let a = first_shard(&redis);
    let b = a.another(|config| config.shard = Some("b".into()));
    let mut on_a = a.player("alice");
    let mut bob = b.player("bob");
    who_until(&mut bob, "2 online: alice, bob");

    let port = redis.port;
    redis.kill();
    // b cannot tell a: both sessions play while the bus is away...
    let mut on_b = b.login_again("alice");
    on_a.chat("still on a");
    assert_eq!(on_a.next_chat().unwrap().text, "still on a");
    // ...and once it is back (empty), the older one is closed.
    let _redis = TestRedis::start_on(port);
    assert_eq!(on_a.kicked(), "Logged in from another location");
    on_a.expect_disconnected();
    // (The line said on a while Redis was away crosses once it is back, so it may come first.)
    on_b.chat("only on b");
    on_b.expect("her line on b", |m| {
        matches!(m, ServerMessage::Chat(line) if line.text == "only on b").then_some(())
    });
    who_until(&mut bob, "2 online: alice, bob");
}

#[test]
fn a_password_protected_bus_works_and_its_password_is_never_logged() {
    let redis = TestRedis::start_with_password("bus-s3cret");
    let a = first_shard(&redis);
    let mut alice = a.player("alice");
    let url = redis.url();
    let mut b = ServerProcess::start(&a.db, &["--bus", &url, "--shard", "b"]);
    let mut bob = TestClient::connect(b.addr);
    bob.register("bob", PASSWORD).unwrap();
    bob.login("bob", PASSWORD).unwrap();
    who_until(&mut alice, "2 online: alice, bob");
    bob.chat("through a locked bus");
    alice.expect("bob's line", |m| {
        matches!(m, ServerMessage::Chat(line) if line.text == "through a locked bus").then_some(())
    });
    let shown = b.logged("bus").unwrap();
    assert!(shown.starts_with("redis://***@127.0.0.1:"), "{shown}");
    assert!(b.started.iter().all(|l| !l.contains("bus-s3cret")));

    // A wrong password: the shard plays alone, says why, and never what it tried.
    let wrong = url.replace("bus-s3cret", "not-the-password");
    let c = ServerProcess::start(&a.db, &["--bus", &wrong, "--shard", "c"]);
    let mut said = Vec::new();
    while let Ok(line) = c.logs.recv_timeout(PATIENCE) {
        said.push(line);
        if said.last().unwrap().contains("cannot reach the bus") {
            break;
        }
    }
    let refused = said.last().unwrap();
    assert!(refused.contains("cannot reach the bus"), "{said:?}");
    assert!(refused.to_lowercase().contains("pass"), "{refused}");
    assert!(
        c.started
            .iter()
            .chain(&said)
            .all(|l| !l.contains("not-the-password")),
        "{said:?}"
    );
}

#[test]
fn a_mute_or_ban_on_one_shard_holds_on_every_shard() {
    let redis = TestRedis::start();
    let b = first_shard(&redis);
    let mut bob = b.player("bob");
    let flags = ["--bus", &redis.url(), "--shard", "ops"];
    let mut ops = ServerProcess::start(&b.db, &flags);

    assert_eq!(ops.run("mute bob 10m spam"), "bob is muted for 10m: spam");
    assert_eq!(bob.next_system(), "You are muted for 10m: spam");
    bob.chat("can I?");
    assert!(
        bob.next_chat()
            .unwrap_err()
            .starts_with("You are muted for ")
    );
    assert_eq!(ops.run("unmute bob"), "bob is no longer muted");
    assert_eq!(bob.next_system(), "You may chat again");

    assert!(
        ops.run("ban bob 1h cheating")
            .starts_with("bob is banned until ")
    );
    let reason = bob.kicked();
    assert!(
        reason.starts_with("You are banned until ") && reason.ends_with(": cheating"),
        "{reason}"
    );
    let mut again = b.client();
    assert!(
        again
            .login("bob", PASSWORD)
            .unwrap_err()
            .starts_with("You are banned until ")
    );
}

#[test]
fn token_logins_go_to_the_least_loaded_shard_or_back_to_theirs_while_it_runs() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("netcode.key");
    std::fs::write(&key_file, [7u8; 32]).unwrap();
    let url = redis.url();
    let a = TestServer::start_token_with(move |config| {
        config.netcode_key_file = Some(key_file.clone());
        config.bus = Some(url.clone().into());
        config.shard = Some("a".into());
    });
    let mut b = a.another(|config| config.shard = Some("b".into()));
    // alice plays on a (whichever shard her token names, she connects there).
    let mut alice = a.token_player("alice");
    // Once a's routing table shows a with one player and b with none, a's login endpoint hands out
    // tokens for b, which accepts them (the shards share the netcode key).
    let api = a.api();
    api.register("bob", PASSWORD).unwrap();
    let deadline = Instant::now() + PATIENCE;
    let token = loop {
        let login = api.login("bob", PASSWORD).unwrap();
        let token = mmo::client::api::decode_connect_token(&login.connect_token).unwrap();
        if token.server_addresses[0] == Some(b.addr) {
            break login.connect_token;
        }
        assert!(
            Instant::now() < deadline,
            "a never routed to b: {:?}",
            token.server_addresses[0]
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let mut bob = TestClient::connect_with_token(&token);
    bob.expect("logged in on b", |m| {
        matches!(m, ServerMessage::LoggedIn { name } if name == "bob").then_some(())
    });
    who_until(&mut alice, "2 online: alice, bob");

    // carol joins a (one each: a tie, and a's endpoint prefers a), then alice leaves a.
    api.register("carol", PASSWORD).unwrap();
    let _carol = login_until(&api, "carol", a.addr);
    drop(alice);
    who_until(&mut bob, "2 online: bob, carol");
    // Now b's endpoint would send a newcomer to b (a tie, or b less loaded), but alice goes back to a.
    let _alice = login_until(&b.api(), "alice", a.addr);
    // Unless her client says it lost a (a shard that froze, or died before its presence expired,
    // is still listed): then b.
    let session = b.api().login("alice", PASSWORD).unwrap().session_token;
    let resumed = b.api().resume_avoiding(&session, Some(a.addr)).unwrap();
    let token = mmo::client::api::decode_connect_token(&resumed.connect_token).unwrap();
    assert_eq!(
        token.server_addresses[0],
        Some(b.addr),
        "sent back to the shard she lost"
    );
    // A newcomer still goes to the least loaded (or, on a tie, b itself).
    b.api().register("dave", PASSWORD).unwrap();
    let _dave = login_until(&b.api(), "dave", b.addr);

    // b stops (a rolling restart): bob's next login goes to a at once, not back to b until b's
    // presence expires.
    b.stop();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let login = a.api().login("bob", PASSWORD).unwrap();
        let token = mmo::client::api::decode_connect_token(&login.connect_token).unwrap();
        if token.server_addresses[0] == Some(a.addr) {
            break;
        }
        assert!(Instant::now() < deadline, "a still routes bob to b");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Logs `name` in over `api` until the connect token names `shard`, then connects with it there.
fn login_until(api: &mmo::client::api::ApiClient, name: &str, shard: SocketAddr) -> TestClient {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let login = api.login(name, PASSWORD).unwrap();
        let token = mmo::client::api::decode_connect_token(&login.connect_token).unwrap();
        if token.server_addresses[0] == Some(shard) {
            let mut client = TestClient::connect_with_token(&login.connect_token);
            client.expect("logged in", |m| {
                matches!(m, ServerMessage::LoggedIn { .. }).then_some(())
            });
            return client;
        }
        assert!(
            Instant::now() < deadline,
            "{name} was never sent to {shard}: {:?}",
            token.server_addresses[0]
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn readyz_says_not_ready_while_redis_is_away() {
    let mut redis = TestRedis::start();
    let url = redis.url();
    let a = TestServer::start_with(move |config| {
        config.bus = Some(url.clone().into());
        config.shard = Some("a".into());
        config.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
    });
    let metrics = a.metrics_addr();
    probe_until(metrics, "/readyz", 200, "\"status\":\"ok\"");
    let port = redis.port;
    redis.kill();
    probe_until(metrics, "/readyz", 503, "the bus (Redis) is unreachable");
    assert_eq!(http_get(metrics, "/healthz").0, 200, "alive all along");
    let _redis = TestRedis::start_on(port);
    probe_until(metrics, "/readyz", 200, "\"status\":\"ok\"");
}

#[test]
fn an_ip_ban_and_the_allow_list_set_on_one_shard_hold_on_every_shard() {
    let redis = TestRedis::start();
    let url = redis.url();
    let b = TestServer::start_with(move |config| {
        config.bus = Some(url.clone().into());
        config.shard = Some("b".into());
        config.allow_list = true;
    });
    let flags = ["--bus", &redis.url(), "--shard", "ops", "--allow-list"];
    let mut ops = ServerProcess::start(&b.db, &flags);

    // Allowed on ops: bob gets in on b.
    let mut bob = b.client();
    assert_eq!(
        bob.register("bob", PASSWORD),
        Err("This server is private".to_owned())
    );
    assert_eq!(ops.run("allow bob"), "bob may log in");
    let deadline = std::time::Instant::now() + PATIENCE;
    while bob.register("bob", PASSWORD).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "b never heard of the allow"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    bob.login("bob", PASSWORD).unwrap();

    // His address banned on ops: b kicks him and refuses him at its gate.
    assert_eq!(
        ops.run("banip 127.0.0.1 10m"),
        "127.0.0.1 is banned for 10m"
    );
    assert!(bob.kicked().starts_with("This address is banned until "));
    let mut again = TestClient::start_connecting(b.addr);
    assert!(!again.connects_within(Duration::from_secs(2)));
}
