//! Running it in production, as an operator does: a configuration file (and its precedence under flags
//! and environment variables), health and readiness checks, JSON logs, logs that stay small under abuse,
//! IP bans and the allow-list.

mod common;

use std::process::Command;

use common::process::ServerProcess;
use common::*;

const MMO: &str = env!("CARGO_BIN_EXE_mmo");

/// `mmo ARGS` with `env`, every other MMO_ variable of the test's environment removed: (exit code,
/// stdout, stderr).
fn mmo(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(MMO);
    for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("MMO_")) {
        command.env_remove(key);
    }
    let out = command
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_flag_beats_its_variable_which_beats_the_file_which_beats_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mmo.toml");
    std::fs::write(
        &file,
        "tick-hz = 30\nstats-interval = 7\nmax-clients = 50\nshard = \"from-file\"\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let (code, text, errors) = mmo(
        &["--config", file, "--print-config", "--max-clients", "40"],
        &[("MMO_STATS_INTERVAL", "9"), ("MMO_MAX_CLIENTS", "45")],
    );
    assert_eq!(code, 0, "{errors}");
    for line in [
        "tick-hz = 30",
        "stats-interval = 9",
        "max-clients = 40",
        "shard = \"from-file\"",
        "snapshot-hz = 20",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
    }

    // The variable names the file too.
    let (code, text, _) = mmo(&["--print-config"], &[("MMO_CONFIG", file)]);
    assert_eq!(code, 0);
    assert!(text.lines().any(|l| l == "tick-hz = 30"), "{text}");
}

#[test]
fn a_bad_configuration_file_stops_the_start_naming_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |name: &str, text: &str| {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        let (code, _, errors) = mmo(&["--config", file.to_str().unwrap()], &[]);
        assert_eq!(code, 2, "{errors}");
        errors
    };
    let unknown = refused("unknown.toml", "tick-hz = 30\nmax_clients = 5\n");
    assert!(
        unknown.contains("unknown.toml line 2: unknown setting `max_clients`"),
        "{unknown}"
    );
    let bad = refused("bad.toml", "\n\nmax-clients = 5000\n");
    assert!(
        bad.contains("bad.toml line 3: `max-clients`: invalid value '5000'"),
        "{bad}"
    );
    let missing = mmo(&["--config", "/nonexistent/mmo.toml"], &[]);
    assert_eq!(missing.0, 2);
    assert!(
        missing
            .2
            .contains("cannot read the configuration file /nonexistent/mmo.toml")
    );
}

#[test]
fn the_example_configuration_starts_a_server_players_can_use() {
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/mmo.example.toml");
    let server = ServerProcess::start(&test_db(dir.path()), &["--config", example]);
    let mut alice = TestClient::connect(server.addr);
    alice.register("Alice", PASSWORD).expect("register");
    alice.login("Alice", PASSWORD).expect("login");
    alice.chat("configured");
    assert_eq!(alice.next_chat().unwrap().text, "configured");
}
