//! Unit tests of the wire: round trips, the pinned encoding, limits, hostile bytes.

use super::*;

#[test]
fn messages_round_trip() {
    let messages = [
        ClientMessage::Register {
            username: "alice".into(),
            password: "correct horse".into(),
        },
        ClientMessage::Login {
            username: "alice".into(),
            password: "correct horse".into(),
        },
        ClientMessage::Chat {
            text: "héllo, мир, κόσμε".into(),
        },
    ];
    for message in messages {
        assert_eq!(ClientMessage::decode(&message.encode()).unwrap(), message);
    }
    let reply = ServerMessage::Chat(ChatLine {
        sender: "bob".into(),
        text: "hi".into(),
        sent_at_ms: 1,
    });
    assert_eq!(ServerMessage::decode(&reply.encode()).unwrap(), reply);
}

/// If this fails, the wire changed: bump [`PROTOCOL_VERSION`] and update the expected bytes.
#[test]
fn wire_format_is_pinned() {
    assert_eq!(PROTOCOL_ID, 0x006d_6d6f_0000_0005);
    // The web client (web/app.js) names the same version and decodes the same bytes by hand.
    assert_eq!(WS_SUBPROTOCOL, format!("mmo.{PROTOCOL_VERSION}"));
    let chat = ClientMessage::Chat { text: "hi".into() }.encode();
    assert_eq!(chat, [2, 2, b'h', b'i']);
    let denied = ServerMessage::Denied {
        request: Request::Login,
        reason: "no".into(),
    }
    .encode();
    assert_eq!(denied, [2, 1, 2, b'n', b'o']);
    let line = ServerMessage::Chat(ChatLine {
        sender: "a".into(),
        text: "b".into(),
        sent_at_ms: 300,
    });
    assert_eq!(line.encode(), [3, 1, b'a', 1, b'b', 251, 44, 1]);
    let ServerMessage::Chat(one) = line else {
        unreachable!()
    };
    let lines = ServerMessage::ChatLines {
        lines: vec![one.clone(), one],
    };
    assert_eq!(
        lines.encode(),
        [
            14, 2, 1, b'a', 1, b'b', 251, 44, 1, 1, b'a', 1, b'b', 251, 44, 1
        ]
    );
    let move_to = ClientMessage::MoveTo { x: 1.0, y: 2.0 }.encode();
    assert_eq!(move_to, [3, 0, 0, 128, 63, 0, 0, 0, 64]);
    let snapshot = Snapshot {
        seq: 1,
        sent_at_ms: 300,
        positions: vec![(5, Pos { x: 300, y: 2 })],
    };
    assert_eq!(snapshot.encode(), [1, 251, 44, 1, 1, 5, 251, 44, 1, 2]);
    let system = ServerMessage::System { text: "x".into() }.encode();
    assert_eq!(system, [12, 1, b'x']);
    let whisper = ServerMessage::Whisper(WhisperLine {
        from: "a".into(),
        to: "b".into(),
        text: "c".into(),
        sent_at_ms: 300,
    });
    assert_eq!(
        whisper.encode(),
        [13, 1, b'a', 1, b'b', 1, b'c', 251, 44, 1]
    );
    let refused = ServerMessage::Denied {
        request: Request::Command,
        reason: "no".into(),
    };
    assert_eq!(refused.encode(), [2, 4, 2, b'n', b'o']);
    let entered = ServerMessage::EnteredView {
        id: 7,
        kind: Kind::Npc,
        name: "m".into(),
        at: Pos { x: 1, y: 2 },
    };
    assert_eq!(entered.encode(), [10, 7, 1, 1, b'm', 1, 2]);
}

#[test]
fn positions_quantize_into_the_world() {
    let at = Pos::quantize(10.5, 2047.99);
    assert_eq!((at.x(), at.y()), (10.5, 2047.0 + 31.0 / 32.0));
    assert_eq!(Pos::quantize(-5.0, 1e9), Pos { x: 0, y: u16::MAX });
    assert_eq!(
        Pos::quantize(f32::NAN, 0.0).x,
        0,
        "NaN saturates to 0, no panic"
    );
}

#[test]
fn decode_refuses_garbage_oversize_and_trailing_bytes() {
    assert!(ClientMessage::decode(&[]).is_err());
    assert!(ClientMessage::decode(&[9, 9, 9]).is_err());
    assert!(matches!(
        ClientMessage::decode(&vec![2u8; MAX_CLIENT_MESSAGE_BYTES + 1]),
        Err(DecodeError::TooLarge { .. })
    ));
    // A string that claims to be 1 GB long must fail on the limit, not try to allocate it.
    assert!(ClientMessage::decode(&[2, 252, 0, 0, 0, 64]).is_err());
    let mut bytes = ClientMessage::Chat { text: "hi".into() }.encode();
    bytes.push(0);
    assert!(matches!(
        ClientMessage::decode(&bytes),
        Err(DecodeError::TrailingBytes(1))
    ));
}

#[test]
fn account_rules() {
    assert!(validate_username("al").is_err());
    assert!(validate_username("alice_01").is_ok());
    assert!(validate_username("a".repeat(21).as_str()).is_err());
    assert!(validate_username("alice!").is_err());
    assert!(validate_username("ålice").is_err());
    assert!(validate_password("1234567").is_err());
    assert!(validate_password("12345678").is_ok());
    assert!(validate_password(&"x".repeat(129)).is_err());
}

#[test]
fn chat_rules() {
    assert_eq!(clean_chat_text("  hi there \n"), Ok("hi there"));
    assert!(clean_chat_text("   ").is_err());
    assert!(clean_chat_text("a\u{7}b").is_err());
    assert!(clean_chat_text(&"é".repeat(256)).is_ok());
    assert!(clean_chat_text(&"é".repeat(257)).is_err());
}

/// A small deterministic generator, so failures reproduce (no dependency for this).
pub(crate) struct XorShift(pub u64);

impl XorShift {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Random bytes and mutated valid messages never panic the decoders (they decode or are refused).
#[test]
fn decoders_survive_random_and_mutated_input() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let seeds: Vec<Vec<u8>> = vec![
        ClientMessage::Register {
            username: "alice".into(),
            password: "password".into(),
        }
        .encode(),
        ClientMessage::Login {
            username: "bob".into(),
            password: "x".repeat(128),
        }
        .encode(),
        ClientMessage::Chat {
            text: "héllo мир".into(),
        }
        .encode(),
        ServerMessage::ChatHistory {
            lines: vec![
                ChatLine {
                    sender: "a".into(),
                    text: "b".into(),
                    sent_at_ms: u64::MAX
                };
                3
            ],
        }
        .encode(),
        ServerMessage::OnlinePlayers {
            names: vec!["x".into(); 10],
        }
        .encode(),
    ];
    for _ in 0..50_000 {
        let bytes = if rng.below(3) == 0 {
            (0..rng.below(64)).map(|_| rng.next() as u8).collect()
        } else {
            let mut bytes = seeds[rng.below(seeds.len())].clone();
            for _ in 0..=rng.below(4) {
                let at = rng.below(bytes.len() + 1);
                match rng.below(4) {
                    0 if at < bytes.len() => bytes[at] ^= 1 << rng.below(8),
                    1 => bytes.insert(at, rng.next() as u8),
                    2 => bytes.truncate(at),
                    _ if at < bytes.len() => {
                        bytes[at] = [0x00, 0xFB, 0xFC, 0xFD, 0xFF][rng.below(5)]
                    }
                    _ => {}
                }
            }
            bytes
        };
        let _ = ClientMessage::decode(&bytes);
        let _ = ServerMessage::decode(&bytes);
    }
}
