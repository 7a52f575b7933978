//! Token mode end to end, over real HTTPS (rustls, the server's self-signed certificate) and real UDP in
//! netcode's secure mode: register, log in and chat; resume a session; logout and password changes
//! revoke; bad connect tokens and bad HTTP bodies are refused; and what crosses UDP cannot be read.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, SystemTime};

use common::proxy::Proxy;
use common::*;
use mmo::api;
use mmo::client::api::{ApiClient, decode_connect_token, encode_connect_token};
use mmo::protocol::{self, ClientMessage, Request, ServerMessage};
use renetcode::{ConnectToken, NetcodeServer, ServerAuthentication, ServerConfig, ServerResult};

#[test]
fn register_log_in_and_chat_over_https_and_encrypted_udp() {
    let server = TestServer::start_token();
    let api = server.api();
    assert_eq!(api.register("Alice", PASSWORD).unwrap(), "Alice");
    let login = api.login("alice", PASSWORD).unwrap();
    assert_eq!(
        login.name, "Alice",
        "the display name, whatever case was typed"
    );
    let token = decode_connect_token(&login.connect_token).unwrap();
    assert_eq!(token.protocol_id, protocol::PROTOCOL_ID);
    assert!(token.expire_timestamp - token.create_timestamp <= 60);
    assert!(login.session_expires_at > token.create_timestamp + 29 * 86_400);

    let mut alice = TestClient::connect_with_token(&login.connect_token);
    let name = alice.expect("logged in", |m| match m {
        ServerMessage::LoggedIn { name } => Some(name.clone()),
        _ => None,
    });
    assert_eq!(name, "Alice");
    let online = alice.expect("online list", |m| match m {
        ServerMessage::OnlinePlayers { names } => Some(names.clone()),
        _ => None,
    });
    assert_eq!(online, ["Alice"]);

    let mut bob = server.token_player("Bob");
    alice.expect("Bob joined", |m| {
        matches!(m, ServerMessage::PlayerJoined { name } if name == "Bob").then_some(())
    });
    bob.chat("hello over secure netcode");
    for client in [&mut alice, &mut bob] {
        let line = client.next_chat().unwrap();
        assert_eq!(
            (line.sender.as_str(), line.text.as_str()),
            ("Bob", "hello over secure netcode")
        );
    }
    assert_eq!(api.health().unwrap().players_online, 2);
}

#[test]
fn register_and_login_messages_over_udp_are_refused() {
    let server = TestServer::start_token();
    let mut alice = server.token_player("Alice");
    alice.send(&ClientMessage::Login {
        username: "Alice".into(),
        password: PASSWORD.into(),
    });
    let denied = alice.expect("a denial", |m| match m {
        ServerMessage::Denied { request, reason } => Some((*request, reason.clone())),
        _ => None,
    });
    assert_eq!(denied, (Request::Login, api::USE_HTTPS.to_owned()));
    alice.send(&ClientMessage::Register {
        username: "Mallory".into(),
        password: PASSWORD.into(),
    });
    let denied = alice.expect("a denial", |m| match m {
        ServerMessage::Denied { request, reason } => Some((*request, reason.clone())),
        _ => None,
    });
    assert_eq!(denied, (Request::Register, api::USE_HTTPS.to_owned()));

    // An in-band client cannot even connect: its request is not sealed with the server's key.
    let mut in_band = TestClient::start_connecting(server.addr);
    assert!(!in_band.connects_within(Duration::from_secs(2)));
}

