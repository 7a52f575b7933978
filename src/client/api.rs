//! Token mode's HTTPS client (feature `https-client`): register, log in, resume a session, log out and
//! change the password against the server's `/api` endpoints, and turn the connect token it returns
//! into a secure netcode transport. Blocking (ureq): call it from a background thread or task, never
//! from a frame.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use renet_netcode::{ClientAuthentication, ConnectToken, NetcodeClientTransport};
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

use super::{ClientError, bind_any};
use crate::api::{self, Credentials, ErrorBody, Health, LoggedIn, PasswordChange, Registered};

/// How long one request may take, connection and TLS handshake included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest answer read (a login answer is under 4 KiB).
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// What went wrong with a request; `Display` is meant for the player.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The server answered with an error; `message` is its `{"error"}` text.
    #[error("{message}")]
    Refused {
        status: u16,
        message: String,
        /// Seconds to wait, when the server said so (429).
        retry_after: Option<u64>,
    },
    #[error("Cannot reach the login server at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("The login server at {url} is not trusted: {detail}")]
    Untrusted { url: String, detail: String },
    #[error("The login server sent an answer this client does not understand: {0}")]
    BadAnswer(String),
    #[error("Cannot read the CA certificate {path}: {detail}")]
    CaCert { path: String, detail: String },
}

impl ApiError {
    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The certificates in the PEM text `pem` (at least one), or why there are none.
pub(super) fn pem_certificates(pem: &[u8]) -> Result<Vec<Certificate<'static>>, String> {
    let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => Some(Ok(cert)),
            Ok(_) => None,
            Err(error) => Some(Err(error.to_string())),
        })
        .collect::<Result<_, _>>()?;
    if certs.is_empty() {
        return Err("no certificate in it".into());
    }
    Ok(certs)
}

/// A login server, reached over HTTPS.
#[derive(Clone)]
pub struct ApiClient {
    agent: ureq::Agent,
    base: String,
    /// Longest a request may take, when not [`REQUEST_TIMEOUT`] ([`ApiClient::with_timeout`]).
    timeout: Option<Duration>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("base", &self.base)
            .finish()
    }
}

impl ApiClient {
    /// A client for the server at `login_url` (`https://HOST:PORT`), trusting the certificates in the PEM
    /// text `ca_pem` (a self-signed server's certificate) or, without it, the usual public roots.
    pub fn new(login_url: &str, ca_pem: Option<&[u8]>) -> Result<Self, ApiError> {
        let roots = match ca_pem {
            Some(pem) => {
                let certs = pem_certificates(pem).map_err(|detail| ApiError::CaCert {
                    path: "(PEM)".into(),
                    detail,
                })?;
                RootCerts::new_with_certs(&certs)
            }
            None => RootCerts::WebPki,
        };
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .root_certs(roots)
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .https_only(true)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .max_redirects(0)
            .build()
            .into();
        Ok(Self {
            agent,
            base: login_url.trim_end_matches('/').to_owned(),
            timeout: None,
        })
    }

    /// The login server's URL (`https://HOST:PORT`, as given).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The same client, giving up on a request after `timeout` instead of [`REQUEST_TIMEOUT`]: for
    /// a client with several login servers to try, one that froze (it accepts the connection and
    /// then says nothing) should not hold it for long.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// [`ApiClient::new`] with the CA certificate read from a PEM file.
    pub fn with_ca_file(
        login_url: &str,
        ca_cert: Option<&std::path::Path>,
    ) -> Result<Self, ApiError> {
        let pem = ca_cert
            .map(|path| {
                std::fs::read(path).map_err(|error| ApiError::CaCert {
                    path: path.display().to_string(),
                    detail: error.to_string(),
                })
            })
            .transpose()?;
        Self::new(login_url, pem.as_deref())
    }

    /// The login server's address as given.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Creates an account; answers its display name.
    pub fn register(&self, username: &str, password: &str) -> Result<String, ApiError> {
        let body = Credentials {
            username: username.into(),
            password: password.into(),
        };
        self.post::<Registered>(api::REGISTER, &body)
            .map(|r| r.name)
    }

    /// Logs in with a password.
    pub fn login(&self, username: &str, password: &str) -> Result<LoggedIn, ApiError> {
        let body = Credentials {
            username: username.into(),
            password: password.into(),
        };
        self.post(api::LOGIN, &body)
    }

    /// Trades a session token for a fresh connect token.
    pub fn resume(&self, session_token: &str) -> Result<LoggedIn, ApiError> {
        self.resume_avoiding(session_token, None)
    }

    /// [`ApiClient::resume`] after losing the shard at `unreachable`: the token sends the player to
    /// another shard if one with room is known.
    pub fn resume_avoiding(
        &self,
        session_token: &str,
        unreachable: Option<SocketAddr>,
    ) -> Result<LoggedIn, ApiError> {
        let body = api::SessionToken {
            session_token: session_token.into(),
            unreachable,
        };
        self.post(api::SESSION, &body)
    }

    /// Revokes a session token.
    pub fn logout(&self, session_token: &str) -> Result<(), ApiError> {
        let body = api::SessionToken {
            session_token: session_token.into(),
            unreachable: None,
        };
        self.request(api::LOGOUT, Some(&body)).map(|_| ())
    }

