//! One process past netcode's 1,024 clients: a server with `--max-clients 2000` (three transport lanes,
//! at least one per 768 clients) takes more than 1,024 real connections (real renet clients over UDP, in token mode with connect
//! tokens the test mints with the server's key, so that no password is hashed 1,040 times), and its
//! players chat and see each other walk, whichever lane each is on. And a server whose ticks overrun
//! their period refuses new logins with "Server busy, try again" while its players keep chatting, and
//! takes logins again once the ticks fit.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use common::*;
use mmo::api::TokenUser;
use mmo::client::api::encode_connect_token;
use mmo::db::models::SavedPosition;
use mmo::db::queries;
use mmo::protocol::{self, ClientMessage, Pos, ServerMessage};
use renetcode::ConnectToken;

/// More than one netcode server holds.
const PLAYERS: usize = 1_040;
/// The players who walk together, away from the others.
const WALKERS: usize = 8;

/// Lets this process open a socket per client (raises the soft limit on open files to the hard one).
fn allow_many_sockets() {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Where player `i` stands: the walkers together in a quiet corner, the rest on a grid 60 units
/// apart (each sees a handful of others).
fn place(i: usize) -> (f32, f32) {
    if i < WALKERS {
        return (300.0 + 10.0 * i as f32, 300.0);
    }
    let cell = i - WALKERS;
    (
        600.0 + 60.0 * (cell % 24) as f32,
        600.0 + 60.0 * (cell / 24) as f32,
    )
}

#[test]
fn a_server_with_max_clients_2000_takes_more_than_1024_connections_that_chat_and_walk() {
    allow_many_sockets();
    let dir = tempfile::tempdir().unwrap();
    let key: [u8; 32] = rand::random();
    let key_file = dir.path().join("netcode.key");
    std::fs::write(&key_file, key).unwrap();
    let server = TestServer::start_token_with(move |config| {
        config.max_clients = 2_000;
        config.transport_threads = Some(1);
        config.netcode_key_file = Some(key_file.clone());
        config.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
        config.npcs = 0;
    });

    // The accounts and where they stand, straight into the database.
    let mut conn = db_conn(&server.db);
    let mut users = Vec::with_capacity(PLAYERS);
    let mut places = Vec::with_capacity(PLAYERS);
    for i in 0..PLAYERS {
        let name = format!("p{i:04}");
        let account = queries::create_account(&mut conn, &name, "unused", 0).unwrap();
        let (x, y) = place(i);
        places.push(SavedPosition {
            account_id: account.id,
            x,
            y,
            saved_at_ms: 0,
        });
        users.push(TokenUser {
            account_id: account.id,
            name,
        });
    }
    queries::save_positions(&mut conn, &places).unwrap();
    drop(conn);

    // Everyone connects with a connect token minted with the server's key.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    let mut players: Vec<TestClient> = users
        .iter()
        .map(|user| {
            let token = ConnectToken::generate(
                now,
                protocol::PROTOCOL_ID,
                300,
                rand::random(),
                15,
                vec![server.addr],
                Some(&user.to_user_data().unwrap()),
                &key,
            )
            .unwrap();
            TestClient::start_with_token(&encode_connect_token(&token))
        })
        .collect();
    let logged_in = |client: &TestClient| {
        client
            .received
            .iter()
            .any(|m| matches!(m, ServerMessage::LoggedIn { .. }))
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let waiting = players.iter().filter(|c| !logged_in(c)).count();
        if waiting == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{waiting} of {PLAYERS} never got in"
        );
        for player in &mut players {
            player.pump();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(players.iter().all(|c| c.is_connected()));

    // Every lane holds players, and the process more than netcode's 1,024.
    let metrics = server.metrics_addr();
    let lanes = |scrape: &str| -> Vec<f64> {
        scrape
            .lines()
            .filter(|l| l.starts_with("mmo_transport_lane_connections{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect()
    };
    let deadline = Instant::now() + PATIENCE;
    let loads = loop {
        for player in &mut players {
            player.pump();
        }
        let loads = lanes(&http_get(metrics, "/metrics").1);
        if loads.len() == 3 && loads.iter().sum::<f64>() >= PLAYERS as f64 {
            break loads;
        }
        assert!(Instant::now() < deadline, "lanes hold {loads:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(loads.iter().all(|&load| load > 0.0), "lanes hold {loads:?}");

    // A line reaches everyone, whatever their lane.
    players[0].send(&ClientMessage::Chat {
        text: "hello, all 1040".into(),
    });
    let heard = |client: &TestClient| {
        client
            .received
            .iter()
            .any(|m| matches!(m, ServerMessage::Chat(line) if line.text == "hello, all 1040"))
    };
    let deadline = Instant::now() + PATIENCE;
    loop {
        for player in &mut players {
            player.pump();
        }
        let deaf = players.iter().filter(|c| !heard(c)).count();
        if deaf == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{deaf} never heard the line");
        std::thread::sleep(Duration::from_millis(5));
    }

    // The walkers see each other walk: each steps aside, and every other walker's snapshots say so.
    let ids: Vec<u32> = players[..WALKERS]
        .iter_mut()
        .map(|walker| walker.spawned().0)
        .collect();
    for (i, walker) in players[..WALKERS].iter_mut().enumerate() {
        let (x, y) = place(i);
        walker.send(&ClientMessage::MoveTo { x, y: y + 20.0 });
    }
    for (i, &id) in ids.iter().enumerate() {
        let (x, y) = place(i);
        let there = Pos::quantize(x, y + 20.0);
        for (j, watcher) in players[..WALKERS].iter_mut().enumerate() {
            if j != i {
                watcher.wait_until_at(id, there);
            }
        }
    }
}

#[test]
fn while_ticks_overrun_new_logins_are_told_the_server_is_busy_and_players_keep_chatting() {
    // A plugin that makes every tick 25 ms long (the period is 16.7 ms) while `slow` is set.
    let slow = Arc::new(AtomicBool::new(false));
    let flag = slow.clone();
    let server = TestServer::start_extended(
        |config| config.no_shedding = false,
        move |app| {
            let flag = flag.clone();
            app.add_systems(bevy::prelude::Update, move || {
                if flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(25));
                }
            });
        },
    );
    let mut alice = server.player("Alice");
    let mut carol = server.client();
    carol.register("Carol", PASSWORD).expect("registered");

    slow.store(true, Ordering::Relaxed);
    // More than half a second of ticks over budget.
    pump_for(&mut [&mut alice, &mut carol], Duration::from_millis(1_500));
    assert_eq!(
        carol.login("Carol", PASSWORD),
        Err("Server busy, try again".to_owned()),
        "a new login is shed while the ticks overrun"
    );
    alice.chat("still playing");
    assert_eq!(
        alice.next_chat().expect("her own line").text,
        "still playing"
    );

    slow.store(false, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match carol.login("Carol", PASSWORD) {
            Ok(name) => {
                assert_eq!(name, "Carol");
                break;
            }
            Err(reason) => {
                assert_eq!(reason, "Server busy, try again");
                assert!(Instant::now() < deadline, "logins never came back");
                pump_for(&mut [&mut alice, &mut carol], Duration::from_millis(200));
            }
        }
    }
}
