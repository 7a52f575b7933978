//! The web client in a real browser: headless Chromium (driven over WebDriver) loads the page the
//! server serves at `/`, registers, logs in, chats with a UDP player both ways, walks and is seen
//! walking, shows markup in chat as text, comes back by "Remember me" after a reload, and logs out;
//! and its hand-written codec decodes what the Rust one encodes.

mod common;

use std::time::{Duration, Instant};

use common::webdriver::Browser;
use common::{PASSWORD, TestServer, pump_for};
use mmo::protocol::{
    ChatLine, ClientMessage, Kind, Pos, Request, ServerMessage, Snapshot, WhisperLine,
};
use serde_json::{Value, json};

const SCREEN: &str = "return document.body.dataset.screen";
const ALERT: &str = "return document.getElementById('alert').textContent";
const LINES: &str =
    "return Array.from(document.querySelectorAll('#chat-log .line')).map(l => l.textContent)";
const ONLINE: &str =
    "return Array.from(document.querySelectorAll('#online li')).map(l => l.textContent)";
const ME: &str = "return document.getElementById('world').dataset.me || ''";

/// `"X,Y"` as the page's world hook writes it.
fn xy(value: &Value) -> Option<(i64, i64)> {
    let (x, y) = value.as_str()?.split_once(',')?;
    Some((x.parse().ok()?, y.parse().ok()?))
}

fn has_line(text: &str) -> impl Fn(&Value) -> bool + '_ {
    move |lines| {
        lines
            .as_array()
            .is_some_and(|lines| lines.iter().any(|l| l == text))
    }
}

#[test]
fn a_browser_player_logs_in_chats_walks_returns_and_logs_out() {
    let server = TestServer::start_token();
    let https = server.https();
    let mut udp = server.token_player("Udpy");
    let browser = Browser::start();
    browser.goto(&format!("{}/", https.url));
    browser.wait_for("the login screen", SCREEN, |s| s == "login");

    // Register, then a wrong password, then log in with "Remember me".
    browser.fill("#username", "Webby");
    browser.fill("#password", PASSWORD);
    browser.click("#register-button");
    browser.wait_for("registered", ALERT, |a| a == "Registration successful");
    browser.fill("#password", "not the password");
    browser.click("#login-button");
    browser.wait_for("the refusal", ALERT, |a| {
        a == "Username or password incorrect"
    });
    browser.fill("#password", PASSWORD);
    browser.click("#remember");
    browser.click("#login-button");
    browser.wait_for("the chat screen", SCREEN, |s| s == "chat");
    browser.wait_for("the online list", ONLINE, |o| {
        *o == json!(["Udpy", "Webby"])
    });
    assert_eq!(
        udp.expect("the browser player joining", |m| match m {
            ServerMessage::PlayerJoined { name } => Some(name.clone()),
            _ => None,
        }),
        "Webby"
    );

    // Chat both ways; markup is text.
    let hostile = "<script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\">";
    udp.chat(hostile);
    let shown = format!("Udpy says: \"{hostile}\"");
    browser.wait_for("the UDP player's line", LINES, has_line(&shown));
    let injected = browser.run(
        "return [document.querySelectorAll('#chat-log img, #chat-log script').length, window.pwned || 0]",
        vec![],
    );
    assert_eq!(injected, json!([0, 0]), "markup in chat became elements");
    browser.type_keys("#chat-input", "hello from chromium\n");
    udp.expect("the browser player's line", |m| match m {
        ServerMessage::Chat(line) if line.sender == "Webby" => Some(line.text.clone()),
        _ => None,
    });
    browser.wait_for(
        "its own line",
        LINES,
        has_line("Webby says: \"hello from chromium\""),
    );
    udp.chat("/w Webby just you");
    browser.wait_for("a whisper", LINES, has_line("Udpy whispers: \"just you\""));

    // Walk: click right of the player; the UDP player sees it arrive where the page says it is.
    let seen_as = udp.in_view("Webby");
    let start = xy(&browser.wait_for("a position", ME, |m| xy(m).is_some())).unwrap();
    browser.click_at("#world", 80, 0);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        pump_for(&mut [&mut udp], Duration::from_millis(50));
        let here = xy(&browser.run(ME, vec![])).unwrap();
        let seen = udp
            .last_seen(seen_as)
            .map(|at| (at.x().round() as i64, at.y().round() as i64));
        if here.0 > start.0 + 20 && seen == Some(here) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "walked from {start:?} to {here:?}; the UDP player sees {seen:?}"
        );
    }

    // Reload: "Remember me" logs the player in again.
    browser.refresh();
    browser.wait_for("the chat screen again", SCREEN, |s| s == "chat");
    browser.wait_for(
        "its name",
        "return document.getElementById('me').textContent",
        |n| n == "Webby",
    );
    udp.expect("the browser player back", |m| {
        matches!(m, ServerMessage::PlayerJoined { name } if name == "Webby").then_some(())
    });

    // Log out: the login screen, nothing remembered, the other player told.
    browser.click("#logout-button");
    browser.wait_for("the login screen", SCREEN, |s| s == "login");
    assert_eq!(
        browser.run("return localStorage.getItem('mmo.session')", vec![]),
        Value::Null
    );
    udp.expect("the browser player leaving", |m| {
        matches!(m, ServerMessage::PlayerLeft { name } if name == "Webby").then_some(())
    });
    browser.refresh();
    browser.wait_for("still logged out after a reload", SCREEN, |s| s == "login");

    let console = browser.console();
    assert!(
        !console
            .iter()
            .any(|l| l.contains("Content Security Policy") || l.contains("Refused to")),
        "the page broke its policy: {console:#?}"
    );
}

