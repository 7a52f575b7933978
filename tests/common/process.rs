//! The server binary as an operator runs it: a child process on a free port with its console on a
//! pipe. Answers arrive on stdout, logs on stderr; both are read on threads and kept apart.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;

use mmo::config::DbLocation;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use super::PATIENCE;

/// Removes ANSI colour codes from a log line.
pub fn plain(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            out.push(c);
        }
    }
    out
}

/// A running server binary with its console.
pub struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    pub addr: SocketAddr,
    answers: Receiver<String>,
    pub logs: Receiver<String>,
    /// The log lines up to "listening".
    pub started: Vec<String>,
}

impl ServerProcess {
    /// Starts `mmo --bind 127.0.0.1:0 --db DB` with `flags`; returns once it listens.
    pub fn start(db: &DbLocation, flags: &[&str]) -> Self {
        Self::start_on("127.0.0.1:0", db, flags)
    }

    /// Starts `mmo --bind BIND --db DB` with `flags`; returns once it listens.
    pub fn start_on(bind: &str, db: &DbLocation, flags: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mmo"))
            .args(["--bind", bind])
            .args(flags)
            .arg("--db")
            .arg(super::db_arg(db))
            .env("NO_COLOR", "1")
            // As in-process test servers: no login refused for ticks overrun on a crowded machine.
            .env("MMO_NO_SHEDDING", "true")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the server binary starts");
        let lines = |stream: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = mpsc::channel::<String>();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(plain(&line));
                }
            });
            rx
        };
        let answers = lines(Box::new(child.stdout.take().unwrap()));
        let logs = lines(Box::new(child.stderr.take().unwrap()));
        let mut started = Vec::new();
        let addr = loop {
            let line = logs
                .recv_timeout(PATIENCE)
                .expect("the server logs that it listens");
            started.push(line.clone());
            if line.contains("listening")
                && let Some(addr) = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("addr="))
            {
                break addr.parse().unwrap();
            }
        };
        Self {
            stdin: child.stdin.take(),
            child,
            addr,
            answers,
            logs,
            started,
        }
    }

    /// The value of `field=` in the first log line that has it (waiting for it up to [`PATIENCE`]).
    pub fn logged(&mut self, field: &str) -> Option<String> {
        let prefix = format!("{field}=");
        let value = |line: &String| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(prefix.as_str()))
                .map(str::to_owned)
        };
        if let Some(found) = self.started.iter().find_map(value) {
            return Some(found);
        }
        while let Ok(line) = self.logs.recv_timeout(PATIENCE) {
            self.started.push(line.clone());
            if let Some(found) = value(&line) {
                return Some(found);
            }
        }
        None
    }

    /// Types raw bytes at the console.
    pub fn type_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("the console is open");
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    /// Types a command and returns the first line of its answer.
    pub fn run(&mut self, command: &str) -> String {
        self.type_bytes(format!("{command}\n").as_bytes());
        self.answer()
    }

    /// Types a command and returns its whole answer (the first line and the indented ones after it).
    pub fn run_long(&mut self, command: &str) -> Vec<String> {
        let mut lines = vec![self.run(command)];
        while let Ok(line) = self.answers.recv_timeout(Duration::from_millis(300)) {
            lines.push(line);
        }
        lines
    }

    /// The next line on stdout.
    pub fn answer(&mut self) -> String {
        self.answers
            .recv_timeout(PATIENCE)
            .expect("the console answers")
    }

    /// Closes the console (end of input): the server must keep running.
    pub fn close_console(&mut self) {
        self.stdin = None;
    }

    /// Whether a log line containing `text` arrives within [`PATIENCE`].
    pub fn wait_for_log(&self, text: &str) -> bool {
        let deadline = Instant::now() + PATIENCE;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.logs.recv_timeout(left) {
                Ok(line) if line.contains(text) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the process to exit by itself.
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits: the graceful shutdown.
    pub fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.wait()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
