//! A throwaway Redis on a free loopback port (Debian's `redis-server`, installed by
//! `scripts/services.sh` when missing), killed when dropped. No persistence: each test starts empty.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`.
pub struct TestRedis {
    child: Option<Child>,
    pub port: u16,
    password: Option<String>,
}

impl TestRedis {
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// Starts one that refuses clients without `password` (`requirepass`).
    pub fn start_with_password(password: &str) -> Self {
        Self::start_on_with(free_port(), Some(password))
    }

    /// Starts on `port` (a restart keeps the port, so shards find it again).
    pub fn start_on(port: u16) -> Self {
        Self::start_on_with(port, None)
    }

    fn start_on_with(port: u16, password: Option<&str>) -> Self {
        ensure_installed();
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"]);
        if let Some(password) = password {
            command.args(["--requirepass", password]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child: Some(child),
            port,
            password: password.map(str::to_owned),
        }
    }

    /// The URL shards are given, with the password if it has one.
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// Kills it (SIGKILL): everything it held is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Runs `scripts/services.sh install redis` once if `redis-server` is not on the PATH.
fn ensure_installed() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if Command::new("redis-server").arg("--version").output().is_ok() {
            return;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/services.sh");
        let status = Command::new("bash")
            .arg(script)
            .args(["install", "redis"])
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "redis-server is missing and scripts/services.sh could not install it (apt-get install redis-server)"
        );
    });
}
