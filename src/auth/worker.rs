//! Auth workers: threads that take register and login jobs from a bounded queue, do the slow parts
//! (argon2 and every account query) and send the outcome back to the tick through a channel.

use std::thread::JoinHandle;

use bevy::prelude::*;
use bevy_renet::renet::ClientId;
use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::password;
use crate::db::DbPool;
use crate::db::queries::{self, CreateAccountError};
use crate::time::now_ms;

/// The only answer to a failed login, whatever failed.
pub const LOGIN_FAILED: &str = "Username or password incorrect";
/// The answer to a register whose name exists in any case.
pub const NAME_TAKEN: &str = "This username is already taken";
/// The answer when something on our side failed (logged in full on the server).
pub const SERVER_ERROR: &str = "Server error, try again later";

/// What a worker is asked to do.
#[derive(Debug)]
pub enum AuthRequest {
    Register { username: String, password: String },
    Login { username: String, password: String },
}

/// One request, tagged with who asked.
#[derive(Debug)]
pub struct AuthJob {
    pub entity: Entity,
    pub client_id: ClientId,
    pub request: AuthRequest,
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

/// The worker threads and both ends of their channels.
#[derive(Resource)]
pub struct AuthWorkers {
    jobs: Option<Sender<AuthJob>>,
    pub(super) results: Receiver<AuthResult>,
    threads: Vec<JoinHandle<()>>,
}

impl AuthWorkers {
    /// Starts `count` workers sharing a queue of at most `queue` waiting jobs.
    pub fn start(pool: DbPool, count: usize, queue: usize) -> Self {
        password::return_buffers_to_the_os();
        let (jobs_tx, jobs_rx) = crossbeam_channel::bounded::<AuthJob>(queue);
        let (results_tx, results_rx) = crossbeam_channel::unbounded();
        let threads = (0..count)
            .map(|i| {
                let (jobs, results, pool) = (jobs_rx.clone(), results_tx.clone(), pool.clone());
                std::thread::Builder::new()
                    .name(format!("auth-{i}"))
                    .spawn(move || work(&pool, &jobs, &results))
                    .expect("spawning an auth worker thread")
            })
            .collect();
        Self {
            jobs: Some(jobs_tx),
            results: results_rx,
            threads,
        }
    }

    /// Queues a job; gives it back if the queue is full or the workers have stopped.
    pub fn submit(&self, job: AuthJob) -> Result<(), AuthJob> {
        match &self.jobs {
            Some(jobs) => jobs.try_send(job).map_err(|e| match e {
                TrySendError::Full(job) | TrySendError::Disconnected(job) => job,
            }),
            None => Err(job),
        }
    }

    /// Lets the workers finish every queued job (so every register commits), then joins them.
    pub fn stop(&mut self) {
        self.jobs = None;
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                error!("an auth worker panicked");
            }
        }
    }
}

impl Drop for AuthWorkers {
    fn drop(&mut self) {
        self.stop();
    }
}

fn work(pool: &DbPool, jobs: &Receiver<AuthJob>, results: &Sender<AuthResult>) {
    password::yield_cpu_to_the_tick();
    password::warm_up();
    for job in jobs {
        let username_key = match &job.request {
            AuthRequest::Register { username, .. } | AuthRequest::Login { username, .. } => {
                username.to_ascii_lowercase()
            }
        };
        let outcome = run(pool, job.request);
        // The receiver is gone only when the app is, and then nobody is waiting for the answer.
        let _ = results.send(AuthResult {
            entity: job.entity,
            client_id: job.client_id,
            username_key,
            outcome,
        });
    }
}

fn run(pool: &DbPool, request: AuthRequest) -> AuthOutcome {
    match request {
        AuthRequest::Register { username, password } => register(pool, username, &password),
        AuthRequest::Login { username, password } => login(pool, &username, &password),
    }
}

fn register(pool: &DbPool, username: String, password: &str) -> AuthOutcome {
    let result = (|| -> Result<AuthOutcome, Box<dyn std::error::Error>> {
        let mut conn = pool.get()?;
        // Checked first so a taken name costs no hash; the UNIQUE index settles races below.
        if queries::find_account(&mut conn, &username)?.is_some() {
            return Ok(AuthOutcome::RegisterDenied(NAME_TAKEN));
        }
        let hash = password::hash(password).map_err(|e| e.to_string())?;
        match queries::create_account(&mut conn, &username, &hash, now_ms() as i64) {
            Ok(account) => {
                info!(account_id = account.id, username = %account.username, "registered");
                Ok(AuthOutcome::Registered {
                    username: account.username,
                })
            }
            Err(CreateAccountError::Taken) => Ok(AuthOutcome::RegisterDenied(NAME_TAKEN)),
            Err(CreateAccountError::Db(e)) => Err(e.into()),
        }
    })();
    result.unwrap_or_else(|error| {
        error!(%error, username, "register failed");
        AuthOutcome::RegisterDenied(SERVER_ERROR)
    })
}

fn login(pool: &DbPool, username: &str, password: &str) -> AuthOutcome {
    let account = pool
        .get()
        .map_err(|e| e.to_string())
        .and_then(|mut conn| queries::find_account(&mut conn, username).map_err(|e| e.to_string()));
    match account {
        Ok(Some(account)) if password::verify(password, &account.password_hash) => {
            AuthOutcome::LoggedIn {
                account_id: account.id,
                name: account.username,
            }
        }
        Ok(Some(_)) => AuthOutcome::LoginDenied(LOGIN_FAILED),
        Ok(None) => {
            password::verify_nothing(password);
            AuthOutcome::LoginDenied(LOGIN_FAILED)
        }
        Err(error) => {
            error!(%error, username, "login lookup failed");
            AuthOutcome::LoginDenied(SERVER_ERROR)
        }
    }
}
