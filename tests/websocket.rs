//! The WebSocket transport: players on the HTTPS listener's `/ws` (as the web client plays) beside
//! UDP players, on the real server in token mode, with real TLS and real WebSocket clients.

mod common;

use std::time::{Duration, Instant};

use common::{PASSWORD, TestClient, TestServer, http_get, pump_for};
use mmo::client::ws::{WsClient, WsOptions};
use mmo::protocol::{ClientMessage, Pos, ServerMessage};

/// Pumps `client` until its socket is closed; the server's close reason.
fn closed_with(client: &mut WsClient) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut inbox = Vec::new();
    while client.is_connected() {
        assert!(Instant::now() < deadline, "still open; got {inbox:?}");
        let _ = client.pump(&mut inbox);
        std::thread::sleep(Duration::from_millis(5));
    }
    client.disconnect_reason().unwrap()
}

fn open(server: &TestServer, options: WsOptions<'_>) -> Result<WsClient, String> {
    let https = server.https();
    let pem = std::fs::read(&https.cert_path).unwrap();
    let options = WsOptions {
        ca_pem: Some(&pem),
        ..options
    };
    WsClient::open(&https.url, options).map_err(|e| e.to_string())
}

#[test]
fn a_websocket_player_plays_with_a_udp_player() {
    let server = TestServer::start_token_with(|config| {
        config.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
    });
    let mut web = server.ws_player("Webby");
    let mut udp = server.token_player("Udpy");
    assert_eq!(
        web.expect("the other joining", |m| match m {
            ServerMessage::PlayerJoined { name } => Some(name.clone()),
            _ => None,
        }),
        "Udpy"
    );

    web.chat("hello from the browser");
    assert_eq!(udp.next_chat().unwrap().text, "hello from the browser");
    assert_eq!(web.next_chat().unwrap().sender, "Webby");
    udp.chat("<script>alert(1)</script>");
    assert_eq!(web.next_chat().unwrap().text, "<script>alert(1)</script>");
    udp.next_chat().unwrap();
    web.chat("/w Udpy psst");
    assert_eq!(udp.next_whisper().text, "psst");
    assert!(web.command("who").unwrap().contains("Udpy"));

    // The world: the UDP player sees the browser player walk.
    let (web_id, start) = web.spawned();
    let seen_as = udp.in_view("Webby");
    let target = Pos {
        x: start.x + 3 * 32,
        y: start.y,
    };
    web.walk_to(target);
    udp.wait_until_at(seen_as, target);
    assert!(web.last_seen(web_id).is_some());

    let scrape = http_get(server.metrics_addr(), "/metrics").1;
    for line in [
        "mmo_transport_connections{transport=\"ws\"} 1",
        "mmo_transport_players{transport=\"ws\"} 1",
        "mmo_transport_players{transport=\"udp\"} 1",
        "mmo_connections 2",
    ] {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !http_get(server.metrics_addr(), "/metrics").1.contains(line) {
            assert!(Instant::now() < deadline, "{line} in {scrape}");
            pump_for(&mut [&mut web, &mut udp], Duration::from_millis(100));
        }
    }

    // Leaving: the UDP player is told, as for any player.
    web.link().ws().unwrap().disconnect();
    assert_eq!(
        udp.expect("the browser player leaving", |m| match m {
            ServerMessage::PlayerLeft { name } => Some(name.clone()),
            _ => None,
        }),
        "Webby"
    );
}

#[test]
fn one_session_per_account_whichever_transport() {
    let server = TestServer::start_token();
    let mut udp = server.token_player("Both");
    let login = server.api().login("Both", PASSWORD).unwrap();
    let mut web = TestClient::connect_ws(&server.https(), &login.connect_token);
    web.expect("logged in over the websocket", |m| {
        matches!(m, ServerMessage::LoggedIn { .. }).then_some(())
    });
    assert_eq!(udp.kicked(), "Logged in from another location");
    udp.expect_disconnected();

    let login = server.api().login("Both", PASSWORD).unwrap();
    let mut again = TestClient::connect_with_token(&login.connect_token);
    again.expect("logged in over UDP", |m| {
        matches!(m, ServerMessage::LoggedIn { .. }).then_some(())
    });
    assert_eq!(web.kicked(), "Logged in from another location");
    web.expect_disconnected();
    assert!(
        web.disconnect_reason().unwrap().contains("(4000)"),
        "{:?}",
        web.disconnect_reason()
    );
}

