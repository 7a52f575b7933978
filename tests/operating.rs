//! Running a live server: the data that grows (chat history past `--chat-retention-days`), `/who`,
//! `/help` and metrics, and `--copy-to` copying every table of the schema.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use mmo::config::DbLocation;
use mmo::db::copy::{copy, row_counts};
use mmo::db::models::{AuditEntry, ChatMessage, SanctionRow};
use mmo::db::queries::{self, Moderation};
use mmo::protocol::ServerMessage;

const DAY_MS: i64 = 86_400_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Every chat line in the database, by id.
fn stored(server: &TestServer) -> Vec<String> {
    let mut conn = db_conn(&server.db);
    queries::recent_chat_messages(&mut conn, i64::MAX, 0)
        .unwrap()
        .into_iter()
        .map(|line| line.body)
        .collect()
}

/// Writes `count` lines said `days_ago` straight into the (stopped) server's database, as Alice.
fn said_long_ago(server: &TestServer, text: &str, days_ago: i64, count: usize) {
    let mut conn = db_conn(&server.db);
    let lines: Vec<ChatMessage> = (0..count)
        .map(|_| ChatMessage {
            account_id: 1,
            sender: "Alice".into(),
            body: text.into(),
            sent_at_ms: now_ms() - days_ago * DAY_MS,
        })
        .collect();
    for chunk in lines.chunks(500) {
        queries::insert_chat_messages(&mut conn, chunk).unwrap();
    }
}

/// The chat history a player was sent after logging in.
fn history(client: &TestClient) -> Vec<String> {
    client
        .received
        .iter()
        .find_map(|m| match m {
            ServerMessage::ChatHistory { lines } => {
                Some(lines.iter().map(|line| line.text.clone()).collect())
            }
            _ => None,
        })
        .expect("the chat history")
}

fn server_keeping(days: f64) -> TestServer {
    TestServer::start_with(move |config| {
        config.chat_burst = 1000;
        config.chat_per_second = 1000.0;
        config.chat_retention_days = days;
    })
}

