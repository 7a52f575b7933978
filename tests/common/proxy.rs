//! A UDP proxy on loopback between one client and the server, recording every datagram both ways: what
//! an observer on the path sees.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Which way a datagram went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    ToServer,
    ToClient,
}

/// A UDP proxy on loopback between one client and the server, recording every datagram both ways.
pub struct Proxy {
    pub addr: SocketAddr,
    recorded: Arc<Mutex<Vec<(Way, Vec<u8>)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// A proxy to `server`, listening on a fresh loopback port.
    pub fn start(server: SocketAddr) -> Self {
        Self::start_on(UdpSocket::bind("127.0.0.1:0").unwrap(), server)
    }

    /// A proxy to `server`, listening on `front` (bound before the server starts, so that the server
    /// can be told the proxy's address).
    pub fn start_on(front: UdpSocket, server: SocketAddr) -> Self {
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        back.connect(server).unwrap();
        for socket in [&front, &back] {
            socket.set_nonblocking(true).unwrap();
        }
        let addr = front.local_addr().unwrap();
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, flag) = (recorded.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut client = None;
            let mut buffer = [0u8; 2048];
            // Bounded: the test ends it, or it ends by itself after a minute.
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while !flag.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                let mut idle = true;
                if let Ok((len, from)) = front.recv_from(&mut buffer) {
                    client = Some(from);
                    log.lock()
                        .unwrap()
                        .push((Way::ToServer, buffer[..len].to_vec()));
                    let _ = back.send(&buffer[..len]);
                    idle = false;
                }
                if let Ok(len) = back.recv(&mut buffer) {
                    log.lock()
                        .unwrap()
                        .push((Way::ToClient, buffer[..len].to_vec()));
                    if let Some(client) = client {
                        let _ = front.send_to(&buffer[..len], client);
                    }
                    idle = false;
                }
                if idle {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        Self {
            addr,
            recorded,
            stop,
            thread: Some(thread),
        }
    }

    /// Every datagram that crossed, both ways, in order.
    pub fn datagrams(&self) -> Vec<Vec<u8>> {
        self.recorded
            .lock()
            .unwrap()
            .iter()
            .map(|(_, bytes)| bytes.clone())
            .collect()
    }

    /// How many datagrams the server has sent to the client so far.
    pub fn sent_to_client(&self) -> usize {
        self.count(Way::ToClient)
    }

    /// How many datagrams the client has sent to the server so far.
    pub fn sent_to_server(&self) -> usize {
        self.count(Way::ToServer)
    }

    fn count(&self, way: Way) -> usize {
        self.recorded
            .lock()
            .unwrap()
            .iter()
            .filter(|(went, _)| *went == way)
            .count()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