    /// Changes the password; every session of the account is revoked.
    pub fn change_password(
        &self,
        username: &str,
        old_password: &str,
        new_password: &str,
    ) -> Result<String, ApiError> {
        let body = PasswordChange {
            username: username.into(),
            old_password: old_password.into(),
            new_password: new_password.into(),
        };
        self.post::<Registered>(api::PASSWORD, &body)
            .map(|r| r.name)
    }

    /// Sends any bytes with any content type to `path` and returns the answer as it is (for tests and
    /// tools that play a hostile client).
    pub fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<RawAnswer, ApiError> {
        let url = format!("{}{path}", self.base);
        let mut answer = self
            .agent
            .post(&url)
            .content_type(content_type)
            .send(body)
            .map_err(|error| transport_error(&self.base, error))?;
        Ok(RawAnswer::read(&mut answer))
    }

    /// A GET of `path`, answered as it is.
    pub fn get_raw(&self, path: &str) -> Result<RawAnswer, ApiError> {
        let url = format!("{}{path}", self.base);
        let mut answer = self
            .agent
            .get(&url)
            .call()
            .map_err(|error| transport_error(&self.base, error))?;
        Ok(RawAnswer::read(&mut answer))
    }

    /// The server's version and players online.
    pub fn health(&self) -> Result<Health, ApiError> {
        let mut answer = self.request::<()>(api::HEALTH, None)?;
        read_json(&mut answer)
    }

    fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, ApiError> {
        let mut answer = self.request(path, Some(body))?;
        read_json(&mut answer)
    }

    /// Sends the request; a non-2xx answer becomes [`ApiError::Refused`] with the server's words.
    fn request<B: serde::Serialize>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> Result<ureq::http::Response<ureq::Body>, ApiError> {
        let url = format!("{}{path}", self.base);
        let result = match (body, self.timeout) {
            (Some(body), None) => self.agent.post(&url).send_json(body),
            (Some(body), Some(timeout)) => self
                .agent
                .post(&url)
                .config()
                .timeout_global(Some(timeout))
                .build()
                .send_json(body),
            (None, None) => self.agent.get(&url).call(),
            (None, Some(timeout)) => self
                .agent
                .get(&url)
                .config()
                .timeout_global(Some(timeout))
                .build()
                .call(),
        };
        let mut answer = result.map_err(|error| transport_error(&self.base, error))?;
        let status = answer.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(answer);
        }
        let retry_after = answer
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let message = read_json::<ErrorBody>(&mut answer)
            .map(|body| body.error)
            .unwrap_or_else(|_| format!("The login server answered {status}"));
        Err(ApiError::Refused {
            status,
            message,
            retry_after,
        })
    }
}

/// An answer as it came: status, `Retry-After`, content type and body text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAnswer {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub content_type: Option<String>,
    pub body: String,
}

impl RawAnswer {
    fn read(answer: &mut ureq::http::Response<ureq::Body>) -> Self {
        let header = |name: &str| {
            answer
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let retry_after = header("retry-after").and_then(|v| v.trim().parse().ok());
        let content_type = header("content-type");
        let status = answer.status().as_u16();
        let body = answer
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_string()
            .unwrap_or_default();
        Self {
            status,
            retry_after,
            content_type,
            body,
        }
    }
}

fn read_json<T: serde::de::DeserializeOwned>(
    answer: &mut ureq::http::Response<ureq::Body>,
) -> Result<T, ApiError> {
    answer
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_json()
        .map_err(|error| ApiError::BadAnswer(error.to_string()))
}

fn transport_error(url: &str, error: ureq::Error) -> ApiError {
    let detail = error.to_string();
    let url = url.to_owned();
    match error {
        ureq::Error::Rustls(_) | ureq::Error::Tls(_) | ureq::Error::Pem(_) => {
            ApiError::Untrusted { url, detail }
        }
        // rustls' certificate errors surface as I/O errors carrying a rustls::Error.
        ureq::Error::Io(ref io)
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()) =>
        {
            ApiError::Untrusted { url, detail }
        }
        _ => ApiError::Unreachable { url, detail },
    }
}

/// Decodes the base64 connect token of a [`LoggedIn`] answer.
pub fn decode_connect_token(base64_token: &str) -> Result<ConnectToken, ApiError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(base64_token.trim())
        .map_err(|error| ApiError::BadAnswer(format!("connect token: {error}")))?;
    ConnectToken::read(&mut bytes.as_slice())
        .map_err(|error| ApiError::BadAnswer(format!("connect token: {error}")))
}

/// Encodes a connect token as the server's answers carry it.
pub fn encode_connect_token(token: &ConnectToken) -> String {
    let mut bytes = Vec::with_capacity(2048);
    token
        .write(&mut bytes)
        .expect("writing into a Vec cannot fail");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The UDP address a connect token sends the client to (its first).
pub fn token_server(token: &ConnectToken) -> Option<SocketAddr> {
    token.server_addresses.iter().flatten().next().copied()
}

/// A netcode client transport in secure mode, on a fresh socket, for this connect token.
pub fn secure_transport(token: ConnectToken) -> Result<NetcodeClientTransport, ClientError> {
    let server = token_server(&token).unwrap_or_else(|| ([127, 0, 0, 1], 0).into());
    let socket = bind_any(server)?;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Ok(NetcodeClientTransport::new(
        now,
        ClientAuthentication::Secure {
            connect_token: token,
        },
        socket,
    )?)
}
