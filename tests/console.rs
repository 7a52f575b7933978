//! The operator console through the real binary's stdin, and moderation as players see it: every
//! console command, roles and their limits in chat, bans and mutes across a restart and their expiry,
//! a countdown shutdown that tells everyone and loses nothing, a backup of the live database, and
//! hostile console input.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::process::ServerProcess;
use common::{PASSWORD, TestClient, on_postgres, test_db};
use mmo::client::api::{ApiClient, ApiError};
use mmo::config::DbLocation;
use mmo::protocol::ServerMessage;

/// A registered, logged-in player of the server at `server`, the login messages read.
fn player(server: &ServerProcess, name: &str) -> TestClient {
    let mut client = TestClient::connect(server.addr);
    client.register(name, PASSWORD).expect("register");
    login(&mut client, name).expect("login");
    client
}

/// Logs `client` in as `name`, reading the messages that follow a login.
fn login(client: &mut TestClient, name: &str) -> Result<String, String> {
    let name = client.login(name, PASSWORD)?;
    client.expect("chat history after login", |m| {
        matches!(m, ServerMessage::ChatHistory { .. }).then_some(())
    });
    Ok(name)
}

/// The binary in token mode on SQLite in `dir` (whatever MMO_TEST_DB says: the self-signed certificate
/// goes beside the file), and an HTTPS client trusting it.
fn start_token(dir: &Path) -> (ServerProcess, ApiClient) {
    let mut server = ServerProcess::start(
        &DbLocation::Sqlite(dir.join("mmo.sqlite3")),
        &["--auth", "token", "--http-bind", "127.0.0.1:0"],
    );
    let url = server.logged("url").expect("the https url is logged");
    let cert = server
        .logged("cert")
        .expect("the certificate path is logged");
    let api = ApiClient::with_ca_file(&url, Some(Path::new(&cert))).unwrap();
    (server, api)
}

/// The binary on `db`, with a chat limit these tests do not reach (commands count against it).
fn start(db: &DbLocation) -> ServerProcess {
    let server = ServerProcess::start(db, &["--chat-burst", "1000", "--chat-per-second", "1000"]);
    if let DbLocation::Postgres(url) = db {
        let password = url
            .split(['@', ':'])
            .nth(2)
            .expect("a password in the test URL");
        for line in &server.started {
            assert!(!line.contains(password), "the password is logged: {line}");
        }
    }
    server
}

#[test]
fn console_answers_every_command_and_shrugs_off_hostile_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(&test_db(dir.path()));
    let mut alice = player(&server, "Alice");
    let mut bob = player(&server, "bob");

    let help = server.run_long("help");
    assert_eq!(help[0], "Commands:");
    for command in [
        "kick NAME",
        "ban NAME",
        "role NAME",
        "shutdown",
        "audit",
        "backup PATH",
    ] {
        assert!(
            help.iter().any(|l| l.contains(command)),
            "{command} in {help:#?}"
        );
    }
    let list = server.run_long("list");
    assert_eq!(list[0], "2 online");
    assert!(
        list[1].starts_with("  Alice player ") && list[1].contains("127.0.0.1:"),
        "{list:#?}"
    );
    assert!(list[2].starts_with("  bob player "), "{list:#?}");

    assert_eq!(server.run("say Restart at noon"), "Said to 2 players");
    assert_eq!(alice.next_system(), "Restart at noon");
    assert_eq!(bob.next_system(), "Restart at noon");

    // Hostile and broken input: each gets an error line, nothing stops the server.
    assert_eq!(
        server.run("dance"),
        "error: Unknown command dance: type help for the commands"
    );
    assert_eq!(server.run("kick"), "error: Usage: kick NAME [REASON]");
    assert_eq!(
        server.run("kick nobody_here"),
        "error: nobody_here is not online"
    );
    assert_eq!(
        server.run("ban ../../etc"),
        "error: ../../etc is not a player name"
    );
    assert_eq!(
        server.run("mute bob 99999999999999999999d"),
        "error: Usage: mute NAME DURATION [REASON]"
    );
    assert_eq!(
        server.run("audit -5"),
        "error: Usage: audit [N]: the N latest moderation actions (20)"
    );
    server.type_bytes(b"\xff\xfe\x00 kick bob\n");
    assert_eq!(server.answer(), "error: line is not UTF-8: ignored");
    server.type_bytes(&[b'x'; 10_000]);
    server.type_bytes(b"\n");
    assert_eq!(
        server.answer(),
        "error: line longer than 4096 bytes ignored"
    );
    server.type_bytes(b"\n   \n");
    assert_eq!(
        server.run("who"),
        "2 online: Alice, bob",
        "blank lines are ignored"
    );

    assert_eq!(server.run("kick BOB being rude"), "Kicked bob");
    assert_eq!(bob.kicked(), "Kicked by console: being rude");
    bob.expect_disconnected();

    let audit = server.run_long("audit 5");
    assert_eq!(audit[0], "2 audit entries, newest first", "{audit:#?}");
    assert!(
        audit[1].ends_with("console kick bob being rude"),
        "{audit:#?}"
    );
    assert!(
        audit[2].ends_with("console say  Restart at noon"),
        "{audit:#?}"
    );

    // With the console closed the server just runs.
    server.close_console();
    alice.chat("still here");
    assert_eq!(alice.next_chat().unwrap().text, "still here");
    assert!(server.is_running());
    assert!(server.terminate().success());
}

