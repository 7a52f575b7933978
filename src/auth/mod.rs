//! Accounts: registration and login. The tick only checks the request's shape and queues it; argon2 and
//! every query run on [`worker`] threads, and their outcome is applied here on a later tick. A
//! connection with a request in flight is [`Authenticating`] and may not start another.
//!
//! In token mode the password never crosses UDP: the HTTPS endpoint (`crate::http`) logs in on the same
//! workers and hands out a connect token; a connection made with one carries its account
//! ([`net::TokenLogin`]) and enters play on its first tick, while Register and Login messages are
//! refused with [`api::USE_HTTPS`].

pub mod password;
pub mod session;
pub mod throttle;
pub mod worker;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bevy::prelude::*;

use crate::access::{AllowList, PRIVATE};
use crate::api;
use crate::config::{AuthMode, Config};
use crate::db::Database;
use crate::load::TickLoad;
use crate::logs::Budget;
use crate::metrics::Metrics;
use crate::moderation::Sanctions;
use crate::net::{self, AwaitingLogin, Connection, Connections, Inbound, Outbox, TokenLogin};
use crate::players::{OnlineAccounts, Player};
use crate::protocol::{self, ClientMessage, Request, ServerMessage};
use crate::schedule::ServerSystems;
use crate::worker::stop_at_shutdown;
use throttle::{Failures, LOCKED_OUT, NameFailures};
use worker::{AuthJob, AuthOutcome, AuthRequest, AuthWorkers, BUSY, LOGIN_FAILED, Reply};

/// Accounts one connection may try to register.
pub const MAX_REGISTRATIONS_PER_CONNECTION: u8 = 5;
/// What a connection over that is told.
pub const TOO_MANY_REGISTRATIONS: &str = "Too many registrations from this connection";

/// Registrations this connection has asked for.
#[derive(Component, Debug, Default)]
pub struct Registrations(pub u8);

/// Why a connection that never logged in is closed.
pub const LOGIN_TIMED_OUT: &str = "Login timed out";

/// The reason given to the older session when its account logs in again elsewhere.
pub const LOGGED_IN_ELSEWHERE: &str = "Logged in from another location";

/// Log lines any connection can cause (`crate::logs`).
static FAILED: Budget = Budget::new("login failed", 5, 30);
static QUEUE_FULL: Budget = Budget::new("auth queue full", 10, 10);

pub(crate) fn plugin(app: &mut App) {
    let config = app.world().resource::<Config>();
    let (workers, queue) = (usize::from(config.auth_workers), config.auth_queue as usize);
    let login_timeout = Duration::from_secs(u64::from(config.login_timeout));
    let mode = config.auth;
    let pool = app
        .world()
        .resource::<Database>()
        .pool("auth", workers as u32);
    let metrics = app.world().resource::<Metrics>().clone();
    app.register_required_components::<AwaitingLogin, Registrations>();
    app.insert_resource(AuthWorkers::start(pool, workers, queue, metrics))
        .insert_resource(LoginTimeout(login_timeout))
        .insert_resource(LoginPath(mode))
        .add_systems(
            Update,
            (
                queue_requests,
                apply_results,
                admit_token_logins,
                expire_logins,
            )
                .chain()
                .in_set(ServerSystems::Requests),
        )
        .init_resource::<NameFailures>();
    stop_at_shutdown::<AuthWorkers>(app);
}

/// Where this server takes passwords: over UDP (in-band) or only over HTTPS (token mode).
#[derive(Resource, Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginPath(pub AuthMode);

/// A register or login request of this connection is with the workers.
#[derive(Component, Debug)]
pub struct Authenticating;

use net::deny;

