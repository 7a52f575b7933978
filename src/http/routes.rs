//! The `/api` handlers: each checks the request's shape and the throttles, queues the slow part on the
//! auth workers (never argon2 or SQL on the runtime's threads), and answers with a status code and JSON.
//! Errors are `{"error": "..."}` in the in-band `Denied` wording.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::ApiState;
use crate::access::PRIVATE;
use crate::api::{
    self, Credentials, ErrorBody, Health, LoggedIn, PasswordChange, Registered, SessionToken,
};
use crate::auth::throttle::{LOCKED_OUT, LOCKOUT};
use crate::auth::worker::{
    AuthJob, AuthOutcome, AuthRequest, BUSY, LOGIN_FAILED, NAME_TAKEN, Reply, SERVER_ERROR,
    SESSION_INVALID,
};
use crate::logs::Budget;
use crate::protocol;

/// What a client over its login allowance is told.
pub const TOO_MANY_LOGINS: &str = "Too many logins from this address, try again later";
/// What a session resumed too often is told.
pub const TOO_MANY_RESUMPTIONS: &str = "This session logs in too often, try again later";

/// What a client over its registration allowance is told.
pub const TOO_MANY_REGISTRATIONS: &str =
    "Too many registrations from this address, try again later";

/// Log lines any client of the endpoint can cause (`crate::logs`).
static LOGGED_IN: Budget = Budget::new("logged in over https", 10, 600);
static FAILED: Budget = Budget::new("https login failed", 5, 30);
static QUEUE_FULL: Budget = Budget::new("auth queue full (https)", 10, 10);

/// Hashes session tokens for their allowances (seeded per process: nobody can aim a token at another's
/// allowance).
static SESSION_KEYS: std::sync::LazyLock<std::hash::RandomState> =
    std::sync::LazyLock::new(std::hash::RandomState::new);

/// An error answer: a status and the player-facing text, with how long to wait when throttled.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    fn throttled(message: &str, wait: Duration) -> Self {
        Self {
            retry_after: Some(wait),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, message)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response();
        if let Some(wait) = self.retry_after {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// A JSON body whose every rejection is an [`ApiError`] with our status codes: 415 without a JSON
/// content type, 413 over [`api::MAX_BODY_BYTES`], 400 for bad JSON or a wrong shape.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Send JSON, with Content-Type: application/json",
            )),
            Err(JsonRejection::BytesRejection(rejection))
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("Request body over {} bytes", api::MAX_BODY_BYTES),
                ))
            }
            Err(JsonRejection::JsonDataError(rejection)) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("Malformed request: {}", rejection.body_text()),
            )),
            Err(rejection) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("Malformed JSON: {}", rejection.body_text()),
            )),
        }
    }
}

/// Queues `request` on the auth workers and waits for the outcome (the runtime thread is free
/// meanwhile). A full queue is 503, as in-band's "Server busy"; so is a tick over budget.
async fn run(state: &ApiState, request: AuthRequest) -> Result<AuthOutcome, ApiError> {
    if state.shedding.load(std::sync::atomic::Ordering::Relaxed) {
        // Counted as in-band's are: registrations apart from logins (password or session).
        match request {
            AuthRequest::Register { .. } => state.metrics.registrations_shed.inc(),
            _ => state.metrics.logins.shed.inc(),
        };
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, BUSY));
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job = AuthJob {
        request,
        reply: Reply::Callback(Box::new(move |outcome| {
            let _ = tx.send(outcome);
        })),
    };
    if state.queue.send(job).is_err() {
        if QUEUE_FULL.allow(()) {
            tracing::warn!("auth queue full (https)");
        }
        state.metrics.logins.busy.inc();
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, BUSY));
    }
    // The sender is dropped unanswered only when the server stops.
    match rx.await {
        // The database is unreachable: 503 too, as a full queue.
        Ok(AuthOutcome::LoginDenied(BUSY) | AuthOutcome::RegisterDenied(BUSY)) | Err(_) => {
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, BUSY))
        }
        Ok(outcome) => Ok(outcome),
    }
}