#[test]
fn the_pages_codec_reads_and_writes_what_the_server_does() {
    let server = TestServer::start_token();
    let browser = Browser::start();
    browser.goto(&format!("{}/", server.https().url));
    browser.wait_for("the page", SCREEN, |s| s == "login");

    let line = ChatLine {
        sender: "Ann".into(),
        text: "héllo <b>wörld</b> 👋".into(),
        sent_at_ms: 1_800_000_000_123,
    };
    let at = Pos { x: 300, y: 65_535 };
    let messages = vec![
        ServerMessage::Registered {
            username: "Ann".into(),
        },
        ServerMessage::LoggedIn { name: "Ann".into() },
        ServerMessage::Denied {
            request: Request::Command,
            reason: "No".into(),
        },
        ServerMessage::Chat(line.clone()),
        ServerMessage::ChatHistory {
            lines: vec![line.clone(), line.clone()],
        },
        ServerMessage::OnlinePlayers {
            names: (0..300).map(|i| format!("p{i}")).collect(),
        },
        ServerMessage::PlayerJoined { name: "B".into() },
        ServerMessage::PlayerLeft { name: "B".into() },
        ServerMessage::Kicked {
            reason: "Bye".into(),
        },
        ServerMessage::Spawned { id: 70_000, at },
        ServerMessage::EnteredView {
            id: 1,
            kind: Kind::Npc,
            name: "Wolf".into(),
            at,
        },
        ServerMessage::LeftView { id: u32::MAX },
        ServerMessage::System {
            text: "x".repeat(300),
        },
        ServerMessage::Whisper(WhisperLine {
            from: "A".into(),
            to: "B".into(),
            text: "psst".into(),
            sent_at_ms: 5,
        }),
        ServerMessage::ChatLines {
            lines: vec![line.clone()],
        },
    ];
    for message in messages {
        let decoded = browser.run(
            "return window.mmoWire.decodeServer(new Uint8Array(arguments[0]))",
            vec![json!(message.encode())],
        );
        assert_eq!(
            decoded,
            serde_json::to_value(&message).unwrap(),
            "{message:?}"
        );
    }
    let snapshot = Snapshot {
        seq: 9,
        sent_at_ms: 1_800_000_000_000,
        positions: vec![(1, at), (300, Pos { x: 0, y: 7 })],
    };
    let decoded = browser.run(
        "return window.mmoWire.decodeSnapshot(new Uint8Array(arguments[0]))",
        vec![json!(snapshot.encode())],
    );
    assert_eq!(decoded, serde_json::to_value(&snapshot).unwrap());

    for message in [
        ClientMessage::Register {
            username: "Ann".into(),
            password: PASSWORD.into(),
        },
        ClientMessage::Login {
            username: "Ann".into(),
            password: "ü".repeat(128),
        },
        ClientMessage::Chat {
            text: "hi 👋".into(),
        },
        ClientMessage::MoveTo { x: 1.5, y: 2047.25 },
    ] {
        let encoded = browser.run(
            "return Array.from(window.mmoWire.encodeClient(arguments[0]))",
            vec![serde_json::to_value(&message).unwrap()],
        );
        assert_eq!(encoded, json!(message.encode()), "{message:?}");
    }

    // Bytes that are not a message are refused, not misread.
    let refused = browser.run(
        "try { window.mmoWire.decodeServer(new Uint8Array(arguments[0])); return false } catch (e) { return true }",
        vec![json!([99, 0])],
    );
    assert_eq!(refused, json!(true));
}

#[test]
fn the_pages_codec_passes_its_own_vectors() {
    // Strictness the browser test does not reach: every truncation, trailing bytes, bad UTF-8,
    // over-long lengths and markers, values past JavaScript's exact integers.
    common::webdriver::install_if_missing("node", "node");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web/codec-test.mjs");
    let output = std::process::Command::new("node")
        .arg(script)
        .output()
        .expect("node runs");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
