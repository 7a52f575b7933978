//! Token mode for the load generator. Players of an mmo server in token mode register and log in over
//! HTTPS ([`start_logins`], on a pool of threads: ureq is blocking) and then connect over UDP in
//! netcode's secure mode with the connect token the server answered. Players of the floor relay in
//! secure mode get their connect tokens from [`floor_token`], made here with the relay's private key:
//! the floor is the cost of secure-mode UDP alone, with no HTTP and no accounts.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime};

use mmo::api::TokenUser;
use mmo::client::api::{ApiClient, ApiError, decode_connect_token};
use mmo::protocol::PROTOCOL_ID;
use renet_netcode::{ConnectToken, NETCODE_KEY_BYTES};

/// How simulated players get in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Auth {
    /// Register and Login messages over netcode's unsecure mode (mmo's default); the floor relay is
    /// unsecure too.
    #[default]
    InBand,
    /// Register and log in over HTTPS, then connect in netcode's secure mode with the connect token;
    /// the floor relay runs in secure mode, with connect tokens made by the load generator.
    Token,
}

/// A netcode private key (the floor relay's, in secure mode).
pub type Key = [u8; NETCODE_KEY_BYTES];

/// Most players registering and logging in over HTTPS at once. The server's two auth workers hash
/// about 40 passwords a second, so 256 requests in flight keep its queue full while none of them
/// waits past the client's request timeout ([`mmo::client::api::REQUEST_TIMEOUT`], 15 s); the
/// login-storm's 200 players all start at once, as they do in-band.
pub const MAX_IN_FLIGHT: usize = 256;
/// Longest a player keeps retrying a busy (503) login server.
const RETRY_LIMIT: Duration = Duration::from_secs(300);
/// The wait before retrying a 503 that gave no `Retry-After`.
const BUSY_PAUSE: Duration = Duration::from_millis(50);
/// The floor's connect tokens: netcode's own defaults for unsecure clients (expiry 300 s, timeout 15 s).
const FLOOR_TOKEN_EXPIRY_S: u64 = 300;
const FLOOR_TOKEN_TIMEOUT_S: i32 = 15;

/// What a player's HTTPS steps produced.
#[derive(Debug)]
pub struct HttpsLogin {
    /// For the UDP connection.
    pub token: ConnectToken,
    /// When the first login request (after registration) left.
    pub login_sent_at: Instant,
    /// The session, to get a new connect token when the shard goes ([`resume`]).
    pub session_token: String,
}

/// Why a player could not log in over HTTPS.
#[derive(Debug, thiserror::Error)]
#[error("{name} could not {step} over HTTPS")]
pub struct LoginError {
    pub name: String,
    pub step: &'static str,
    #[source]
    pub source: ApiError,
}

/// The answer a player's login thread hands back.
pub type LoginResult = Result<HttpsLogin, LoginError>;

/// Registers each name with `password` and logs it in, on up to [`MAX_IN_FLIGHT`] threads; a name
/// already taken just logs in. Returns one receiver per name, in order, that gets its result. The
/// threads end when the last job is done.
pub fn start_logins(
    api: &ApiClient,
    names: &[String],
    password: &str,
) -> Vec<mpsc::Receiver<LoginResult>> {
    let (jobs_tx, jobs_rx) = mpsc::channel::<(String, mpsc::Sender<LoginResult>)>();
    let receivers = names
        .iter()
        .map(|name| {
            let (tx, rx) = mpsc::channel();
            jobs_tx
                .send((name.clone(), tx))
                .expect("the job queue is open while jobs are queued");
            rx
        })
        .collect();
    drop(jobs_tx);
    let jobs = Arc::new(Mutex::new(jobs_rx));
    for i in 0..names.len().min(MAX_IN_FLIGHT) {
        let (api, jobs, password) = (api.clone(), jobs.clone(), password.to_owned());
        std::thread::Builder::new()
            .name(format!("https-login-{i}"))
            .spawn(move || {
                loop {
                    let job = jobs.lock().expect("job queue lock").recv();
                    let Ok((name, reply)) = job else { break };
                    let _ = reply.send(register_and_log_in(&api, &name, &password));
                }
            })
            .expect("a login thread");
    }
    receivers
}

/// One player's HTTPS steps: register (409, taken, is fine: the name is ours from an earlier run),
/// then log in and decode the connect token.
pub fn register_and_log_in(
    api: &ApiClient,
    name: &str,
    password: &str,
) -> Result<HttpsLogin, LoginError> {
    let failed = |step, source| LoginError {
        name: name.to_owned(),
        step,
        source,
    };
    match retrying(|| api.register(name, password)) {
        Ok(_) => {}
        Err(error) if error.status() == Some(409) => {}
        Err(error) => return Err(failed("register", error)),
    }
    let login_sent_at = Instant::now();
    let answer = retrying(|| api.login(name, password)).map_err(|e| failed("log in", e))?;
    let token = decode_connect_token(&answer.connect_token).map_err(|e| failed("log in", e))?;
    Ok(HttpsLogin {
        token,
        login_sent_at,
        session_token: answer.session_token,
    })
}