fn queue_requests(
    mut commands: Commands,
    mut inbound: MessageReader<Inbound>,
    mut server: Outbox,
    workers: Res<AuthWorkers>,
    path: Res<LoginPath>,
    states: Query<(Has<AwaitingLogin>, Has<Authenticating>)>,
    mut queued_this_tick: Local<HashSet<Entity>>,
    names: Res<NameFailures>,
    mut limits: Query<(Option<&Failures>, &mut Registrations)>,
    metrics: Res<Metrics>,
    allowed: Res<AllowList>,
    load: Res<TickLoad>,
) {
    let now = Instant::now();
    // `Authenticating` is inserted by a command, seen by the query only next tick: remember this tick's.
    queued_this_tick.clear();
    for Inbound {
        entity,
        client_id,
        message,
    } in inbound.read()
    {
        let (request, job) = match message {
            ClientMessage::Register { .. } if path.0 == AuthMode::Token => {
                deny(&mut server, *client_id, Request::Register, api::USE_HTTPS);
                continue;
            }
            ClientMessage::Login { .. } if path.0 == AuthMode::Token => {
                deny(&mut server, *client_id, Request::Login, api::USE_HTTPS);
                continue;
            }
            ClientMessage::Register { username, password } => {
                let valid = protocol::validate_username(username)
                    .and(protocol::validate_password(password));
                if let Err(reason) = valid {
                    deny(&mut server, *client_id, Request::Register, reason);
                    continue;
                }
                if !allowed.admits(username) {
                    deny(&mut server, *client_id, Request::Register, PRIVATE);
                    continue;
                }
                // Counted once queued (below): a busy server does not spend the allowance.
                if limits
                    .get(*entity)
                    .is_ok_and(|(_, r)| r.0 >= MAX_REGISTRATIONS_PER_CONNECTION)
                {
                    deny(
                        &mut server,
                        *client_id,
                        Request::Register,
                        TOO_MANY_REGISTRATIONS,
                    );
                    continue;
                }
                let job = AuthRequest::Register {
                    username: username.clone(),
                    password: password.clone(),
                };
                (Request::Register, job)
            }
            ClientMessage::Login { username, password } => {
                // A name or password no account can have fails at once, with the usual answer.
                if protocol::validate_username(username).is_err() || password.chars().count() > 1024
                {
                    deny(&mut server, *client_id, Request::Login, LOGIN_FAILED);
                    continue;
                }
                // Before any hashing: the answer does not tell whether the account exists.
                if !allowed.admits(username) {
                    deny(&mut server, *client_id, Request::Login, PRIVATE);
                    continue;
                }
                let connection_locked = limits
                    .get(*entity)
                    .is_ok_and(|(failures, _)| failures.is_some_and(|f| f.is_locked(now)));
                if connection_locked || names.is_locked(&username.to_ascii_lowercase(), now) {
                    metrics.logins.locked_out.inc();
                    deny(&mut server, *client_id, Request::Login, LOCKED_OUT);
                    continue;
                }
                let job = AuthRequest::Login {
                    username: username.clone(),
                    password: password.clone(),
                };
                (Request::Login, job)
            }
            // Everything else is another plugin's.
            _ => continue,
        };
        let Ok((awaiting_login, authenticating)) = states.get(*entity) else {
            continue;
        };
        if authenticating || queued_this_tick.contains(entity) {
            deny(
                &mut server,
                *client_id,
                request,
                "Please wait for the answer to your last request",
            );
        } else if !awaiting_login {
            deny(
                &mut server,
                *client_id,
                request,
                "You are already logged in",
            );
        } else if load.shedding() {
            // The tick is over budget: hashing a password now would take the cores it needs.
            match request {
                Request::Login => metrics.logins.shed.inc(),
                _ => metrics.registrations_shed.inc(),
            };
            deny(&mut server, *client_id, request, BUSY);
        } else if workers
            .submit(AuthJob {
                request: job,
                reply: Reply::Tick {
                    entity: *entity,
                    client_id: *client_id,
                },
            })
            .is_err()
        {
            if QUEUE_FULL.allow(()) {
                warn!(client_id, ?request, "auth queue full");
            }
            if request == Request::Login {
                metrics.logins.busy.inc();
            }
            deny(&mut server, *client_id, request, BUSY);
        } else {
            if request == Request::Register
                && let Ok((_, mut registrations)) = limits.get_mut(*entity)
            {
                registrations.0 += 1;
            }
            commands.entity(*entity).insert(Authenticating);
            queued_this_tick.insert(*entity);
        }
    }
}

fn apply_results(
    mut commands: Commands,
    mut server: Outbox,
    workers: Res<AuthWorkers>,
    online: Res<OnlineAccounts>,
    connections: Query<&Connection, With<Authenticating>>,
    all_connections: Query<&Connection>,
    mut logged_in_this_tick: Local<Vec<(i32, Entity, u64)>>,
    names: Res<NameFailures>,
    sanctions: Res<Sanctions>,
    addresses: Res<Connections>,
) {
    let now = Instant::now();
    logged_in_this_tick.clear();
    for result in workers.results.try_iter() {
        let client_id = result.client_id;
        let from = addresses.ip(client_id);
        // The connection may have left (or been kicked) while the job ran: then nobody is told.
        let Ok(connection) = connections.get(result.entity) else {
            debug!(client_id, outcome = ?result.outcome, "auth result for a connection that is gone");
            continue;
        };
        if connection.client_id != client_id {
            continue;
        }
        commands.entity(result.entity).remove::<Authenticating>();
        match result.outcome {
            AuthOutcome::Registered { username } => {
                net::send(
                    &mut server,
                    client_id,
                    &ServerMessage::Registered { username },
                );
            }
            AuthOutcome::RegisterDenied(reason) => {
                deny(&mut server, client_id, Request::Register, reason)
            }
            AuthOutcome::LoginDenied(reason) if reason == LOGIN_FAILED => {
                if FAILED.allow(from) {
                    info!(client_id, "login failed");
                }
                names.record(&result.username_key, now);
                commands
                    .entity(result.entity)
                    .entry::<Failures>()
                    .or_default()
                    .and_modify(move |mut f| f.record(now));
                deny(&mut server, client_id, Request::Login, reason);
            }
            AuthOutcome::LoginDenied(reason) => {
                if FAILED.allow(from) {
                    info!(client_id, "login failed");
                }
                deny(&mut server, client_id, Request::Login, reason);
            }
            AuthOutcome::Banned(text) => deny(&mut server, client_id, Request::Login, &text),
            AuthOutcome::LoggedIn { account_id, name } => {
                // Banned while the password was being checked.
                if let Some(ban) = sanctions.ban(account_id) {
                    deny(&mut server, client_id, Request::Login, &ban.banned_text());
                    continue;
                }
                names.forget(&result.username_key);
                let sessions = (&*online, &all_connections, &mut *logged_in_this_tick);
                enter_play(
                    &mut commands,
                    &mut server,
                    sessions,
                    (result.entity, client_id),
                    account_id,
                    name,
                );
            }
            // Token mode's outcomes go to their callbacks, never here.
            other => warn!(client_id, outcome = ?other, "unexpected auth outcome for a connection"),
        }
    }
}

