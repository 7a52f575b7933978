//! Unit tests of the packet gate: shapes, budgets, blocks and forged requests.

use super::*;

const PROTOCOL: u64 = 7;

fn limits() -> Limits {
    Limits {
        per_player: 100,
        per_stranger: 10,
        strangers: 50,
        block_for: Duration::from_secs(5),
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn payload() -> Vec<u8> {
    let mut bytes = vec![0u8; 60];
    bytes[0] = 5 | (1 << 4);
    bytes
}

fn request() -> Vec<u8> {
    request::lookalike(PROTOCOL)
}

#[test]
fn shapes_netcode_would_never_accept_are_malformed() {
    assert!(shape_ok(PROTOCOL, &request(), false));
    assert!(!shape_ok(PROTOCOL, &request(), true));
    let mut forever = request();
    forever[request::EXPIRY].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(
        !shape_ok(PROTOCOL, &forever, false),
        "a far-future expiry would hold a pending slot for good"
    );
    let mut other_protocol = request();
    other_protocol[request::PROTOCOL_ID.start] ^= 1;
    assert!(!shape_ok(PROTOCOL, &other_protocol, false));
    assert!(!shape_ok(PROTOCOL, &request()[..1000], false));
    assert!(shape_ok(PROTOCOL, &payload(), true));
    assert!(
        !shape_ok(PROTOCOL, &payload(), false),
        "payloads only from players"
    );
    assert!(!shape_ok(PROTOCOL, &[5, 0, 0], true), "too short");
    let mut bad_type = payload();
    bad_type[0] = 9;
    assert!(!shape_ok(PROTOCOL, &bad_type, true));
    let mut long_sequence = payload();
    long_sequence[0] = 5 | (9 << 4);
    assert!(!shape_ok(PROTOCOL, &long_sequence, true));
}

#[test]
fn a_flooding_address_is_blocked_and_others_are_not() {
    let mut gate = GateState::new(PROTOCOL, limits());
    gate.apply(Control::Connected(addr(1)));
    gate.apply(Control::Connected(addr(2)));
    let now = Instant::now();
    let mut verdicts = Vec::new();
    for _ in 0..250 {
        verdicts.push(gate.judge(addr(1), &payload(), now));
    }
    assert_eq!(verdicts[..100], [Verdict::Pass; 100], "the burst passes");
    assert_eq!(verdicts[100], Verdict::OverBudget);
    assert_eq!(
        verdicts[200],
        Verdict::NewlyBlocked { player: true },
        "twice the budget in a second blocks"
    );
    assert_eq!(verdicts[201], Verdict::Blocked);
    assert_eq!(gate.judge(addr(2), &payload(), now), Verdict::Pass);
    let later = now + Duration::from_secs(2);
    assert_eq!(gate.judge(addr(1), &payload(), later), Verdict::Blocked);
    let after_block = now + Duration::from_secs(6);
    assert_eq!(gate.judge(addr(1), &payload(), after_block), Verdict::Pass);
}

#[test]
fn junk_spends_budget_so_junk_floods_get_blocked_too() {
    let mut gate = GateState::new(PROTOCOL, limits());
    let now = Instant::now();
    let junk = [0xFFu8; 1200];
    let verdicts: Vec<_> = (0..30).map(|_| gate.judge(addr(9), &junk, now)).collect();
    assert_eq!(verdicts[..10], [Verdict::Malformed; 10]);
    assert_eq!(verdicts[20], Verdict::NewlyBlocked { player: false });
}

#[test]
fn many_strangers_share_one_bucket_and_players_keep_theirs() {
    let mut gate = GateState::new(PROTOCOL, limits());
    gate.apply(Control::Connected(addr(1)));
    let now = Instant::now();
    let passed = (0..200u16)
        .filter(|port| gate.judge(addr(1000 + port), &request(), now) == Verdict::Pass)
        .count();
    assert_eq!(
        passed, 50,
        "all strangers together get `strangers` a second"
    );
    assert_eq!(gate.judge(addr(1), &payload(), now), Verdict::Pass);
}

/// A connection request as netcode's secure client sends it, for a token sealed with `key`.
fn sealed_request(key: &[u8; 32]) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let token =
        renetcode::ConnectToken::generate(now, PROTOCOL, 30, 7, 15, vec![addr(5000)], None, key)
            .unwrap();
    let mut bytes = vec![0u8];
    bytes.extend_from_slice(&token.version_info);
    bytes.extend_from_slice(&token.protocol_id.to_le_bytes());
    bytes.extend_from_slice(&token.expire_timestamp.to_le_bytes());
    bytes.extend_from_slice(&token.xnonce);
    bytes.extend_from_slice(&token.private_data);
    assert_eq!(bytes.len(), request::BYTES);
    bytes
}

#[test]
fn in_token_mode_only_requests_sealed_with_our_key_pass() {
    let key = [3u8; 32];
    let mut gate = GateState::new(PROTOCOL, limits()).require_tokens_sealed_with(&key);
    let now = Instant::now();
    assert_eq!(
        gate.judge(addr(1), &sealed_request(&key), now),
        Verdict::Pass
    );
    assert_eq!(
        gate.judge(addr(2), &sealed_request(&[4u8; 32]), now),
        Verdict::Forged,
        "sealed with another key"
    );
    let mut noise = request();
    noise[request::SEALED].fill(0x5A);
    assert_eq!(gate.judge(addr(3), &noise, now), Verdict::Forged);
    let mut tampered = sealed_request(&key);
    tampered[request::EXPIRY.start] ^= 1;
    assert_eq!(
        gate.judge(addr(4), &tampered, now),
        Verdict::Forged,
        "the expiry is sealed too"
    );
    // In-band mode cannot tell: the same forged request passes to netcode.
    let mut in_band = GateState::new(PROTOCOL, limits());
    assert_eq!(in_band.judge(addr(3), &noise, now), Verdict::Pass);
}

#[test]
fn quiet_strangers_are_forgotten() {
    let mut gate = GateState::new(PROTOCOL, limits());
    gate.apply(Control::Connected(addr(1)));
    let now = Instant::now();
    gate.judge(addr(2), &request(), now);
    assert_eq!(gate.tracked(), 2);
    gate.judge(addr(1), &payload(), now + FORGET_AFTER * 2);
    assert_eq!(gate.tracked(), 1, "the player stays");
}
