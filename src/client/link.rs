//! [`Link`]: a connection to an mmo server over either transport, for code that drives players of
//! both kinds the same way (the load generator's mixed runs, the tests).

use std::time::Duration;

use super::ws::{WsClient, WsError};
use super::{ClientError, NetClient};
use crate::protocol::{ClientMessage, ServerMessage, Snapshot};

/// A connection over UDP (netcode) or a WebSocket.
pub enum Link {
    Udp(Box<NetClient>),
    Ws(Box<WsClient>),
}

impl From<NetClient> for Link {
    fn from(net: NetClient) -> Self {
        Link::Udp(Box::new(net))
    }
}

impl From<WsClient> for Link {
    fn from(ws: WsClient) -> Self {
        Link::Ws(Box::new(ws))
    }
}

/// Why a message from the server could not be read, on either transport.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Udp(#[from] ClientError),
    #[error(transparent)]
    Ws(#[from] WsError),
}

impl Link {
    /// [`NetClient::pump`] / [`WsClient::pump`].
    pub fn pump(&mut self, inbox: &mut Vec<ServerMessage>) -> Result<(), LinkError> {
        match self {
            Link::Udp(net) => Ok(net.pump(inbox)?),
            Link::Ws(ws) => Ok(ws.pump(inbox)?),
        }
    }

    /// Receives, handing each reliable message's bytes to `on_message` undecoded.
    pub fn pump_raw(&mut self, on_message: impl FnMut(&[u8])) {
        match self {
            Link::Udp(net) => net.pump_raw(on_message),
            Link::Ws(ws) => ws.pump_raw(on_message),
        }
    }

    pub fn take_snapshots(&mut self) -> Vec<Snapshot> {
        match self {
            Link::Udp(net) => net.take_snapshots(),
            Link::Ws(ws) => ws.take_snapshots(),
        }
    }

    pub fn send(&mut self, message: &ClientMessage) {
        match self {
            Link::Udp(net) => net.send(message),
            Link::Ws(ws) => ws.send(message),
        }
    }

    pub fn send_raw(&mut self, bytes: Vec<u8>) {
        match self {
            Link::Udp(net) => net.send_raw(bytes),
            Link::Ws(ws) => ws.send_raw(bytes),
        }
    }

    /// UDP: sends a packet now; a WebSocket sends as it goes.
    pub fn flush(&mut self) {
        if let Link::Udp(net) = self {
            net.flush();
        }
    }

    pub fn is_connected(&self) -> bool {
        match self {
            Link::Udp(net) => net.is_connected(),
            Link::Ws(ws) => ws.is_connected(),
        }
    }

    pub fn is_disconnected(&self) -> bool {
        match self {
            Link::Udp(net) => net.is_disconnected(),
            Link::Ws(ws) => ws.is_disconnected(),
        }
    }

    /// How long since the server was last heard from.
    pub fn silent_for(&self) -> Duration {
        match self {
            Link::Udp(net) => net.silent_for(),
            Link::Ws(ws) => ws.silent_for(),
        }
    }

    pub fn disconnect_reason(&self) -> Option<String> {
        match self {
            Link::Udp(net) => net.disconnect_reason(),
            Link::Ws(ws) => ws.disconnect_reason(),
        }
    }

    pub fn disconnect(&mut self) {
        match self {
            Link::Udp(net) => net.disconnect(),
            Link::Ws(ws) => ws.disconnect(),
        }
    }

    /// The WebSocket client, if it is one.
    pub fn ws(&mut self) -> Option<&mut WsClient> {
        match self {
            Link::Ws(ws) => Some(ws),
            Link::Udp(_) => None,
        }
    }
}