#[test]
fn chat_lines_past_the_retention_are_deleted_and_never_shown() {
    let mut server = server_keeping(30.0);
    let mut alice = server.player("Alice");
    alice.chat("said today");
    alice.next_chat().unwrap();
    drop(alice);
    server.stop();
    // Several delete batches' worth of old lines, and one still within the 30 days.
    said_long_ago(&server, "forty days ago", 40, 2_500);
    said_long_ago(&server, "twenty days ago", 20, 1);

    server.restart();
    // Not even the first login after the restart sees an old line.
    let mut bob = server.player("Bob");
    assert_eq!(history(&bob), ["said today", "twenty days ago"]);
    let deadline = Instant::now() + PATIENCE;
    while stored(&server).len() > 2 {
        assert!(Instant::now() < deadline, "old lines still stored");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(stored(&server), ["said today", "twenty days ago"]);

    // Chat goes on as before.
    bob.chat("still here");
    assert_eq!(bob.next_chat().unwrap().text, "still here");
}

#[test]
fn a_retention_of_zero_keeps_everything() {
    let mut server = server_keeping(0.0);
    drop(server.player("Alice"));
    server.stop();
    said_long_ago(&server, "ten years ago", 3_650, 3);
    server.restart();
    let bob = server.player("Bob");
    assert_eq!(history(&bob), ["ten years ago"; 3]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(stored(&server).len(), 3);
}

#[test]
fn whispers_reach_only_sender_and_recipient_and_are_never_stored() {
    let mut server = TestServer::start();
    let mut alice = server.player("Alice");
    let mut bob = server.player("Bob");
    let mut carol = server.player("Carol");

    alice.chat("/w bob meet me at the well");
    for end in [&mut alice, &mut bob] {
        let line = end.next_whisper();
        assert_eq!(
            (line.from.as_str(), line.to.as_str(), line.text.as_str()),
            ("Alice", "Bob", "meet me at the well")
        );
    }
    bob.chat("/whisper ALICE  on my way ");
    assert_eq!(alice.next_whisper().text, "on my way");
    assert_eq!(bob.next_whisper().to, "Alice");
    // Carol, online the whole time, received nothing of it: her next message is the public line.
    alice.chat("hello all");
    assert_eq!(carol.next_chat().unwrap().text, "hello all");
    assert!(
        !carol
            .received
            .iter()
            .any(|m| matches!(m, ServerMessage::Whisper(_))),
        "{:#?}",
        carol.received
    );

    assert_eq!(alice.command("w Dave hi"), Err("Dave is not online".into()));
    assert_eq!(
        alice.command("w Bob"),
        Err("Usage: w NAME TEXT (or whisper): a private line to NAME".into())
    );
    alice.chat("/w Bob \u{7}bell");
    assert_eq!(
        alice.next_chat(),
        Err("Message contains control characters".into())
    );

    // Not in the database, not in the history after a restart.
    drop((alice, bob, carol));
    server.restart();
    assert_eq!(stored(&server), ["hello all"]);
    assert_eq!(history(&server.login_again("Carol")), ["hello all"]);
}

#[test]
fn whispers_and_commands_count_against_the_chat_limit() {
    let server = TestServer::start_with(|config| {
        config.chat_burst = 3;
        config.chat_per_second = 0.1;
    });
    let mut alice = server.player("Alice");
    let _bob = server.player("Bob");
    alice.chat("/w Bob one");
    alice.chat("/w Bob two");
    alice.chat("/who");
    assert_eq!(alice.next_whisper().text, "one");
    assert_eq!(alice.next_whisper().text, "two");
    assert_eq!(alice.next_system(), "2 online: Alice, Bob");
    assert_eq!(
        alice.command("w Bob three"),
        Err("You are sending messages too fast".into())
    );
}

#[test]
fn who_and_help_answer_every_player_and_odd_commands_are_refused() {
    let server = TestServer::start();
    let mut zed = server.player("zed");
    let _amy = server.player("Amy");
    assert_eq!(zed.command("who"), Ok("2 online: Amy, zed".into()));
    let help = zed.command("HELP").unwrap();
    let lines: Vec<&str> = help.lines().collect();
    assert_eq!(lines[0], "Commands:");
    for line in [
        "  /help: what you may run",
        "  /who: who is online",
        "  /w NAME TEXT (or whisper): a private line to NAME",
    ] {
        assert!(lines.contains(&line), "{line:?} in {help}");
    }
    for staff in ["kick", "ban", "role", "say", "list", "shutdown", "backup"] {
        assert!(
            !lines.iter().any(|l| l.starts_with(&format!("  /{staff} "))),
            "{staff} in {help}"
        );
    }
    for (line, answer) in [
        ("", "Type help for the commands"),
        ("/", "Unknown command /: type help for the commands"),
        ("nope", "Unknown command nope: type help for the commands"),
        ("kick Amy", "You are not allowed to do that"),
        ("ban Amy 1h", "You are not allowed to do that"),
        ("role zed admin", "You are not allowed to do that"),
        ("backup /tmp/x", "You are not allowed to do that"),
        ("list", "You are not allowed to do that"),
        ("say hi", "You are not allowed to do that"),
        ("w ../etc x", "../etc is not a player name"),
    ] {
        assert_eq!(zed.command(line), Err(answer.to_owned()), "/{line}");
    }
    // Still chatting.
    zed.chat("fine");
    assert_eq!(zed.next_chat().unwrap().text, "fine");
}

/// The value of the sample `name` (with its labels, as written) in a scrape.
fn sample(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{scrape}"))
}

#[test]
fn the_metrics_endpoint_counts_what_players_do() {
    let server = TestServer::start_with(|config| {
        config.chat_burst = 1000;
        config.chat_per_second = 1000.0;
        config.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
    });
    let addr = server.metrics_addr();
    let (status, scrape) = http_get(addr, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(sample(&scrape, "mmo_players_online"), 0.0);
    assert_eq!(sample(&scrape, "mmo_chat_lines_received_total"), 0.0);
    assert!(scrape.ends_with("# EOF\n"), "OpenMetrics text");

    let mut alice = server.player("alice");
    let mut bob = server.player("bob");
    assert!(server.client().login("alice", "wrong password").is_err());
    for text in ["one", "two", "three"] {
        alice.chat(text);
        assert_eq!(bob.next_chat().unwrap().text, text);
    }
    alice.chat("/w bob psst");
    bob.next_whisper();
    // Gauges are sampled once a second, the chat writer's batch time when it stores.
    std::thread::sleep(Duration::from_millis(1_500));

    let (_, scrape) = http_get(addr, "/metrics");
    for (name, value) in [
        ("mmo_players_online", 2.0),
        ("mmo_logins_total{result=\"ok\"}", 2.0),
        ("mmo_logins_total{result=\"wrong_credentials\"}", 1.0),
        ("mmo_registrations_total{result=\"ok\"}", 2.0),
        ("mmo_chat_lines_received_total", 3.0),
        ("mmo_chat_lines_sent_total", 6.0),
        ("mmo_whispers_total", 1.0),
        ("mmo_commands_total", 1.0),
    ] {
        assert_eq!(sample(&scrape, name), value, "{name}");
    }
    assert!(sample(&scrape, "mmo_connections") >= 2.0);
    assert!(sample(&scrape, "mmo_tick_seconds_count") > 10.0);
    assert!(sample(&scrape, "mmo_auth_job_seconds_count") >= 5.0);
    assert!(sample(&scrape, "mmo_db_write_seconds_count{writer=\"chat\"}") >= 1.0);
    assert!(sample(&scrape, "mmo_datagrams_received_total") > 0.0);
    assert_eq!(sample(&scrape, "mmo_auth_queue_depth"), 0.0);

    assert_eq!(http_get(addr, "/").0, 404);
}

#[test]
fn copy_to_copies_every_table_of_the_schema_whatever_adds_one() {
    // A world with rows in every table: an account with a session (token mode), a chat line, a saved
    // position, a mute with its audit entry.
    let mut server = TestServer::start_token();
    let mut alice = server.token_player("Alice");
    alice.spawned();
    alice.chat("kept");
    assert_eq!(alice.next_chat().unwrap().text, "kept");
    drop(alice);
    let mut conn = db_conn(&server.db);
    let (alice_id, _, _) = queries::find_account_role(&mut conn, "alice")
        .unwrap()
        .unwrap();
    let mute = SanctionRow {
        account_id: alice_id,
        kind: "mute".into(),
        until_ms: Some(i64::MAX / 2),
        reason: "it's \\ quoted".into(),
        by_name: "console".into(),
        created_at_ms: 0,
    };
    let audit = AuditEntry {
        at_ms: 0,
        actor: "console".into(),
        action: "mute".into(),
        target: "Alice".into(),
        detail: "for O'Brien".into(),
    };
    queries::moderate(&mut conn, &Moderation::Sanction(mute), &audit).unwrap();
    drop(conn);
    server.stop();
    let counts = row_counts(&mut db_conn(&server.db)).unwrap();
    for table in [
        "accounts",
        "sessions",
        "chat_messages",
        "positions",
        "sanctions",
        "audit_log",
    ] {
        let rows = counts.iter().find(|(name, _)| name == table).map(|c| c.1);
        assert!(rows > Some(0), "{table} has rows: {counts:?}");
    }

    // Into a new SQLite file (from PostgreSQL with MMO_TEST_DB=postgres): every table of the schema
    // (a plugin's own included, whether or not this test fills it), every row.
    let dir = tempfile::tempdir().unwrap();
    let target = DbLocation::Sqlite(dir.path().join("copy.sqlite3"));
    copy(&server.db, &target).unwrap();
    assert_eq!(row_counts(&mut db_conn(&target)).unwrap(), counts);
    let mut copied = db_conn(&target);
    let (reason, detail): (String, String) = {
        let active = queries::active_sanctions(&mut copied, 0).unwrap();
        let entries = queries::recent_audit(&mut copied, 1).unwrap();
        (active[0].reason.clone(), entries[0].detail.clone())
    };
    assert_eq!(
        (reason.as_str(), detail.as_str()),
        ("it's \\ quoted", "for O'Brien")
    );
}

#[test]
fn copy_to_backs_up_a_running_server_consistently_while_players_chat() {
    let server = TestServer::start();
    let mut alice = server.player("alice");
    let mut bob = server.player("bob");
    let chatting = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let still = chatting.clone();
    let talker = std::thread::spawn(move || {
        let mut n = 0;
        while still.load(std::sync::atomic::Ordering::Relaxed) {
            alice.chat(&format!("line {n}"));
            n += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
        alice
    });
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let target = DbLocation::Sqlite(dir.path().join(format!("backup-{round}.sqlite3")));
        // Every table's count is checked against the snapshot's: lines stored meanwhile do not count.
        copy(&server.db, &target).expect("a consistent copy while the server writes");
        let counts = row_counts(&mut db_conn(&target)).unwrap();
        assert!(
            counts
                .iter()
                .any(|(table, rows)| table == "accounts" && *rows == 2)
        );
    }
    chatting.store(false, std::sync::atomic::Ordering::Relaxed);
    let _alice = talker.join().unwrap();
    bob.chat("still here");
    assert!(bob.next_chat().is_ok());
}
