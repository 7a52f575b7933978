//! A throwaway PostgreSQL cluster on a free loopback port (Debian's `postgresql`, installed by
//! `scripts/services.sh` when missing): `initdb` in a temp dir, `postgres` run as the `postgres` user
//! when the tests run as root (it refuses root), password authentication, no fsync. [`shared`] is one
//! cluster per test process, each test taking a database of its own ([`fresh_database`]);
//! [`TestPostgres::start`] is a cluster a test may kill and restart.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use diesel::{Connection, RunQueryDsl};

/// The password of the test clusters' `mmo` user: tests check it never reaches a log.
pub const PASSWORD: &str = "pg-test-s3cret";

/// A running `postgres`, its data directory, and how to reach it.
pub struct TestPostgres {
    child: Option<Child>,
    pub port: u16,
    data: PathBuf,
    dir: tempfile::TempDir,
}

impl TestPostgres {
    /// A new cluster, started, with a superuser `mmo` (password [`PASSWORD`]).
    pub fn start() -> Self {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, PASSWORD).expect("password file");
        give_to_postgres(dir.path());
        give_to_postgres(&pwfile);
        let output = as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "mmo", "--auth=scram-sha-256", "--no-sync"])
            .args(["-E", "UTF8", "--locale=C"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .expect("initdb runs");
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut postgres = Self {
            child: None,
            port: free_port(),
            data,
            dir,
        };
        postgres.restart();
        postgres
    }

    /// Starts it again (on the same port and data) after [`TestPostgres::kill`].
    pub fn restart(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("postgres.log")).expect("log file");
        let child = as_postgres(&bin_dir().join("postgres"))
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string()])
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
            ])
            // No fsync (the machine does not crash under a test), but every commit is written before
            // it is acknowledged: the tests that kill it count on what was acknowledged surviving.
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("postgres starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        // Listening comes before accepting (recovery, start-up): wait for a real connection.
        while TcpStream::connect(("127.0.0.1", self.port)).is_err()
            || diesel::PgConnection::establish(&self.url("postgres")).is_err()
        {
            assert!(
                Instant::now() < deadline,
                "postgres did not start on {}: {}",
                self.port,
                std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The URL of database `name` on it.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://mmo:{PASSWORD}@127.0.0.1:{}/{name}", self.port)
    }

    /// A new, empty database on it: its URL.
    pub fn create_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let mut admin =
            diesel::PgConnection::establish(&self.url("postgres")).expect("connect to postgres");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .expect("create a test database");
        self.url(&name)
    }

    /// Kills it (SIGKILL; its connections die with it): the database is gone until
    /// [`TestPostgres::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Backends notice the postmaster's death and exit; wait until the port is free again.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One cluster for the whole test process, stopped when the process ends (a watcher process stops
/// it: statics are never dropped).
pub fn shared() -> &'static TestPostgres {
    static SHARED: OnceLock<TestPostgres> = OnceLock::new();
    SHARED.get_or_init(|| {
        let postgres = TestPostgres::start();
        let pid = postgres.child.as_ref().map(Child::id).expect("running");
        // In the background of a shell that exits at once: the watcher outlives this process.
        let watcher = format!(
            "(while kill -0 {} 2>/dev/null; do sleep 1; done; kill -QUIT {pid}; sleep 2; rm -rf '{}') \
             >/dev/null 2>&1 </dev/null &",
            std::process::id(),
            postgres.dir.path().display()
        );
        let status = Command::new("sh")
            .args(["-c", &watcher])
            .status()
            .expect("the cluster's watcher starts");
        assert!(status.success());
        postgres
    })
}

/// A new database on the [`shared`] cluster: its URL.
pub fn fresh_database() -> String {
    shared().create_database()
}

/// Where PostgreSQL's programs are (`pg_config --bindir`, else Debian's versioned directory),
/// installing them first if they are missing.
fn bin_dir() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        find_bin_dir().unwrap_or_else(|| {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/services.sh");
            let status = Command::new("bash")
                .arg(script)
                .args(["install", "postgres"])
                .status()
                .expect("bash runs");
            assert!(
                status.success(),
                "PostgreSQL is not installed and scripts/services.sh could not install it"
            );
            find_bin_dir().expect("initdb after installing postgresql")
        })
    })
    .clone()
}

fn find_bin_dir() -> Option<PathBuf> {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"));
    from_pg_config
        .into_iter()
        .chain(debian)
        .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
}

fn is_root() -> bool {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() == 0 }
}

/// `program`, run as the `postgres` user when we are root (PostgreSQL refuses to run as root).
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=postgres", "--regid=postgres", "--clear-groups"])
            .arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Makes `path` the `postgres` user's (when we are root).
fn give_to_postgres(path: &Path) {
    if !is_root() {
        return;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("id runs");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a postgres user (Debian's postgresql package makes it)")
    };
    std::os::unix::fs::chown(path, Some(id("-u")), Some(id("-g"))).expect("chown to postgres");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
