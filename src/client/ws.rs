//! A WebSocket connection to an mmo server (feature `https-client`), as a browser's web client makes
//! one: over TLS to the login server's `/ws`, the connect token `POST /api/login` answered as the first
//! frame, then the protocol's messages in binary frames ([`crate::protocol::WS_PATH`] has the wire).
//! Blocking for the handshake, then pumped without blocking by its owner's loop like
//! [`super::NetClient`]: for tests, the load generator and tools.

use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

use crate::protocol::{
    self, CHANNEL, ClientMessage, SNAPSHOT_CHANNEL, ServerMessage, Snapshot, WS_KEEP_ALIVE,
};

/// How long connecting, TLS and the WebSocket handshake may take together.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a WebSocket connection failed.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    #[error("bad login URL {0}")]
    Url(String),
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: io::Error },
    #[error("bad CA certificate: {0}")]
    CaCert(String),
    #[error("WebSocket handshake with {url} failed: {detail}")]
    Handshake { url: String, detail: String },
    #[error("the connect token is not base64")]
    Token,
    #[error("the server sent a message that does not decode: {0}")]
    Decode(#[from] protocol::DecodeError),
}

type Stream = StreamOwned<ClientConnection, TcpStream>;

/// One WebSocket connection.
pub struct WsClient {
    socket: WebSocket<Stream>,
    snapshots: std::collections::VecDeque<Snapshot>,
    heard: Instant,
    closed: Option<String>,
}

impl std::fmt::Debug for WsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsClient")
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

/// What to open a connection with, beyond the URL and token.
#[derive(Debug, Clone, Default)]
pub struct WsOptions<'a> {
    /// The PEM certificate to trust (a self-signed server's), else the public roots.
    pub ca_pem: Option<&'a [u8]>,
    /// The subprotocol to ask for ([`protocol::WS_SUBPROTOCOL`] unless set; tests ask for others).
    pub subprotocol: Option<&'a str>,
    /// An `Origin` header, as a browser sends (tests).
    pub origin: Option<&'a str>,
}

impl WsClient {
    /// Connects to `login_url`'s WebSocket and presents `connect_token` (base64, as the login answer
    /// holds it).
    pub fn connect(
        login_url: &str,
        connect_token: &str,
        options: WsOptions<'_>,
    ) -> Result<Self, WsError> {
        let token = base64::engine::general_purpose::STANDARD
            .decode(connect_token)
            .map_err(|_| WsError::Token)?;
        Self::connect_bytes(login_url, token, options)
    }

    /// [`WsClient::connect`] with a connect token already decoded.
    pub fn connect_with_token(
        login_url: &str,
        token: &renet_netcode::ConnectToken,
        options: WsOptions<'_>,
    ) -> Result<Self, WsError> {
        let mut bytes = Vec::new();
        token.write(&mut bytes).map_err(|_| WsError::Token)?;
        Self::connect_bytes(login_url, bytes, options)
    }

    fn connect_bytes(
        login_url: &str,
        token: Vec<u8>,
        options: WsOptions<'_>,
    ) -> Result<Self, WsError> {
        let mut client = Self::open(login_url, options)?;
        client.send_raw(token);
        Ok(client)
    }

    /// Opens the socket without presenting a token (tests of what the server refuses).
    pub fn open(login_url: &str, options: WsOptions<'_>) -> Result<Self, WsError> {
        let host_port = login_url
            .strip_prefix("https://")
            .map(|rest| rest.trim_end_matches('/'))
            .ok_or_else(|| WsError::Url(login_url.into()))?;
        let connect_error = |source| WsError::Connect {
            url: login_url.into(),
            source,
        };
        let addr = host_port
            .to_socket_addrs()
            .map_err(connect_error)?
            .next()
            .ok_or_else(|| WsError::Url(login_url.into()))?;
        let tcp = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(connect_error)?;
        tcp.set_read_timeout(Some(CONNECT_TIMEOUT))
            .map_err(connect_error)?;
        tcp.set_write_timeout(Some(CONNECT_TIMEOUT))
            .map_err(connect_error)?;
        let _ = tcp.set_nodelay(true);
        let host = host_port
            .rsplit_once(':')
            .map_or(host_port, |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name =
            ServerName::try_from(host.to_owned()).map_err(|_| WsError::Url(login_url.into()))?;
        let tls = ClientConnection::new(tls_config(options.ca_pem)?, name).map_err(|error| {
            WsError::Handshake {
                url: login_url.into(),
                detail: error.to_string(),
            }
        })?;
        let handshake_error = |detail: String| WsError::Handshake {
            url: login_url.into(),
            detail,
        };
        let mut request = format!("wss://{host_port}{}", protocol::WS_PATH)
            .into_client_request()
            .map_err(|e| handshake_error(e.to_string()))?;
        let headers = request.headers_mut();
        let subprotocol = options.subprotocol.unwrap_or(protocol::WS_SUBPROTOCOL);
        headers.insert(
            "Sec-WebSocket-Protocol",
            subprotocol
                .parse()
                .map_err(|_| handshake_error("bad subprotocol".into()))?,
        );
        if let Some(origin) = options.origin {
            headers.insert(
                "Origin",
                origin
                    .parse()
                    .map_err(|_| handshake_error("bad origin".into()))?,
            );
        }
        let config = WebSocketConfig::default()
            .max_message_size(Some(protocol::MAX_SERVER_MESSAGE_BYTES + 1))
            .max_frame_size(Some(protocol::MAX_SERVER_MESSAGE_BYTES + 1));
        let (socket, _) = tungstenite::client::client_with_config(
            request,
            StreamOwned::new(tls, tcp),
            Some(config),
        )
        .map_err(|error| match error {
            tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                let body = response
                    .body()
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default()
                    .into_owned();
                handshake_error(format!("{status} {body}"))
            }
            other => handshake_error(other.to_string()),
        })?;
        let tcp = socket.get_ref().get_ref();
        tcp.set_nonblocking(true).map_err(connect_error)?;
        Ok(Self {
            socket,
            snapshots: Default::default(),
            heard: Instant::now(),
            closed: None,
        })
    }