#[test]
fn a_second_login_kicks_the_older_session() {
    let server = TestServer::start_token();
    let mut first = server.token_player("Alice");
    let login = server.api().login("Alice", PASSWORD).unwrap();
    let mut second = TestClient::connect_with_token(&login.connect_token);
    second.expect("logged in", |m| {
        matches!(m, ServerMessage::LoggedIn { .. }).then_some(())
    });
    let reason = first.expect("kicked", |m| match m {
        ServerMessage::Kicked { reason } => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(reason, mmo::auth::LOGGED_IN_ELSEWHERE);
    first.expect_disconnected();
}

#[test]
fn a_session_token_logs_in_again_after_the_client_and_the_server_restart() {
    let mut server = TestServer::start_token();
    let api = server.api();
    api.register("Alice", PASSWORD).unwrap();
    let login = api.login("Alice", PASSWORD).unwrap();
    drop(TestClient::connect_with_token(&login.connect_token));

    server.restart();
    let api = server.api();
    let resumed = api.resume(&login.session_token).unwrap();
    assert_eq!(resumed.name, "Alice");
    assert_eq!(resumed.session_token, login.session_token);
    let mut alice = TestClient::connect_with_token(&resumed.connect_token);
    alice.expect("logged in with the remembered session", |m| {
        matches!(m, ServerMessage::LoggedIn { name } if name == "Alice").then_some(())
    });
    // A connect token from before the restart is sealed with the old key (random per start).
    let mut stale = TestClient::start_with_token(&login.connect_token);
    assert!(!stale.connects_within(Duration::from_secs(2)));
}

#[test]
fn logout_and_a_password_change_revoke_sessions() {
    let server = TestServer::start_token();
    let api = server.api();
    api.register("Alice", PASSWORD).unwrap();
    let laptop = api.login("Alice", PASSWORD).unwrap();
    let phone = api.login("Alice", PASSWORD).unwrap();
    assert_ne!(laptop.session_token, phone.session_token);

    api.logout(&laptop.session_token).unwrap();
    let revoked = api.resume(&laptop.session_token).unwrap_err();
    assert_eq!(revoked.status(), Some(401));
    assert_eq!(revoked.to_string(), mmo::auth::worker::SESSION_INVALID);
    assert!(api.resume(&phone.session_token).is_ok(), "only that one");

    let wrong = api
        .change_password("Alice", "not the password", "a new password")
        .unwrap_err();
    assert_eq!(wrong.status(), Some(401));
    assert_eq!(
        api.change_password("Alice", PASSWORD, "a new password")
            .unwrap(),
        "Alice"
    );
    assert_eq!(
        api.resume(&phone.session_token).unwrap_err().status(),
        Some(401)
    );
    assert_eq!(
        api.login("Alice", PASSWORD).unwrap_err().status(),
        Some(401)
    );
    assert!(api.login("Alice", "a new password").is_ok());
}

#[test]
fn expired_tampered_foreign_and_other_version_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("netcode.key");
    let key = [9u8; 32];
    std::fs::write(&key_file, key).unwrap();
    let server = TestServer::start_token_with(move |config| {
        config.netcode_key_file = Some(key_file.clone());
    });
    let api = server.api();
    api.register("Alice", PASSWORD).unwrap();
    let login = api.login("Alice", PASSWORD).unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    let user = api::TokenUser {
        account_id: 1,
        name: "Alice".into(),
    }
    .to_user_data()
    .unwrap();
    let mint = |created: Duration, protocol_id: u64, key: &[u8; 32]| {
        let token = ConnectToken::generate(
            created,
            protocol_id,
            30,
            rand::random(),
            15,
            vec![server.addr],
            Some(&user),
            key,
        )
        .unwrap();
        encode_connect_token(&token)
    };

    // The key file works: a token the test mints with it is as good as the server's.
    let mut minted = TestClient::start_with_token(&mint(now, protocol::PROTOCOL_ID, &key));
    assert!(
        minted.connects_within(PATIENCE),
        "a token sealed with the key"
    );
    drop(minted);

    let expired = mint(now - Duration::from_secs(120), protocol::PROTOCOL_ID, &key);
    let other_version = mint(now, protocol::PROTOCOL_ID + 1, &key);
    let foreign = mint(now, protocol::PROTOCOL_ID, &[1u8; 32]);
    let mut tampered = decode_connect_token(&login.connect_token).unwrap();
    tampered.private_data[100] ^= 0x40;
    let tampered = encode_connect_token(&tampered);
    for (what, token) in [
        ("expired", expired),
        ("for another protocol version", other_version),
        ("sealed with another key", foreign),
        ("tampered", tampered),
    ] {
        let mut client = TestClient::start_with_token(&token);
        assert!(
            !client.connects_within(Duration::from_secs(2)),
            "a token {what} must not connect"
        );
    }
    // The untampered one still works (nothing above used it up).
    TestClient::connect_with_token(&login.connect_token);
}

/// Sends `body` to the login endpoint as `content_type`: the status, and the error text (or, for a
/// success, the body).
fn post(api: &ApiClient, path: &str, content_type: &str, body: &str) -> (u16, String) {
    let answer = api
        .post_raw(path, content_type, body.as_bytes())
        .expect("an answer");
    assert_eq!(
        answer.content_type.as_deref(),
        Some("application/json"),
        "{answer:?}"
    );
    if answer.status < 400 {
        return (answer.status, answer.body);
    }
    let error: api::ErrorBody =
        serde_json::from_str(&answer.body).unwrap_or_else(|_| panic!("a JSON error: {answer:?}"));
    (answer.status, error.error)
}

#[test]
fn malformed_oversized_and_wrong_type_bodies_get_json_errors() {
    let server = TestServer::start_token();
    let api = server.api();
    let json = "application/json";
    let good = r#"{"username": "Alice", "password": "correct horse battery"}"#;
    assert_eq!(post(&api, api::REGISTER, "text/plain", good).0, 415);
    assert_eq!(post(&api, api::REGISTER, json, "{not json").0, 400);
    let (status, error) = post(&api, api::REGISTER, json, r#"{"username": "Alice"}"#);
    assert_eq!(status, 400);
    assert!(error.contains("password"), "{error}");
    assert_eq!(post(&api, api::LOGIN, json, r#"["Alice", 1]"#).0, 400);
    let huge = format!(
        r#"{{"username": "Alice", "password": "{}"}}"#,
        "x".repeat(10_000)
    );
    assert_eq!(post(&api, api::REGISTER, json, &huge).0, 413);
    let (status, error) = post(
        &api,
        api::REGISTER,
        json,
        r#"{"username": "ab", "password": "correct horse"}"#,
    );
    assert_eq!(
        (status, error.as_str()),
        (400, "Username must be 3 to 20 characters")
    );
    assert_eq!(post(&api, "/api/nothing", json, good).0, 404);
    let get_login = api.get_raw(api::LOGIN).unwrap();
    assert_eq!(get_login.status, 405);

    // The account rules and answers of in-band mode, as status codes.
    assert_eq!(post(&api, api::REGISTER, json, good).0, 201);
    let (status, error) = post(&api, api::REGISTER, json, &good.replace("Alice", "ALICE"));
    assert_eq!(
        (status, error.as_str()),
        (409, "This username is already taken")
    );
    let wrong = r#"{"username": "Alice", "password": "wrong password"}"#;
    let unknown = r#"{"username": "Nobody", "password": "wrong password"}"#;
    let incorrect = (401, "Username or password incorrect".to_owned());
    assert_eq!(post(&api, api::LOGIN, json, wrong), incorrect);
    assert_eq!(
        post(&api, api::LOGIN, json, unknown),
        incorrect,
        "unknown names alike"
    );
    let (status, _) = post(&api, api::SESSION, json, r#"{"session_token": "made up"}"#);
    assert_eq!(status, 401);

    // Guessing: the fifth failure from this address (three so far) locks it, with 429 and Retry-After.
    for _ in 0..2 {
        assert_eq!(post(&api, api::LOGIN, json, wrong), incorrect);
    }
    let locked = api.post_raw(api::LOGIN, json, good.as_bytes()).unwrap();
    assert_eq!(locked.status, 429, "{locked:?}");
    assert_eq!(locked.retry_after, Some(30));

    let health = api.get_raw(api::HEALTH).unwrap();
    assert_eq!(health.status, 200);
    let health: api::Health = serde_json::from_str(&health.body).unwrap();
    assert_eq!(health.protocol_version, protocol::PROTOCOL_VERSION);
}

#[test]
fn an_untrusted_certificate_is_refused_by_the_client() {
    let server = TestServer::start_token();
    let url = server.https().url;
    let error = ApiClient::new(&url, None).unwrap().health().unwrap_err();
    assert!(
        matches!(error, mmo::client::api::ApiError::Untrusted { .. }),
        "{error:?}"
    );
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// Whether a netcode server holding the public all-zero key (what unsecure mode seals with) opens this
/// connection request: it answers with a challenge only if the token decrypted.
fn zero_key_server_opens(request: &[u8]) -> bool {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut server = NetcodeServer::new(ServerConfig {
        current_time: now,
        max_clients: 4,
        protocol_id: protocol::PROTOCOL_ID,
        public_addresses: vec![addr],
        authentication: ServerAuthentication::Unsecure,
    });
    let mut bytes = request.to_vec();
    matches!(
        server.process_packet("127.0.0.1:4000".parse().unwrap(), &mut bytes),
        ServerResult::PacketToSend { .. }
    )
}

const SECRET_LINE: &str = "the treasure is under the old oak";

/// Logs in through a proxy, says [`SECRET_LINE`], and returns every datagram that crossed it.
fn record_a_session(server: &TestServer, proxy: &Proxy, token_mode: bool) -> Vec<Vec<u8>> {
    let mut alice = if token_mode {
        let api = server.api();
        api.register("Alice", PASSWORD).unwrap();
        let login = api.login("Alice", PASSWORD).unwrap();
        let mut alice = TestClient::connect_with_token(&login.connect_token);
        alice.expect("logged in", |m| {
            matches!(m, ServerMessage::LoggedIn { .. }).then_some(())
        });
        alice
    } else {
        let mut alice = TestClient::connect(proxy.addr);
        alice.register("Alice", PASSWORD).unwrap();
        alice.login("Alice", PASSWORD).unwrap();
        alice
    };
    alice.chat(SECRET_LINE);
    assert_eq!(alice.next_chat().unwrap().text, SECRET_LINE);
    drop(alice);
    proxy.datagrams()
}

#[test]
fn in_token_mode_nothing_on_the_wire_can_be_read() {
    // The proxy sits at the address connect tokens send clients to (`--public-addr`).
    let front = UdpSocket::bind("127.0.0.1:0").unwrap();
    let public = front.local_addr().unwrap();
    let server = TestServer::start_token_with(move |config| {
        config.public_addr = Some(public);
    });
    let proxy = Proxy::start_on(front, server.addr);
    let datagrams = record_a_session(&server, &proxy, true);
    assert!(datagrams.len() > 4, "the session crossed the proxy");
    for secret in [PASSWORD, "Alice", SECRET_LINE] {
        assert!(
            !datagrams.iter().any(|d| contains(d, secret)),
            "{secret:?} crossed the wire in the clear"
        );
    }
    let request = datagrams
        .iter()
        .find(|d| d.len() == mmo::udp::connection_request::BYTES && d[0] == 0)
        .expect("the connection request was recorded");
    assert!(
        !zero_key_server_opens(request),
        "the public zero key must not open a token-mode connection request"
    );
}

#[test]
fn in_band_mode_is_not_plain_text_but_the_public_zero_key_opens_it() {
    let server = TestServer::start();
    let proxy = Proxy::start(server.addr);
    let datagrams = record_a_session(&server, &proxy, false);
    for secret in [PASSWORD, SECRET_LINE] {
        assert!(!datagrams.iter().any(|d| contains(d, secret)));
    }
    let request = datagrams
        .iter()
        .find(|d| d.len() == mmo::udp::connection_request::BYTES && d[0] == 0)
        .expect("the connection request was recorded");
    assert!(
        zero_key_server_opens(request),
        "anyone holding the all-zero key opens an in-band request, and with it the session keys: \
         this is why in-band mode refuses public addresses"
    );
}
