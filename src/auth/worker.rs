//! Auth workers: threads that take account jobs from a bounded queue, do the slow parts (argon2 and every
//! account query) and send the outcome back: to the tick through a channel (in-band requests), or to
//! whoever asked through a callback (token mode's HTTPS endpoint). Both paths share the queue, so the
//! queue's bound and the workers' count limit them together.

use std::time::Duration;

use bevy::prelude::*;
use bevy_renet::renet::ClientId;
use crossbeam_channel::{Receiver, Sender};

use super::{password, session};
use crate::db::models::NewSession;
use crate::db::queries::{self, CreateAccountError};
use crate::db::{self, DbPool};
use crate::logs::Budget;
use crate::metrics::{self, Metrics};
use crate::moderation::Sanction;
use crate::time::now_ms;
use crate::worker::{Queue, Stop, Worker};

/// The only answer to a failed login, whatever failed.
pub const LOGIN_FAILED: &str = "Username or password incorrect";
/// The answer to a register whose name exists in any case.
pub const NAME_TAKEN: &str = "This username is already taken";
/// The answer when the database cannot be reached (or a query on it failed), and when the queue is
/// full: nothing is wrong with the request, it can be sent again (logged in full on the server).
pub const BUSY: &str = "Server busy, try again";
/// The answer when something else on our side failed (logged in full on the server).
pub const SERVER_ERROR: &str = "Server error, try again later";
/// The answer to a session token that is unknown, expired or revoked.
pub const SESSION_INVALID: &str = "Your session has expired, log in again";

/// Log lines players cause (`crate::logs`): registrations are bounded by each path's own limits, so
/// only their total is.
static REGISTERED: Budget = Budget::new("registered", 600, 600);
static BANNED: Budget = Budget::new("banned account refused", 5, 60);

/// What a worker is asked to do.
#[derive(Debug)]
pub enum AuthRequest {
    Register {
        username: String,
        password: String,
    },
    Login {
        username: String,
        password: String,
    },
    /// Token mode: log in with the password and open a session lasting `lifetime`.
    OpenSession {
        username: String,
        password: String,
        lifetime: Duration,
    },
    /// Token mode: log in with a session token.
    ResumeSession {
        token: String,
    },
    /// Token mode: revoke a session token.
    CloseSession {
        token: String,
    },
    /// Token mode: change the password (checking the old one) and revoke every session.
    ChangePassword {
        username: String,
        old_password: String,
        new_password: String,
    },
}

impl AuthRequest {
    /// The lowercase account name the request is about, if it names one.
    fn username_key(&self) -> String {
        match self {
            AuthRequest::Register { username, .. }
            | AuthRequest::Login { username, .. }
            | AuthRequest::OpenSession { username, .. }
            | AuthRequest::ChangePassword { username, .. } => username.to_ascii_lowercase(),
            AuthRequest::ResumeSession { .. } | AuthRequest::CloseSession { .. } => String::new(),
        }
    }
}

/// Where a job's outcome goes.
pub enum Reply {
    /// To the tick, for this connection.
    Tick { entity: Entity, client_id: ClientId },
    /// To this callback, on the worker thread (it must be quick: hand the outcome on and return).
    Callback(Box<dyn FnOnce(AuthOutcome) + Send>),
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Tick { entity, client_id } => f
                .debug_struct("Tick")
                .field("entity", entity)
                .field("client_id", client_id)
                .finish(),
            Reply::Callback(_) => f.write_str("Callback"),
        }
    }
}

/// One request, tagged with who asked.
#[derive(Debug)]
pub struct AuthJob {
    pub request: AuthRequest,
    pub reply: Reply,
}

