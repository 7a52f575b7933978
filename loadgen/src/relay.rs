//! The floor: a bare renet relay with the same connection config, protocol id and tick as mmo, that only
//! rebroadcasts each message to every other client. No ECS, no database, no decoding: what is left of
//! the server's cost when everything mmo adds is taken away. For token mode it runs in netcode's secure
//! mode ([`Relay::bind_secure`]), its players holding connect tokens made with its key.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime};

use mmo::protocol::{self, CHANNEL};
use renet::RenetServer;
use renet_netcode::{NetcodeServerTransport, ServerAuthentication, ServerConfig};

use crate::token::Key;

/// A bound relay, not yet running.
pub struct Relay {
    pub addr: SocketAddr,
    server: RenetServer,
    transport: NetcodeServerTransport,
}

impl Relay {
    /// A relay in netcode's unsecure mode, like mmo in in-band mode.
    pub fn bind(bind: SocketAddr) -> std::io::Result<Self> {
        Self::bind_as(bind, ServerAuthentication::Unsecure)
    }

    /// A relay in netcode's secure mode, like mmo in token mode: it accepts connect tokens made with
    /// `private_key` (see [`crate::token::floor_token`]).
    pub fn bind_secure(bind: SocketAddr, private_key: Key) -> std::io::Result<Self> {
        Self::bind_as(bind, ServerAuthentication::Secure { private_key })
    }

    fn bind_as(bind: SocketAddr, authentication: ServerAuthentication) -> std::io::Result<Self> {
        let socket = UdpSocket::bind(bind)?;
        let addr = socket.local_addr()?;
        // The same receive buffer as mmo asks for, so bursts are compared like for like.
        mmo::udp::enlarge_receive_buffer(&socket, 4 * 1024 * 1024);
        let config = ServerConfig {
            current_time: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
            max_clients: 1024,
            protocol_id: protocol::PROTOCOL_ID,
            public_addresses: vec![addr],
            authentication,
        };
        let transport = NetcodeServerTransport::new(config, socket)?;
        Ok(Self {
            addr,
            server: RenetServer::new(protocol::connection_config()),
            transport,
        })
    }

    /// Relays at `tick_hz` until the process ends.
    pub fn run(mut self, tick_hz: u16) -> ! {
        let tick = Duration::from_secs_f64(1.0 / f64::from(tick_hz.max(1)));
        let mut last = Instant::now();
        loop {
            let start = Instant::now();
            let delta = start - last;
            last = start;
            self.server.update(delta);
            if let Err(error) = self.transport.update(delta, &mut self.server) {
                eprintln!("relay transport error: {error}");
            }
            for client_id in self.server.clients_id() {
                while let Some(bytes) = self.server.receive_message(client_id, CHANNEL) {
                    self.server
                        .broadcast_message_except(client_id, CHANNEL, bytes);
                }
            }
            self.transport.send_packets(&mut self.server);
            if let Some(rest) = tick.checked_sub(start.elapsed()) {
                std::thread::sleep(rest);
            }
        }
    }
}
