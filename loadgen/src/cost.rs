//! `mmo-loadgen datagram-cost`: what one datagram costs a core when nothing else runs: netcode's
//! encryption of a payload (renetcode's `generate_payload_packet`, ChaCha20-Poly1305, as the server's
//! transport does for every packet) and one `send_to` on a loopback socket, in a loop on one thread.
//! It is the physical limit the scenario rows are set against: a server that spends all its time on
//! its datagrams sends at most `1 / cost` of them a second on one core.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use renetcode::{
    ClientAuthentication, NetcodeClient, NetcodeServer, ServerAuthentication, ServerConfig,
    ServerResult,
};
use serde::Serialize;

const PROTOCOL_ID: u64 = 7;

/// What one measurement found.
#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    /// Payload bytes in each datagram (before netcode's header and tag).
    pub payload_bytes: usize,
    /// Bytes of each datagram on the wire (UDP payload).
    pub datagram_bytes: usize,
    pub datagrams: u64,
    pub seconds: f64,
    /// Nanoseconds for one encrypt + send.
    pub ns_each: f64,
    /// Datagrams one core sends a second at that cost.
    pub datagrams_per_core_s: f64,
    /// Bytes (UDP payload) one core sends a second at that cost.
    pub bytes_per_core_s: f64,
}

/// Connects a netcode client to a netcode server in memory (no socket), so that the server has a
/// connected client to encrypt for.
fn connected_server(server_addr: SocketAddr, client_addr: SocketAddr) -> io::Result<NetcodeServer> {
    let now = Duration::ZERO;
    let mut server = NetcodeServer::new(ServerConfig {
        current_time: now,
        max_clients: 1,
        protocol_id: PROTOCOL_ID,
        public_addresses: vec![server_addr],
        authentication: ServerAuthentication::Unsecure,
    });
    let mut client = NetcodeClient::new(
        now,
        ClientAuthentication::Unsecure {
            protocol_id: PROTOCOL_ID,
            client_id: 1,
            server_addr,
            user_data: None,
        },
    )
    .map_err(io::Error::other)?;
    for _ in 0..100 {
        if client.is_connected() {
            return Ok(server);
        }
        let step = Duration::from_millis(100);
        server.update(step);
        let Some((packet, _)) = client.update(step) else {
            continue;
        };
        let mut packet = packet.to_vec();
        let reply = match server.process_packet(client_addr, &mut packet) {
            ServerResult::PacketToSend { payload, .. } => Some(payload.to_vec()),
            ServerResult::ClientConnected { payload, .. } => Some(payload.to_vec()),
            _ => None,
        };
        if let Some(mut reply) = reply {
            client.process_packet(&mut reply);
        }
    }
    Err(io::Error::other(
        "the in-memory netcode client did not connect",
    ))
}

/// Encrypts and sends `payload_bytes`-byte payloads to a loopback socket for `seconds`.
pub fn measure(payload_bytes: usize, seconds: f64) -> io::Result<Cost> {
    let sink = UdpSocket::bind("127.0.0.1:0")?;
    sink.set_nonblocking(true)?;
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let mut server = connected_server(socket.local_addr()?, sink.local_addr()?)?;
    let payload = vec![0x5a; payload_bytes.min(renetcode::NETCODE_MAX_PAYLOAD_BYTES)];
    let mut drain = [0u8; 2048];
    let (mut datagrams, mut datagram_bytes) = (0u64, 0usize);
    let limit = Duration::from_secs_f64(seconds);
    let started = Instant::now();
    while started.elapsed() < limit {
        for _ in 0..256 {
            let (addr, packet) = server
                .generate_payload_packet(1, &payload)
                .map_err(io::Error::other)?;
            datagram_bytes = packet.len();
            socket.send_to(packet, addr)?;
            datagrams += 1;
        }
        // Keep the sink's buffer from filling (not timed apart: it is a small share).
        while sink.recv(&mut drain).is_ok() {}
    }
    let seconds = started.elapsed().as_secs_f64();
    let ns_each = seconds * 1e9 / datagrams as f64;
    Ok(Cost {
        payload_bytes: payload.len(),
        datagram_bytes,
        datagrams,
        seconds,
        ns_each,
        datagrams_per_core_s: 1e9 / ns_each,
        bytes_per_core_s: 1e9 / ns_each * datagram_bytes as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_is_encrypted_and_sent_and_costs_something() {
        let cost = measure(100, 0.05).expect("measure");
        assert!(cost.datagrams > 0);
        assert!(cost.datagram_bytes > 100, "netcode adds its header and tag");
        assert!(cost.ns_each > 0.0);
    }
}