/// What a worker found.
#[derive(Debug)]
pub enum AuthOutcome {
    /// The account row is committed.
    Registered {
        username: String,
    },
    LoggedIn {
        account_id: i32,
        name: String,
    },
    RegisterDenied(&'static str),
    LoginDenied(&'static str),
    /// The password is right but the account is banned: what the player is told (when, why).
    Banned(String),
    /// A session is open (or resumed); `session_token` is what the client keeps.
    SessionOpened {
        account_id: i32,
        name: String,
        session_token: String,
        expires_at_ms: i64,
    },
    /// The session token is unknown, expired or revoked.
    SessionDenied,
    /// The session is revoked (or never existed: the answer is the same).
    SessionClosed,
    /// The password is changed and every session of the account revoked.
    PasswordChanged {
        name: String,
    },
    /// Something on our side failed.
    Failed,
}

/// A finished job, sent back to the tick.
#[derive(Debug)]
pub struct AuthResult {
    pub entity: Entity,
    pub client_id: ClientId,
    /// The lowercase name the request was about (for the failed-login throttle).
    pub username_key: String,
    pub outcome: AuthOutcome,
}

/// The sending end of the workers' queue, shared by every submitter (the HTTPS endpoint has one);
/// stopping the workers closes it for all of them at once.
pub type AuthQueue = Queue<AuthJob>;

/// The worker threads, their queue and the channel of their results for the tick.
#[derive(Resource)]
pub struct AuthWorkers {
    workers: Worker<AuthJob>,
    pub(super) results: Receiver<AuthResult>,
}

impl AuthWorkers {
    /// Starts `count` workers sharing a queue of at most `queue` waiting jobs.
    pub fn start(pool: DbPool, count: usize, queue: usize, metrics: Metrics) -> Self {
        password::return_buffers_to_the_os();
        let (results_tx, results) = crossbeam_channel::unbounded();
        let workers = Worker::pool("auth", count, Some(queue), move |jobs, _| {
            work(&pool, &jobs, &results_tx, &metrics)
        });
        Self { workers, results }
    }

    /// Jobs waiting for a worker.
    pub fn queued(&self) -> usize {
        self.workers.queued()
    }

    /// A handle to queue jobs from elsewhere (the HTTPS endpoint).
    pub fn queue(&self) -> AuthQueue {
        self.workers.queue()
    }

    /// Queues a job; gives it back if the queue is full or the workers have stopped.
    pub fn submit(&self, job: AuthJob) -> Result<(), AuthJob> {
        self.workers.send(job)
    }
}

impl Stop for AuthWorkers {
    /// Lets the workers finish every queued job (so every register commits), then joins them.
    fn stop(&mut self) {
        self.workers.stop();
    }
}

fn work(pool: &DbPool, jobs: &Receiver<AuthJob>, results: &Sender<AuthResult>, metrics: &Metrics) {
    password::yield_cpu_to_the_tick();
    password::warm_up();
    for job in jobs {
        let username_key = job.request.username_key();
        let outcome = metrics::time(&metrics.auth_job_seconds, || run(pool, job.request));
        count(metrics, &outcome);
        match job.reply {
            Reply::Tick { entity, client_id } => {
                // The receiver is gone only when the app is, and then nobody is waiting for the answer.
                let _ = results.send(AuthResult {
                    entity,
                    client_id,
                    username_key,
                    outcome,
                });
            }
            Reply::Callback(callback) => callback(outcome),
        }
    }
}

/// Counts a job's outcome in the login and registration metrics.
fn count(metrics: &Metrics, outcome: &AuthOutcome) {
    let logins = &metrics.logins;
    let counter = match outcome {
        AuthOutcome::LoggedIn { .. } | AuthOutcome::SessionOpened { .. } => &logins.ok,
        AuthOutcome::LoginDenied(LOGIN_FAILED) | AuthOutcome::SessionDenied => {
            &logins.wrong_credentials
        }
        AuthOutcome::LoginDenied(BUSY) => &logins.busy,
        AuthOutcome::LoginDenied(_) => &logins.failed,
        AuthOutcome::Banned(_) => &logins.banned,
        AuthOutcome::Registered { .. } => &metrics.registrations_ok,
        AuthOutcome::RegisterDenied(NAME_TAKEN) => &metrics.registrations_taken,
        AuthOutcome::RegisterDenied(_) => &metrics.registrations_failed,
        AuthOutcome::SessionClosed | AuthOutcome::PasswordChanged { .. } | AuthOutcome::Failed => {
            return;
        }
    };
    counter.inc();
}

fn run(pool: &DbPool, request: AuthRequest) -> AuthOutcome {
    match request {
        AuthRequest::Register { username, password } => register(pool, username, &password),
        AuthRequest::Login { username, password } => login(pool, &username, &password),
        AuthRequest::OpenSession {
            username,
            password,
            lifetime,
        } => match login(pool, &username, &password) {
            AuthOutcome::LoggedIn { account_id, name } => {
                open_session(pool, account_id, name, lifetime)
            }
            denied => denied,
        },
        AuthRequest::ResumeSession { token } => resume_session(pool, &token),
        AuthRequest::CloseSession { token } => close_session(pool, &token),
        AuthRequest::ChangePassword {
            username,
            old_password,
            new_password,
        } => change_password(pool, &username, &old_password, &new_password),
    }
}

fn open_session(pool: &DbPool, account_id: i32, name: String, lifetime: Duration) -> AuthOutcome {
    let token = session::new_token();
    let now = now_ms() as i64;
    let expires_at_ms = now.saturating_add(lifetime.as_millis() as i64);
    let row = NewSession {
        account_id,
        token_hash: &session::hash_token(&token),
        created_at_ms: now,
        expires_at_ms,
        last_used_at_ms: now,
    };
    let stored = db::with_conn(pool, |conn| queries::create_session(conn, &row));
    match stored {
        Ok(()) => AuthOutcome::SessionOpened {
            account_id,
            name,
            session_token: token,
            expires_at_ms,
        },
        Err(error) => {
            error!(%error, account_id, "cannot store a session");
            AuthOutcome::LoginDenied(BUSY)
        }
    }
}

fn resume_session(pool: &DbPool, token: &str) -> AuthOutcome {
    if !session::is_well_formed(token) {
        return AuthOutcome::SessionDenied;
    }
    let found = db::with_conn(pool, |conn| {
        queries::use_session(conn, &session::hash_token(token), now_ms() as i64)
    });
    match found {
        Ok(Some((account, expires_at_ms))) => AuthOutcome::SessionOpened {
            account_id: account.id,
            name: account.username,
            session_token: token.to_owned(),
            expires_at_ms,
        },
        Ok(None) => AuthOutcome::SessionDenied,
        Err(error) => {
            error!(%error, "session lookup failed");
            AuthOutcome::LoginDenied(BUSY)
        }
    }
}

fn close_session(pool: &DbPool, token: &str) -> AuthOutcome {
    if !session::is_well_formed(token) {
        return AuthOutcome::SessionClosed;
    }
    let deleted = db::with_conn(pool, |conn| {
        queries::delete_session(conn, &session::hash_token(token))
    });
    match deleted {
        Ok(_) => AuthOutcome::SessionClosed,
        Err(error) => {
            error!(%error, "cannot revoke a session");
            AuthOutcome::LoginDenied(BUSY)
        }
    }
}

fn change_password(pool: &DbPool, username: &str, old: &str, new: &str) -> AuthOutcome {
    let (account_id, name) = match login(pool, username, old) {
        AuthOutcome::LoggedIn { account_id, name } => (account_id, name),
        denied => return denied,
    };
    let hash = match password::hash(new) {
        Ok(hash) => hash,
        Err(error) => {
            error!(%error, account_id, "cannot hash a new password");
            return AuthOutcome::Failed;
        }
    };
    match db::with_conn(pool, |conn| {
        queries::change_password(conn, account_id, &hash)
    }) {
        Ok(()) => {
            info!(account_id, name, "password changed; every session revoked");
            AuthOutcome::PasswordChanged { name }
        }
        Err(error) => {
            error!(%error, account_id, "cannot change a password");
            AuthOutcome::LoginDenied(BUSY)
        }
    }
}

fn register(pool: &DbPool, username: String, password: &str) -> AuthOutcome {
    // Checked first so a taken name costs no hash; the UNIQUE index settles races below.
    match db::with_conn(pool, |conn| queries::find_account(conn, &username)) {
        Ok(None) => {}
        Ok(Some(_)) => return AuthOutcome::RegisterDenied(NAME_TAKEN),
        Err(error) => {
            error!(%error, username, "register failed");
            return AuthOutcome::RegisterDenied(BUSY);
        }
    }
    let hash = match password::hash(password) {
        Ok(hash) => hash,
        Err(error) => {
            error!(%error, username, "register failed: cannot hash");
            return AuthOutcome::RegisterDenied(SERVER_ERROR);
        }
    };
    let created = pool.get().map_err(|e| e.to_string()).and_then(|mut conn| {
        match queries::create_account(&mut conn, &username, &hash, now_ms() as i64) {
            Err(CreateAccountError::Db(e)) => Err(e.to_string()),
            other => Ok(other),
        }
    });
    match created {
        Ok(Ok(account)) => {
            if REGISTERED.allow(()) {
                info!(account_id = account.id, username = %account.username, "registered");
            }
            AuthOutcome::Registered {
                username: account.username,
            }
        }
        Ok(Err(_taken)) => AuthOutcome::RegisterDenied(NAME_TAKEN),
        Err(error) => {
            error!(%error, username, "register failed");
            AuthOutcome::RegisterDenied(BUSY)
        }
    }
}

fn login(pool: &DbPool, username: &str, password: &str) -> AuthOutcome {
    let account = db::with_conn(pool, |conn| queries::find_account(conn, username));
    match account {
        Ok(Some(account)) if password::verify(password, &account.password_hash) => {
            let ban = db::with_conn(pool, |conn| {
                queries::active_ban(conn, account.id, now_ms() as i64)
            });
            match ban {
                Ok(None) => AuthOutcome::LoggedIn {
                    account_id: account.id,
                    name: account.username,
                },
                Ok(Some(row)) => {
                    if BANNED.allow(account.id) {
                        info!(account_id = account.id, "banned account refused");
                    }
                    AuthOutcome::Banned(Sanction::from_row(&row).banned_text())
                }
                Err(error) => {
                    error!(%error, username, "ban lookup failed");
                    AuthOutcome::LoginDenied(BUSY)
                }
            }
        }
        Ok(Some(_)) => AuthOutcome::LoginDenied(LOGIN_FAILED),
        Ok(None) => {
            password::verify_nothing(password);
            AuthOutcome::LoginDenied(LOGIN_FAILED)
        }
        Err(error) => {
            error!(%error, username, "login lookup failed");
            AuthOutcome::LoginDenied(BUSY)
        }
    }
}