#[test]
fn roles_limit_what_moderators_may_do_in_chat() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(&test_db(dir.path()));
    let mut admin = player(&server, "root");
    let mut moderator = player(&server, "mod_mia");
    let mut other_mod = player(&server, "mod_max");
    let mut troll = player(&server, "troll");

    // A player may not moderate, and is told what they may run.
    assert_eq!(
        troll.command("kick mod_mia"),
        Err("You are not allowed to do that".into())
    );
    assert_eq!(
        troll.command("shutdown"),
        Err("You are not allowed to do that".into())
    );
    let help = troll.command("help").unwrap();
    assert!(
        help.contains("/who") && help.contains("/w NAME TEXT") && !help.contains("kick"),
        "{help}"
    );

    assert_eq!(server.run("role root admin"), "root is now an admin");
    assert_eq!(admin.next_system(), "You are now an admin");
    assert_eq!(
        server.run("role mod_mia moderator"),
        "mod_mia is now a moderator"
    );
    assert_eq!(moderator.next_system(), "You are now a moderator");
    assert_eq!(
        server.run("role mod_max moderator"),
        "mod_max is now a moderator"
    );
    assert_eq!(
        server.run("role nobody_here admin"),
        "error: There is no account named nobody_here"
    );
    assert!(moderator.command("help").unwrap().contains("/kick NAME"));

    // A moderator acts on players, not on moderators or admins, and cannot hand out roles.
    assert_eq!(
        moderator.command("kick mod_max"),
        Err("You cannot do that to a moderator or an admin".into())
    );
    assert_eq!(
        moderator.command("ban root"),
        Err("You cannot do that to a moderator or an admin".into())
    );
    assert_eq!(
        moderator.command("role troll moderator"),
        Err("You are not allowed to do that".into())
    );
    // An admin makes moderators but not admins.
    assert_eq!(
        admin.command("role troll admin"),
        Err("You cannot make anyone an admin".into())
    );
    // The admin sees the line like everyone, then the answer.
    assert_eq!(admin.command("say Be nice"), Ok("Be nice".into()));
    assert_eq!(admin.next_system(), "Said to 4 players");
    assert_eq!(troll.next_system(), "Be nice");
    assert_eq!(moderator.next_system(), "Be nice");

    // The mute: the player is told, refused on chat and whispers, and it lifts.
    assert_eq!(
        moderator.command("mute troll 10m spamming"),
        Ok("troll is muted for 10m: spamming".into())
    );
    assert_eq!(troll.next_system(), "You are muted for 10m: spamming");
    troll.chat("hello?");
    let refused = troll.next_chat().unwrap_err();
    assert!(
        refused.starts_with("You are muted for ") && refused.ends_with(": spamming"),
        "{refused}"
    );
    let refused = troll.command("w root please").unwrap_err();
    assert!(refused.starts_with("You are muted for"), "{refused}");
    assert_eq!(
        moderator.command("unmute troll"),
        Ok("troll is no longer muted".into())
    );
    assert_eq!(troll.next_system(), "You may chat again");
    troll.chat("sorry");
    assert_eq!(troll.next_chat().unwrap().text, "sorry");
    assert_eq!(
        moderator.command("unmute troll"),
        Ok("troll was not muted".into())
    );

    // The kick, by a moderator.
    assert_eq!(
        moderator.command("kick troll calm down"),
        Ok("Kicked troll".into())
    );
    assert_eq!(troll.kicked(), "Kicked by mod_mia: calm down");
    other_mod.expect("troll leaving", |m| {
        matches!(m, ServerMessage::PlayerLeft { name } if name == "troll").then_some(())
    });

    let audit = server.run_long("audit");
    let actions: Vec<&str> = audit[1..]
        .iter()
        .map(|l| l.split_whitespace().nth(4).unwrap_or(""))
        .collect();
    assert_eq!(
        actions,
        [
            "kick", "unmute", "unmute", "mute", "say", "role", "role", "role"
        ],
        "{audit:#?}"
    );
    assert!(
        audit[1].contains("mod_mia kick troll calm down"),
        "{audit:#?}"
    );
}

