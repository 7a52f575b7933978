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

/// A TCP link on loopback between shards and a Redis that a test can cut: while cut, the connections
/// through it are closed and new ones closed as soon as they are made, as when the network to Redis
/// fails; once restored, connections pass again.
pub struct RedisLink {
    pub port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl RedisLink {
    /// A link to the Redis on `redis_port`.
    pub fn start(redis_port: u16) -> Self {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").expect("a link port");
        let port = listener.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (cut_flag, open_list) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for front in listener.incoming() {
                let Ok(front) = front else { continue };
                if cut_flag.load(Ordering::SeqCst) {
                    drop(front);
                    continue;
                }
                let Ok(back) = TcpStream::connect(("127.0.0.1", redis_port)) else {
                    continue;
                };
                let mut list = open_list.lock().unwrap();
                for (from, to) in [(&front, &back), (&back, &front)] {
                    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
                        continue;
                    };
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
                list.extend([front, back]);
            }
        });
        Self { port, cut, open }
    }

    /// The URL shards are given to reach Redis through the link.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Closes every connection through the link and refuses new ones until [`RedisLink::restore`].
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}