fn server_error() -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, SERVER_ERROR)
}

/// Refuses a login-like request from a locked-out address or for a locked-out name.
fn check_lockout(state: &ApiState, ip: IpAddr, name: Option<&str>) -> Result<(), ApiError> {
    let now = Instant::now();
    let name_locked =
        name.is_some_and(|name| state.names.is_locked(&name.to_ascii_lowercase(), now));
    if name_locked || state.addresses.is_locked(&ip, now) {
        state.metrics.logins.locked_out.inc();
        return Err(ApiError::throttled(LOCKED_OUT, LOCKOUT));
    }
    Ok(())
}

/// Counts a failed password (or session) check against the address and the name.
fn record_failure(state: &ApiState, ip: IpAddr, name: Option<&str>) {
    let now = Instant::now();
    state.addresses.record(&ip, now);
    if let Some(name) = name {
        state.names.record(&name.to_ascii_lowercase(), now);
    }
}

/// With `--allow-list`, a name not on it is refused before any hashing: 403, "This server is private".
fn refuse_unlisted(state: &ApiState, username: &str) -> Result<(), ApiError> {
    match state.allowed.admits(username) {
        true => Ok(()),
        false => Err(ApiError::new(StatusCode::FORBIDDEN, PRIVATE)),
    }
}

/// A name or a password no account can have fails at once, with the usual answer (as in-band).
fn refuse_impossible_login(username: &str, password: &str) -> Result<(), ApiError> {
    if protocol::validate_username(username).is_err()
        || password.chars().count() > *protocol::PASSWORD_CHARS.end()
    {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, LOGIN_FAILED));
    }
    Ok(())
}

/// The answer to an opened (or resumed) session: a fresh connect token with it.
/// The answer to a login that opened a session: a connect token (to a shard other than `unreachable`
/// if one has room) and the session.
fn logged_in(
    state: &ApiState,
    ip: IpAddr,
    outcome: AuthOutcome,
    unreachable: Option<SocketAddr>,
) -> Result<Json<LoggedIn>, ApiError> {
    let AuthOutcome::SessionOpened {
        account_id,
        name,
        session_token,
        expires_at_ms,
    } = outcome
    else {
        return Err(server_error());
    };
    if LOGGED_IN.allow(ip) {
        tracing::info!(account_id, %name, %ip, "logged in over https");
    }
    let connect_token = state
        .issuer
        .connect_token(account_id, &name, unreachable)
        .map_err(|error| {
            tracing::error!(%error, account_id, "cannot make a connect token");
            server_error()
        })?;
    Ok(Json(LoggedIn {
        name,
        connect_token,
        session_token,
        session_expires_at: u64::try_from(expires_at_ms / 1000).unwrap_or(0),
    }))
}

pub async fn register(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(body): JsonBody<Credentials>,
) -> Result<(StatusCode, Json<Registered>), ApiError> {
    protocol::validate_username(&body.username)
        .and(protocol::validate_password(&body.password))
        .map_err(|reason| ApiError::new(StatusCode::BAD_REQUEST, reason))?;
    refuse_unlisted(&state, &body.username)?;
    state
        .registrations
        .take(peer.ip(), Instant::now())
        .map_err(|wait| ApiError::throttled(TOO_MANY_REGISTRATIONS, wait))?;
    let request = AuthRequest::Register {
        username: body.username,
        password: body.password,
    };
    match run(&state, request).await? {
        AuthOutcome::Registered { username } => {
            Ok((StatusCode::CREATED, Json(Registered { name: username })))
        }
        AuthOutcome::RegisterDenied(NAME_TAKEN) => {
            Err(ApiError::new(StatusCode::CONFLICT, NAME_TAKEN))
        }
        _ => Err(server_error()),
    }
}

