//! The transport's sockets: one UDP port shared by a socket per lane (`SO_REUSEPORT`). The kernel hands
//! each client's datagrams always to the same socket (it chooses by the sender's address), so each
//! lane's netcode thread sees whole connections, and the lanes decrypt, encrypt and keep clients alive
//! on every core. What a client sends to the port reaches one lane; what any lane sends leaves from the
//! port.
//!
//! Only sockets of the same user may join a port with `SO_REUSEPORT` (Linux checks), and a single lane
//! does not set it at all.

use std::io;
use std::net::{SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// `count` sockets bound to `addr` (its port 0: a free port, the same for all).
pub fn bind(addr: SocketAddr, count: usize) -> io::Result<Vec<UdpSocket>> {
    let shared = count > 1;
    let first = socket(addr, shared)?;
    let bound = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..count {
        sockets.push(socket(bound, shared)?);
    }
    Ok(sockets)
}

fn socket(addr: SocketAddr, shared: bool) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    #[cfg(unix)]
    if shared {
        socket.set_reuse_port(true)?;
    }
    #[cfg(not(unix))]
    if shared {
        return Err(io::Error::other(
            "several transport lanes need SO_REUSEPORT: run one lane (--transport-threads 1)",
        ));
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_share_one_port_and_each_client_reaches_one_of_them() {
        let sockets = bind("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let port = sockets[0].local_addr().unwrap().port();
        assert!(
            sockets
                .iter()
                .all(|s| s.local_addr().unwrap().port() == port)
        );
        for socket in &sockets {
            socket.set_nonblocking(true).unwrap();
        }
        // Each of 30 clients sends twice: both datagrams land on the same socket.
        let mut seen: std::collections::HashMap<SocketAddr, usize> = Default::default();
        let clients: Vec<UdpSocket> = (0..30)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        for round in 0..2 {
            for client in &clients {
                client.send_to(&[round], ("127.0.0.1", port)).unwrap();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            for (lane, socket) in sockets.iter().enumerate() {
                let mut buffer = [0u8; 8];
                while let Ok((_, from)) = socket.recv_from(&mut buffer) {
                    assert_eq!(
                        *seen.entry(from).or_insert(lane),
                        lane,
                        "{from} moved lanes"
                    );
                }
            }
        }
        assert_eq!(seen.len(), 30);
        let used: std::collections::HashSet<usize> = seen.values().copied().collect();
        assert!(used.len() > 1, "30 clients all on one lane: {seen:?}");
    }
}