#[test]
fn a_socket_that_misbehaves_is_closed_with_its_reason() {
    let server = TestServer::start_token();
    let api = server.api();
    api.register("Tester", PASSWORD).unwrap();
    let token = |api: &mmo::client::api::ApiClient| api.login("Tester", PASSWORD).unwrap();

    // Garbage where the token goes.
    let mut socket = open(&server, WsOptions::default()).unwrap();
    socket.send_raw(vec![1, 2, 3]);
    assert_eq!(closed_with(&mut socket), "not a connect token (1008)");

    // A text frame.
    let mut socket = open(&server, WsOptions::default()).unwrap();
    socket.send_frame(tungstenite::Message::text("{\"Login\":{}}"));
    assert_eq!(closed_with(&mut socket), "Binary frames only (1003)");

    // A token used twice: the second socket is refused, the first plays on.
    let login = token(&api);
    let pem = std::fs::read(server.https().cert_path).unwrap();
    let with_ca = || WsOptions {
        ca_pem: Some(&pem),
        ..Default::default()
    };
    let mut first = TestClient::connect_ws(&server.https(), &login.connect_token);
    first.expect("logged in", |m| {
        matches!(m, ServerMessage::LoggedIn { .. }).then_some(())
    });
    let mut second =
        WsClient::connect(&server.https().url, &login.connect_token, with_ca()).unwrap();
    assert_eq!(
        closed_with(&mut second),
        "connect token already used (1008)"
    );
    assert!(first.is_connected());

    // A message that does not decode.
    first.send_raw(vec![200, 1, 2]);
    let reason = closed_with(first.link().ws().unwrap());
    assert!(
        reason.starts_with("Undecodable message") && reason.ends_with("(1007)"),
        "{reason}"
    );

    // A flood of valid messages.
    let login = token(&api);
    let mut flooder =
        WsClient::connect(&server.https().url, &login.connect_token, with_ca()).unwrap();
    for i in 0..200 {
        flooder.send(&ClientMessage::MoveTo {
            x: i as f32,
            y: 1.0,
        });
    }
    assert_eq!(closed_with(&mut flooder), "Too many messages (1008)");

    // Nothing at all.
    let mut silent = open(&server, WsOptions::default()).unwrap();
    assert_eq!(closed_with(&mut silent), "No connect token in time (1008)");
}

#[test]
fn upgrades_from_other_pages_old_clients_and_crowds_are_refused() {
    let server = TestServer::start_token();
    let refused = |options: WsOptions<'_>| open(&server, options).err().unwrap_or_default();
    let https = server.https();
    let foreign = refused(WsOptions {
        origin: Some("https://evil.example"),
        ..Default::default()
    });
    assert!(foreign.contains("403"), "{foreign}");
    let own = format!("https://{}", https.addr);
    assert!(
        open(
            &server,
            WsOptions {
                origin: Some(&own),
                ..Default::default()
            }
        )
        .is_ok()
    );
    let old = refused(WsOptions {
        subprotocol: Some("mmo.4"),
        ..Default::default()
    });
    assert!(
        old.contains("400") && old.contains("reload the page"),
        "{old}"
    );

    // An address holds at most 8 sockets (the one above may still be closing).
    std::thread::sleep(Duration::from_millis(200));
    let mut held = Vec::new();
    let crowd = loop {
        match open(&server, WsOptions::default()) {
            Ok(socket) => held.push(socket),
            Err(error) => break error,
        }
        assert!(held.len() <= 8, "more than 8 sockets from one address");
    };
    assert!(crowd.contains("429"), "{crowd}");
    assert!(held.len() >= 7, "{}", held.len());
}

#[test]
fn a_stopping_server_tells_websocket_players_why() {
    let mut server = TestServer::start_token();
    let mut web = server.ws_player("Stayer");
    let stopping = std::thread::spawn(move || {
        server.stop();
    });
    assert_eq!(web.kicked(), mmo::protocol::SHUTTING_DOWN);
    web.expect_disconnected();
    stopping.join().unwrap();
}

/// `GET path` with curl (as a browser would fetch it), trusting the server's certificate: the status
/// line and headers (lowercased names), and the body.
fn curl_get(server: &TestServer, path: &str) -> (String, String) {
    let https = server.https();
    let out = std::process::Command::new("curl")
        .args(["-s", "-D", "-", "--cacert"])
        .arg(&https.cert_path)
        .arg(format!("{}{path}", https.url))
        .output()
        .expect("curl runs (Debian's curl package)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_ascii_lowercase(), body.to_owned())
}

#[test]
fn the_web_client_is_served_under_a_strict_policy() {
    let server = TestServer::start_token();
    let policy = format!(
        "content-security-policy: {}",
        mmo::http::web::CONTENT_SECURITY_POLICY.to_ascii_lowercase()
    );
    for (path, kind, file) in [
        ("/", "text/html", "web/index.html"),
        ("/app.js", "text/javascript", "web/app.js"),
        ("/style.css", "text/css", "web/style.css"),
    ] {
        let (head, body) = curl_get(&server, path);
        assert!(head.starts_with("http/1.1 200"), "{path}: {head}");
        assert!(
            head.contains(&format!("content-type: {kind}")),
            "{path}: {head}"
        );
        for header in [
            policy.as_str(),
            "x-content-type-options: nosniff",
            "referrer-policy: no-referrer",
            "cache-control: no-cache",
            "x-frame-options: deny",
        ] {
            assert!(head.contains(header), "{path} lacks {header}: {head}");
        }
        let shipped = std::fs::read_to_string(file).unwrap();
        assert_eq!(body, shipped, "{path} is {file}, embedded");
    }
    assert!(
        curl_get(&server, "/favicon.ico")
            .0
            .starts_with("http/1.1 204")
    );
    assert!(
        curl_get(&server, "/nothing-here")
            .0
            .starts_with("http/1.1 404")
    );
}
