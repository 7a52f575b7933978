//! The chaos soak's one-minute version (`scripts/chaos.sh 60 1`, run in CI's PostgreSQL pass): 60
//! players on three real shards in token mode, over a real PostgreSQL and Redis the script starts on
//! loopback, chat, whisper and walk while a driver kills, stops and restarts shards, Redis and
//! PostgreSQL; then every acknowledged line must be in the database and have reached every player in
//! play on a live shard, every player that lost its shard must be back within 10 s, and no account in
//! play twice. The ten-minute runs are in BENCHMARKS.md. The players are `mmo-loadgen`'s (built beside
//! `mmo` by the workspace's tests).
#![cfg(feature = "postgres")]

use std::path::Path;
use std::process::Command;

#[test]
fn sixty_players_on_three_shards_lose_nothing_through_a_minute_of_chaos() {
    let mmo = env!("CARGO_BIN_EXE_mmo");
    let loadgen = Path::new(mmo).with_file_name("mmo-loadgen");
    assert!(
        loadgen.exists(),
        "{} is missing: build it first (`cargo build -p mmo-loadgen`)",
        loadgen.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new("bash")
        .args(["scripts/chaos.sh", "60", "1"])
        .env("MMO_BIN", mmo)
        .env("LOADGEN_BIN", &loadgen)
        .env("CHAOS_DIR", dir.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let soak_err = std::fs::read_to_string(dir.path().join("soak.err")).unwrap_or_default();
    assert!(
        output.status.success(),
        "{stdout}\n{stderr}\nplayers' errors:\n{soak_err}"
    );
    assert!(stdout.contains("soak: passed"), "{stdout}");
    // The first outage froze a shard: its players noticed by its silence alone, and were back.
    assert!(stdout.contains("lost to stop"), "{stdout}");
    assert!(
        stdout.contains("acknowledged lines missing from it: 0"),
        "{stdout}"
    );
}