    /// Reads whatever arrived, appending the decoded messages to `inbox` (batches unbatched), keeping
    /// snapshots for [`WsClient::take_snapshots`]; sends what is queued.
    pub fn pump(&mut self, inbox: &mut Vec<ServerMessage>) -> Result<(), WsError> {
        Ok(super::decode_into(inbox, |on_message| {
            self.pump_raw(on_message)
        })?)
    }

    /// [`WsClient::pump`], handing each message's bytes to `on_message` undecoded.
    pub fn pump_raw(&mut self, mut on_message: impl FnMut(&[u8])) {
        if self.closed.is_some() {
            return;
        }
        loop {
            match self.socket.read() {
                Ok(Message::Binary(bytes)) => {
                    self.heard = Instant::now();
                    match bytes.split_first() {
                        Some((&CHANNEL, message)) => on_message(message),
                        Some((&SNAPSHOT_CHANNEL, snapshot)) => {
                            if let Ok(snapshot) = Snapshot::decode(snapshot) {
                                if self.snapshots.len() == super::MAX_KEPT_SNAPSHOTS {
                                    self.snapshots.pop_front();
                                }
                                self.snapshots.push_back(snapshot);
                            }
                        }
                        Some((&WS_KEEP_ALIVE, [])) => {}
                        _ => {
                            self.closed = Some("the server sent an unknown frame".into());
                            return;
                        }
                    }
                }
                Ok(Message::Close(frame)) => {
                    self.closed = Some(frame.map_or_else(
                        || "closed".to_owned(),
                        |frame| format!("{} ({})", frame.reason, u16::from(frame.code)),
                    ));
                    let _ = self.socket.flush();
                    return;
                }
                Ok(_) => self.heard = Instant::now(),
                Err(tungstenite::Error::Io(error)) if error.kind() == io::ErrorKind::WouldBlock => {
                    break;
                }
                Err(error) => {
                    self.closed = Some(error.to_string());
                    return;
                }
            }
        }
        self.flush();
    }

    /// Sends what is queued (pongs included) as far as the socket takes it.
    fn flush(&mut self) {
        match self.socket.flush() {
            Ok(()) => {}
            Err(tungstenite::Error::Io(error)) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => self.closed = Some(error.to_string()),
        }
    }

    /// The world snapshots received since the last call, oldest first.
    pub fn take_snapshots(&mut self) -> Vec<Snapshot> {
        self.snapshots.drain(..).collect()
    }

    /// Sends one message.
    pub fn send(&mut self, message: &ClientMessage) {
        self.send_raw(message.encode());
    }

    /// Sends arbitrary bytes as one binary frame (for tests of hostile input).
    pub fn send_raw(&mut self, bytes: Vec<u8>) {
        self.send_frame(Message::Binary(bytes.into()));
    }

    /// Sends any frame (a text frame, say, in a test).
    pub fn send_frame(&mut self, message: Message) {
        if self.closed.is_some() {
            return;
        }
        match self.socket.write(message) {
            Ok(()) => {}
            Err(tungstenite::Error::Io(error)) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => self.closed = Some(error.to_string()),
        }
        self.flush();
    }

    pub fn is_connected(&self) -> bool {
        self.closed.is_none()
    }

    pub fn is_disconnected(&self) -> bool {
        self.closed.is_some()
    }

    /// How long since the server's last frame (it sends a keep-alive after a second without others).
    pub fn silent_for(&self) -> Duration {
        self.heard.elapsed()
    }

    /// Why the connection ended (the server's close reason and code), if it has.
    pub fn disconnect_reason(&self) -> Option<String> {
        self.closed.clone()
    }

    /// Closes the connection.
    pub fn disconnect(&mut self) {
        if self.closed.is_none() {
            let _ = self.socket.close(None);
            self.flush();
            self.closed = Some("closed by the client".into());
        }
    }
}

/// rustls with ring, trusting `ca_pem`'s certificates or the public roots.
fn tls_config(ca_pem: Option<&[u8]>) -> Result<Arc<ClientConfig>, WsError> {
    let mut roots = RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in super::api::pem_certificates(pem).map_err(WsError::CaCert)? {
                roots
                    .add(CertificateDer::from(cert.der().to_vec()))
                    .map_err(|e| WsError::CaCert(e.to_string()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| WsError::CaCert(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}