#[test]
fn bans_and_mutes_survive_a_restart_and_expire_by_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let db = test_db(dir.path());
    let mut server = start(&db);
    let mut bob = player(&server, "bob");
    let mut carol = player(&server, "carol");
    let mut dave = player(&server, "dave");

    let answer = server.run("ban bob 6s griefing");
    assert!(
        answer.starts_with("bob is banned until 20") && answer.ends_with("UTC: griefing"),
        "{answer}"
    );
    let banned_at = Instant::now();
    let reason = bob.kicked();
    assert!(
        reason.starts_with("You are banned until ") && reason.ends_with(": griefing"),
        "{reason}"
    );
    assert!(
        server
            .run("ban dave")
            .starts_with("dave is banned until lifted")
    );
    dave.kicked();
    assert!(
        server
            .run("mute carol 6s too loud")
            .starts_with("carol is muted for")
    );
    carol.next_system();

    // A restart (the graceful one) keeps them.
    assert!(server.terminate().success());
    let mut server = start(&db);
    let mut again = TestClient::connect(server.addr);
    let refused = login(&mut again, "bob").unwrap_err();
    assert!(
        refused.starts_with("You are banned until ") && refused.ends_with(": griefing"),
        "{refused}"
    );
    let refused = login(&mut again, "dave").unwrap_err();
    assert_eq!(refused, "You are banned until lifted");
    let mut carol = TestClient::connect(server.addr);
    login(&mut carol, "carol").unwrap();
    carol.chat("can I talk?");
    assert!(
        carol
            .next_chat()
            .unwrap_err()
            .starts_with("You are muted for")
    );

    // And they expire by themselves.
    std::thread::sleep(
        (banned_at + Duration::from_secs(7)).saturating_duration_since(Instant::now()),
    );
    carol.chat("now?");
    assert_eq!(carol.next_chat().unwrap().text, "now?");
    assert_eq!(login(&mut again, "bob"), Ok("bob".into()));
    // A lifted ban lets in at once.
    assert_eq!(server.run("unban DAVE"), "dave is no longer banned");
    let mut dave = TestClient::connect(server.addr);
    assert_eq!(login(&mut dave, "dave"), Ok("dave".into()));
    assert_eq!(server.run("unban dave"), "dave was not banned");
}

#[test]
fn a_countdown_shutdown_tells_everyone_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = test_db(dir.path());
    let mut server = start(&db);
    let mut alice = player(&server, "alice");

    assert_eq!(server.run("shutdown 3 new version"), "Shutting down in 3s");
    assert_eq!(
        alice.next_system(),
        "Server shutting down in 3s: new version"
    );
    assert_eq!(
        alice.next_system(),
        "Server shutting down in 2s: new version"
    );
    alice.chat("saving my words");
    assert_eq!(alice.next_chat().unwrap().text, "saving my words");
    assert_eq!(
        alice.next_system(),
        "Server shutting down in 1s: new version"
    );
    assert_eq!(alice.kicked(), "Server is shutting down");
    assert!(server.wait().success());

    let mut server = start(&db);
    let mut alice = TestClient::connect(server.addr);
    alice.login("alice", PASSWORD).unwrap();
    let history = alice.expect("the history", |m| match m {
        ServerMessage::ChatHistory { lines } => Some(lines.clone()),
        _ => None,
    });
    assert_eq!(
        history.last().map(|l| l.text.as_str()),
        Some("saving my words")
    );

    // A countdown can be called off.
    assert_eq!(server.run("shutdown 10m"), "Shutting down in 10m");
    assert_eq!(alice.next_system(), "Server shutting down in 10m");
    assert_eq!(server.run("shutdown cancel"), "Shutdown cancelled");
    assert_eq!(alice.next_system(), "Shutdown cancelled");
    assert_eq!(
        server.run("shutdown cancel"),
        "error: No shutdown is counting down"
    );
}