pub async fn login(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(body): JsonBody<Credentials>,
) -> Result<Json<LoggedIn>, ApiError> {
    let ip = peer.ip();
    refuse_impossible_login(&body.username, &body.password)?;
    refuse_unlisted(&state, &body.username)?;
    check_lockout(&state, ip, Some(&body.username))?;
    state
        .logins
        .take(ip, Instant::now())
        .map_err(|wait| ApiError::throttled(TOO_MANY_LOGINS, wait))?;
    let request = AuthRequest::OpenSession {
        username: body.username.clone(),
        password: body.password,
        lifetime: state.session_lifetime,
    };
    match run(&state, request).await? {
        opened @ AuthOutcome::SessionOpened { .. } => {
            state.names.forget(&body.username.to_ascii_lowercase());
            logged_in(&state, ip, opened, None)
        }
        AuthOutcome::Banned(text) => Err(ApiError::new(StatusCode::FORBIDDEN, text)),
        AuthOutcome::LoginDenied(LOGIN_FAILED) => {
            if FAILED.allow(ip) {
                tracing::info!(%ip, "https login failed");
            }
            record_failure(&state, ip, Some(&body.username));
            Err(ApiError::new(StatusCode::UNAUTHORIZED, LOGIN_FAILED))
        }
        _ => Err(server_error()),
    }
}

pub async fn session(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(body): JsonBody<SessionToken>,
) -> Result<Json<LoggedIn>, ApiError> {
    let ip = peer.ip();
    check_lockout(&state, ip, None)?;
    let now = Instant::now();
    state
        .logins
        .take(ip, now)
        .map_err(|wait| ApiError::throttled(TOO_MANY_LOGINS, wait))?;
    let session = std::hash::BuildHasher::hash_one(&*SESSION_KEYS, &body.session_token);
    state
        .resumptions
        .take(session, now)
        .map_err(|wait| ApiError::throttled(TOO_MANY_RESUMPTIONS, wait))?;
    let unreachable = body.unreachable;
    let request = AuthRequest::ResumeSession {
        token: body.session_token,
    };
    match run(&state, request).await? {
        AuthOutcome::SessionOpened { ref name, .. } if !state.allowed.admits(name) => {
            Err(ApiError::new(StatusCode::FORBIDDEN, PRIVATE))
        }
        opened @ AuthOutcome::SessionOpened { .. } => logged_in(&state, ip, opened, unreachable),
        AuthOutcome::SessionDenied => {
            record_failure(&state, ip, None);
            Err(ApiError::new(StatusCode::UNAUTHORIZED, SESSION_INVALID))
        }
        _ => Err(server_error()),
    }
}

pub async fn logout(
    State(state): State<Arc<ApiState>>,
    JsonBody(body): JsonBody<SessionToken>,
) -> Result<StatusCode, ApiError> {
    let request = AuthRequest::CloseSession {
        token: body.session_token,
    };
    match run(&state, request).await? {
        AuthOutcome::SessionClosed => Ok(StatusCode::NO_CONTENT),
        _ => Err(server_error()),
    }
}

pub async fn password(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(body): JsonBody<PasswordChange>,
) -> Result<Json<Registered>, ApiError> {
    let ip = peer.ip();
    protocol::validate_password(&body.new_password)
        .map_err(|reason| ApiError::new(StatusCode::BAD_REQUEST, reason))?;
    refuse_impossible_login(&body.username, &body.old_password)?;
    check_lockout(&state, ip, Some(&body.username))?;
    let request = AuthRequest::ChangePassword {
        username: body.username.clone(),
        old_password: body.old_password,
        new_password: body.new_password,
    };
    match run(&state, request).await? {
        AuthOutcome::PasswordChanged { name } => Ok(Json(Registered { name })),
        AuthOutcome::Banned(text) => Err(ApiError::new(StatusCode::FORBIDDEN, text)),
        AuthOutcome::LoginDenied(LOGIN_FAILED) => {
            record_failure(&state, ip, Some(&body.username));
            Err(ApiError::new(StatusCode::UNAUTHORIZED, LOGIN_FAILED))
        }
        _ => Err(server_error()),
    }
}

pub async fn health(State(state): State<Arc<ApiState>>) -> Json<Health> {
    Json(Health {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        protocol_version: protocol::PROTOCOL_VERSION,
        players_online: state.online.load(std::sync::atomic::Ordering::Relaxed),
    })
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "No such endpoint")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed here")
}