/// Makes `new` the player of `account_id`: the account's older session, if any (online, or logged in
/// earlier this tick), is kicked; the client is told it is logged in; `Player` goes on its entity (and
/// the players plugin sends the online list and tells everyone).
fn enter_play(
    commands: &mut Commands,
    server: &mut Outbox,
    (online, connections, logged_in_this_tick): (
        &OnlineAccounts,
        &Query<&Connection>,
        &mut Vec<(i32, Entity, u64)>,
    ),
    (entity, client_id): (Entity, u64),
    account_id: i32,
    name: String,
) {
    // One session per account: the older one is told why and closed.
    let earlier = logged_in_this_tick
        .iter()
        .find(|(id, ..)| *id == account_id)
        .map(|&(_, e, c)| (e, c));
    let online_session = || {
        let entity = online.entity(account_id)?;
        Some((entity, connections.get(entity).ok()?.client_id))
    };
    if let Some((old_entity, old_client)) = earlier.or_else(online_session) {
        net::kick(
            commands,
            server,
            old_entity,
            old_client,
            LOGGED_IN_ELSEWHERE,
        );
    }
    logged_in_this_tick.retain(|(id, ..)| *id != account_id);
    logged_in_this_tick.push((account_id, entity, client_id));
    net::send(
        server,
        client_id,
        &ServerMessage::LoggedIn { name: name.clone() },
    );
    commands
        .entity(entity)
        .remove::<AwaitingLogin>()
        .insert(Player { account_id, name });
}

/// Token mode: a connection made with a connect token is its account's player from its first tick.
fn admit_token_logins(
    mut commands: Commands,
    mut server: Outbox,
    online: Res<OnlineAccounts>,
    arrived: Query<(Entity, &Connection, &TokenLogin), Added<TokenLogin>>,
    all_connections: Query<&Connection>,
    mut logged_in_this_tick: Local<Vec<(i32, Entity, u64)>>,
    sanctions: Res<Sanctions>,
    allowed: Res<AllowList>,
) {
    logged_in_this_tick.clear();
    for (entity, connection, TokenLogin(user)) in &arrived {
        // A connect token lives 30 s: one handed out just before a ban (or a disallow) is refused here.
        let refused = match sanctions.ban(user.account_id) {
            Some(ban) => Some(ban.banned_text()),
            None => (!allowed.admits(&user.name)).then(|| PRIVATE.to_owned()),
        };
        if let Some(text) = refused {
            net::kick(
                &mut commands,
                &mut server,
                entity,
                connection.client_id,
                &text,
            );
            continue;
        }
        let sessions = (&*online, &all_connections, &mut *logged_in_this_tick);
        enter_play(
            &mut commands,
            &mut server,
            sessions,
            (entity, connection.client_id),
            user.account_id,
            user.name.clone(),
        );
        commands.entity(entity).remove::<TokenLogin>();
    }
}

/// How long a connection may take to log in.
#[derive(Resource, Debug, Clone, Copy)]
pub struct LoginTimeout(pub Duration);

/// Closes connections that have not logged in within the timeout (half-open or idle ones hold a netcode
/// slot each).
fn expire_logins(
    mut commands: Commands,
    mut server: Outbox,
    timeout: Res<LoginTimeout>,
    // A request waiting for a worker is not idleness: a busy server must not kick the players it is
    // keeping waiting. The clock still runs, so a failed attempt after the limit ends the connection.
    waiting: Query<(Entity, &Connection), (With<AwaitingLogin>, Without<Authenticating>)>,
) {
    for (entity, connection) in &waiting {
        if connection.connected_at.elapsed() >= timeout.0 {
            net::kick(
                &mut commands,
                &mut server,
                entity,
                connection.client_id,
                LOGIN_TIMED_OUT,
            );
        }
    }
}
