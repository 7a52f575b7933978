//! A packet flood for abuse measurements: one UDP socket sending junk datagrams (random bytes, 1,200
//! each, never valid netcode) at a fixed rate to a loopback server while a scenario runs.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running flood; stops when dropped.
pub struct Junk {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Junk {
    /// Starts sending `per_second` junk datagrams to `target` (which must be a loopback address).
    pub fn start(target: SocketAddr, per_second: u32) -> std::io::Result<Self> {
        assert!(target.ip().is_loopback(), "junk goes to loopback only");
        let socket = UdpSocket::bind(("127.0.0.1", 0))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut payload = [0u8; 1200];
            let mut state = 0x9E37_79B9_7F4A_7C15u64;
            let started = Instant::now();
            let mut sent = 0u64;
            while !flag.load(Ordering::Relaxed) {
                let due = (started.elapsed().as_secs_f64() * f64::from(per_second)) as u64;
                while sent < due {
                    for byte in payload.iter_mut() {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        *byte = state as u8;
                    }
                    let _ = socket.send_to(&payload, target);
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            sent
        });
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the flood; returns how many datagrams it sent.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or(0)
    }
}

impl Drop for Junk {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
