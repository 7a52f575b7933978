//! Running a live server: the data that grows (chat history past `--chat-retention-days`).

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use diesel::prelude::*;

use common::*;
use mmo::db::models::ChatMessage;
use mmo::db::queries;
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
    let mut conn = SqliteConnection::establish(server.db.to_str().unwrap()).unwrap();
    queries::recent_chat_messages(&mut conn, i64::MAX, 0)
        .unwrap()
        .into_iter()
        .map(|line| line.body)
        .collect()
}

/// Writes `count` lines said `days_ago` straight into the (stopped) server's database, as Alice.
fn said_long_ago(server: &TestServer, text: &str, days_ago: i64, count: usize) {
    let mut conn = SqliteConnection::establish(server.db.to_str().unwrap()).unwrap();
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