/// How long a player whose shard went keeps asking for a new connect token.
const RECONNECT_FOR: Duration = Duration::from_secs(60);
/// Between two tries (the login server may be down with its shard).
const RECONNECT_PAUSE: Duration = Duration::from_millis(250);

/// On a thread of its own: trades `session_token` for a new connect token (to the shard when it is
/// back, or another), asking again while no login server answers, for up to a minute; a refused
/// session ends it at once. With several login servers (every shard serves logins) each try goes to
/// the next, starting at `first`, as a client with several addresses for one name would. The shard it
/// lost (`unreachable`) is named, so that the token sends it elsewhere.
pub fn resume(
    apis: &[ApiClient],
    first: usize,
    name: &str,
    session_token: String,
    unreachable: Option<SocketAddr>,
) -> mpsc::Receiver<LoginResult> {
    let (tx, rx) = mpsc::channel();
    let (apis, name) = (apis.to_vec(), name.to_owned());
    let job = move || {
        let deadline = Instant::now() + RECONNECT_FOR;
        let login_sent_at = Instant::now();
        let mut at = first;
        let result = loop {
            let api = &apis[at % apis.len().max(1)];
            at += 1;
            match api.resume_avoiding(&session_token, unreachable) {
                Ok(answer) => break Ok(answer),
                Err(error) if matches!(error.status(), Some(400 | 401 | 403)) => break Err(error),
                Err(error) if Instant::now() >= deadline => break Err(error),
                Err(_) => std::thread::sleep(RECONNECT_PAUSE),
            }
        };
        let failed = |source| LoginError {
            name: name.clone(),
            step: "reconnect",
            source,
        };
        let login = result.and_then(|answer| {
            let token = decode_connect_token(&answer.connect_token)?;
            Ok(HttpsLogin {
                token,
                login_sent_at,
                session_token: answer.session_token,
            })
        });
        let _ = tx.send(login.map_err(failed));
    };
    std::thread::Builder::new()
        .name("https-resume".into())
        .spawn(job)
        .expect("a resume thread");
    rx
}

/// Calls `request` until it is not 503 (the auth queue is full), waiting as the server says, for at
/// most [`RETRY_LIMIT`]. A 429 (throttled) is not retried: a load test that waits out abuse
/// protection measures the protection, so it ends the run with the server's words instead.
fn retrying<T>(mut request: impl FnMut() -> Result<T, ApiError>) -> Result<T, ApiError> {
    let deadline = Instant::now() + RETRY_LIMIT;
    loop {
        match request() {
            Err(ApiError::Refused {
                status: 503,
                retry_after,
                ..
            }) if Instant::now() < deadline => {
                std::thread::sleep(retry_after.map_or(BUSY_PAUSE, Duration::from_secs));
            }
            other => return other,
        }
    }
}

/// A fresh random private key.
pub fn random_key() -> Key {
    renet_netcode::generate_random_bytes()
}

/// A connect token for the secure floor relay at `relay`, for a player named `name`, made with the
/// relay's `key`: what mmo's login endpoint would hand out, minus the account.
pub fn floor_token(relay: SocketAddr, key: &Key, name: &str) -> ConnectToken {
    let user = TokenUser {
        account_id: 0,
        name: name.to_owned(),
    };
    let user_data = user
        .to_user_data()
        .expect("a load generator name fits in the user data");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    ConnectToken::generate(
        now,
        PROTOCOL_ID,
        FLOOR_TOKEN_EXPIRY_S,
        mmo::client::random_client_id(),
        FLOOR_TOKEN_TIMEOUT_S,
        vec![relay],
        Some(&user_data),
        key,
    )
    .expect("a token with one server address always generates")
}

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the key file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the key file {path} holds neither 32 bytes nor 64 hex digits")]
    Malformed { path: String },
}

/// Writes `key` as 64 hex digits (the format mmo's `--netcode-key-file` reads too).
pub fn write_key_file(path: &Path, key: &Key) -> std::io::Result<()> {
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(path, hex)
}

/// Reads a key file: 32 raw bytes, or 64 hex digits (surrounding whitespace allowed).
pub fn read_key_file(path: &Path) -> Result<Key, KeyFileError> {
    let bytes = std::fs::read(path).map_err(|source| KeyFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    mmo::api::parse_netcode_key(&bytes).ok_or_else(|| KeyFileError::Malformed {
        path: path.display().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_round_trips_as_hex_and_reads_raw_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let key = random_key();
        write_key_file(&path, &key).unwrap();
        assert_eq!(read_key_file(&path).unwrap(), key);
        std::fs::write(&path, key).unwrap();
        assert_eq!(read_key_file(&path).unwrap(), key);
        std::fs::write(&path, "not a key").unwrap();
        assert!(matches!(
            read_key_file(&path),
            Err(KeyFileError::Malformed { .. })
        ));
    }

    #[test]
    fn a_floor_token_sends_the_player_to_the_relay() {
        let relay: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let token = floor_token(relay, &random_key(), "chat_1");
        assert_eq!(token.protocol_id, PROTOCOL_ID);
        assert_eq!(mmo::client::api::token_server(&token), Some(relay));
    }
}
