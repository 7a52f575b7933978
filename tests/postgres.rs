//! PostgreSQL as the account database (`--features postgres`): what a shard does when its database goes
//! away and comes back, on a real cluster this test kills and restarts. (The rest of the suite runs on
//! PostgreSQL too with `MMO_TEST_DB=postgres`.)

mod common;

use std::time::{Duration, Instant};

use common::postgres::{PASSWORD as DB_PASSWORD, TestPostgres};
use common::*;
use mmo::client::api::ApiError;
use mmo::config::DbLocation;
use mmo::db::models::{AuditEntry, SanctionRow};
use mmo::db::queries::{self, Moderation};
use mmo::protocol::ServerMessage;

/// Every chat line stored in `db`, oldest first.
fn stored_lines(db: &DbLocation) -> Vec<String> {
    queries::recent_chat_messages(&mut db_conn(db), i64::MAX, 0)
        .unwrap()
        .into_iter()
        .map(|line| line.body)
        .collect()
}

#[test]
fn losing_postgres_refuses_new_logins_keeps_players_chatting_and_loses_no_line() {
    let mut postgres = TestPostgres::start();
    let url = postgres.create_database();
    let server = TestServer::start_with(move |config| {
        config.db = DbLocation::Postgres(url.clone());
        config.chat_burst = 1000;
        config.chat_per_second = 1000.0;
    });
    let mut alice = server.player("alice");
    let mut bob = server.player("bob");
    let mut carol = server.client();
    carol.register("carol", PASSWORD).unwrap();
    alice.chat("before");
    for player in [&mut alice, &mut bob] {
        assert_eq!(player.next_chat().unwrap().text, "before");
    }

    postgres.kill();

    // Everyone online keeps playing: lines are delivered at once, whatever the database.
    for n in 0..5 {
        alice.chat(&format!("while the database is away {n}"));
    }
    for player in [&mut alice, &mut bob] {
        for n in 0..5 {
            let line = player.next_chat().unwrap();
            assert_eq!(line.text, format!("while the database is away {n}"));
        }
    }
    bob.chat("still here");
    assert_eq!(alice.next_chat().unwrap().text, "still here");

    // A new login cannot be checked: it is refused, and told to try again.
    assert_eq!(
        carol.login("carol", PASSWORD),
        Err("Server busy, try again".to_owned())
    );
    let mut dave = server.client();
    assert_eq!(
        dave.register("dave", PASSWORD),
        Err("Server busy, try again".to_owned())
    );

    postgres.restart();

    // Back: the same client logs in, and every line said meanwhile reaches the database.
    let deadline = Instant::now() + PATIENCE;
    loop {
        match carol.login("carol", PASSWORD) {
            Ok(_) => break,
            Err(reason) if reason == "Server busy, try again" && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(reason) => panic!("carol's login after the restart: {reason}"),
        }
    }
    let expected: Vec<String> = std::iter::once("before".to_owned())
        .chain((0..5).map(|n| format!("while the database is away {n}")))
        .chain(std::iter::once("still here".to_owned()))
        .collect();
    let deadline = Instant::now() + PATIENCE;
    while stored_lines(&server.db) != expected {
        assert!(
            Instant::now() < deadline,
            "stored after the restart: {:?}",
            stored_lines(&server.db)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_long_outage_pauses_chat_at_its_queue_bound_and_loses_no_acknowledged_line() {
    let mut postgres = TestPostgres::start();
    let url = postgres.create_database();
    let server = TestServer::start_with(move |config| {
        config.db = DbLocation::Postgres(url.clone());
        config.chat_burst = 1000;
        config.chat_per_second = 1000.0;
        config.chat_queue = 16;
    });
    let mut alice = server.player("alice");
    let mut bob = server.player("bob");

    postgres.kill();

    // Lines are sent, and acknowledged (alice sees hers), while they fit the queue; then chat pauses.
    let mut acknowledged = Vec::new();
    let mut paused = 0;
    for n in 0..60 {
        let text = format!("line {n}");
        alice.chat(&text);
        match alice.next_chat() {
            Ok(line) => {
                assert_eq!(line.text, text);
                assert_eq!(paused, 0, "a line went through after chat paused");
                acknowledged.push(text);
            }
            Err(reason) => {
                assert_eq!(reason, mmo::chat::PAUSED);
                paused += 1;
            }
        }
    }
    assert!(paused > 0, "chat never paused");
    assert!(
        (16..=16 + 2).contains(&acknowledged.len()),
        "{} lines acknowledged with a queue of 16 and the database away",
        acknowledged.len()
    );
    for text in &acknowledged {
        assert_eq!(&bob.next_chat().unwrap().text, text);
    }

    postgres.restart();

    // Back: every acknowledged line is stored, and chat goes on.
    let deadline = Instant::now() + PATIENCE;
    while stored_lines(&server.db) != acknowledged {
        assert!(
            Instant::now() < deadline,
            "stored after the restart: {:?}",
            stored_lines(&server.db)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let deadline = Instant::now() + PATIENCE;
    loop {
        alice.chat("back");
        match alice.next_chat() {
            Ok(line) if line.text == "back" => break,
            Ok(line) => panic!("unexpected {line:?}"),
            Err(reason) => assert_eq!(reason, mmo::chat::PAUSED),
        }
        assert!(Instant::now() < deadline, "chat stayed paused");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn shards_on_one_database_migrate_it_once_and_a_wrong_password_is_not_logged() {
    let postgres = TestPostgres::start();
    let url = postgres.create_database();
    // Two servers starting together on a new database: the advisory lock lets one migrate it.
    let starts: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                TestServer::start_with(move |config| {
                    config.db = DbLocation::Postgres(url.clone());
                })
            })
        })
        .collect();
    let servers: Vec<TestServer> = starts.into_iter().map(|s| s.join().unwrap()).collect();
    let _alice = servers[0].player("alice");
    let mut again = servers[1].client();
    assert!(again.login("alice", PASSWORD).is_ok());

    // A wrong password in --db: the binary refuses to start, and says why without the password.
    let wrong = url.replace(DB_PASSWORD, "not-the-password");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mmo"))
        .args(["--bind", "127.0.0.1:0", "--db", &wrong])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-password"), "{stderr}");
}

#[test]
fn in_token_mode_https_logins_answer_503_while_postgres_is_away() {
    let mut postgres = TestPostgres::start();
    let url = postgres.create_database();
    let server = TestServer::start_token_with(move |config| {
        config.db = DbLocation::Postgres(url.clone());
    });
    let api = server.api();
    api.register("alice", PASSWORD).unwrap();
    let mut bob = server.token_player("bob");

    postgres.kill();
    match api.login("alice", PASSWORD) {
        Err(ApiError::Refused {
            status, message, ..
        }) => {
            assert_eq!((status, message.as_str()), (503, "Server busy, try again"));
        }
        other => panic!("a login with the database away: {other:?}"),
    }
    // Who is in stays in.
    bob.chat("still here");
    assert_eq!(bob.next_chat().unwrap().text, "still here");

    postgres.restart();
    let deadline = Instant::now() + PATIENCE;
    while let Err(error) = api.login("alice", PASSWORD) {
        assert!(
            Instant::now() < deadline,
            "login after the restart: {error}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn copy_to_moves_an_sqlite_world_into_postgres_and_it_plays_on() {
    // A server on SQLite, played on: accounts, a chat line, a ban (stored while it is stopped).
    let dir = tempfile::tempdir().unwrap();
    let old = DbLocation::Sqlite(dir.path().join("old.sqlite3"));
    let db = old.clone();
    let mut server = TestServer::start_with(move |config| config.db = db.clone());
    let mut alice = server.player("alice");
    let _bob = server.player("bob");
    alice.chat("from the old days");
    assert_eq!(alice.next_chat().unwrap().text, "from the old days");
    drop(alice);
    server.stop();
    let mut conn = db_conn(&old);
    let (bob_id, _, _) = queries::find_account_role(&mut conn, "bob")
        .unwrap()
        .unwrap();
    let ban = SanctionRow {
        account_id: bob_id,
        kind: "ban".into(),
        until_ms: None,
        reason: "cheating".into(),
        by_name: "console".into(),
        created_at_ms: 0,
    };
    let audit = AuditEntry {
        at_ms: 0,
        actor: "console".into(),
        action: "ban".into(),
        target: "bob".into(),
        detail: "cheating".into(),
    };
    queries::moderate(&mut conn, &Moderation::Sanction(ban), &audit).unwrap();
    drop(conn);

    let postgres = TestPostgres::start();
    let url = postgres.create_database();
    let copy = |to: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mmo"))
            .arg("--db")
            .arg(db_arg(&old))
            .args(["--copy-to", to])
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let copied = copy(&url);
    let log = String::from_utf8_lossy(&copied.stderr);
    assert!(copied.status.success(), "{log}");
    assert!(log.contains("table=\"accounts\" rows=2"), "{log}");
    assert!(!log.contains(DB_PASSWORD), "{log}");
    // Never over what is there.
    let again = copy(&url);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already has accounts"));

    // The copy plays on: the same accounts, history and ban; new accounts get new ids.
    let pg_url = url.clone();
    let server = TestServer::start_with(move |config| {
        config.db = DbLocation::Postgres(pg_url.clone());
    });
    let alice = server.login_again("alice");
    let history = alice
        .received
        .iter()
        .find_map(|m| match m {
            ServerMessage::ChatHistory { lines } => Some(lines.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].text, "from the old days");
    let refused = server.client().login("bob", PASSWORD).unwrap_err();
    assert!(refused.starts_with("You are banned"), "{refused}");
    let _carol = server.player("carol");
    let mut conn = db_conn(&server.db);
    let (carol_id, _, _) = queries::find_account_role(&mut conn, "carol")
        .unwrap()
        .unwrap();
    assert_eq!(carol_id, 3);
}

#[test]
fn readyz_says_not_ready_while_the_database_is_away_and_healthz_stays_alive() {
    let mut postgres = TestPostgres::start();
    let url = postgres.create_database();
    let server = TestServer::start_with(move |config| {
        config.db = DbLocation::Postgres(url.clone());
        config.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
    });
    let metrics = server.metrics_addr();
    probe_until(metrics, "/readyz", 200, "\"status\":\"ok\"");

    postgres.kill();
    let body = probe_until(metrics, "/readyz", 503, "the database is unreachable");
    assert!(!body.contains(DB_PASSWORD), "{body}");
    assert_eq!(http_get(metrics, "/healthz").0, 200, "alive all along");

    postgres.restart();
    probe_until(metrics, "/readyz", 200, "\"status\":\"ok\"");
}