#[test]
fn backup_copies_the_live_database_while_players_play() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(&test_db(dir.path()));
    let mut alice = player(&server, "alice");
    alice.chat("before the backup");
    alice.next_chat().unwrap();

    let copy = dir.path().join("copy.sqlite3");
    let answer = server.run(&format!("backup {}", copy.display()));
    if on_postgres() {
        assert!(
            answer.starts_with("error: ") && answer.contains("pg_dump"),
            "{answer}"
        );
        return;
    }
    assert!(
        answer.starts_with(&format!("Backed up the database to {}", copy.display())),
        "{answer}"
    );
    alice.chat("during play");
    assert_eq!(alice.next_chat().unwrap().text, "during play");
    let again = server.run(&format!("backup {}", copy.display()));
    assert!(
        again.starts_with("error: ") && again.contains("exists already"),
        "{again}"
    );

    // The copy is a whole database: a server started on it knows alice and her line.
    drop(server);
    let server = start(&DbLocation::Sqlite(copy));
    let mut alice = TestClient::connect(server.addr);
    alice.login("alice", PASSWORD).unwrap();
    let history = alice.expect("the history", |m| match m {
        ServerMessage::ChatHistory { lines } => Some(lines.clone()),
        _ => None,
    });
    assert!(history.iter().any(|l| l.text == "before the backup"));
}

#[test]
fn in_token_mode_a_ban_refuses_https_login_and_connect_tokens_handed_out_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, api) = start_token(dir.path());
    api.register("mallory", PASSWORD).unwrap();
    let early = api.login("mallory", PASSWORD).unwrap();

    assert!(
        server
            .run("ban mallory 1h cheating")
            .starts_with("mallory is banned")
    );
    match api.login("mallory", PASSWORD) {
        Err(ApiError::Refused {
            status, message, ..
        }) => {
            assert_eq!(status, 403);
            assert!(
                message.starts_with("You are banned until ") && message.ends_with(": cheating"),
                "{message}"
            );
        }
        other => panic!("a banned login was answered {other:?}"),
    }
    // The ban revoked the session, and the connect token from before it is refused on arrival.
    assert!(api.resume(&early.session_token).is_err());
    let mut client = TestClient::connect_with_token(&early.connect_token);
    let reason = client.kicked();
    assert!(reason.starts_with("You are banned until "), "{reason}");
    assert!(
        !client
            .received
            .iter()
            .any(|m| matches!(m, ServerMessage::LoggedIn { .. }))
    );
}

#[test]
fn in_token_mode_list_shows_browser_players_and_banip_closes_their_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, api) = start_token(dir.path());
    let (url, cert) = (api.base().to_owned(), dir.path().join("mmo-cert.pem"));
    for name in ["Brow", "Udpo"] {
        api.register(name, PASSWORD).unwrap();
    }
    let login = api.login("Brow", PASSWORD).unwrap();
    let mut web = TestClient::connect_ws_to(&url, &cert, &login.connect_token);
    web.expect("logged in over the websocket", |m| {
        matches!(m, ServerMessage::LoggedIn { .. }).then_some(())
    });
    let login = api.login("Udpo", PASSWORD).unwrap();
    let mut udp = TestClient::connect_with_token(&login.connect_token);
    udp.expect("logged in over UDP", |m| {
        matches!(m, ServerMessage::LoggedIn { .. }).then_some(())
    });

    let list = server.run_long("list");
    assert_eq!(list[0], "2 online", "{list:#?}");
    assert!(
        list[1].starts_with("  Brow player ") && list[1].contains(" ws 127.0.0.1:"),
        "{list:#?}"
    );
    assert!(
        list[2].starts_with("  Udpo player ") && list[2].contains(" udp 127.0.0.1:"),
        "{list:#?}"
    );

    // Banning the address closes the browser's socket with the ban's reason, and refuses a new one.
    assert!(server.run("banip 127.0.0.1 1h bots").contains("127.0.0.1"));
    let reason = web.kicked();
    assert!(reason.contains("bots"), "{reason}");
    web.expect_disconnected();
    let again = mmo::client::ws::WsClient::open(
        &url,
        mmo::client::ws::WsOptions {
            ca_pem: Some(&std::fs::read(&cert).unwrap()),
            ..Default::default()
        },
    );
    let refused = again.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        refused.contains("403") && refused.contains("bots"),
        "{refused}"
    );
}
