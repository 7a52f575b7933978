//! The commands' database thread: the audit log of what operators and moderators did, and the jobs of
//! commands that need the database (a ban, a role, a backup). One thread, so jobs run in the order they
//! were given (a ban then an unban stays unbanned). A job's answer comes back to its actor as a
//! [`Reply`] on a later tick, with an optional message for the tick to act on (moderation's changes).

use bevy::prelude::*;
use crossbeam_channel::Receiver;

use super::{Actor, Reply};
use crate::db::models::AuditEntry;
use crate::db::queries::{self, Moderation};
use crate::db::{self, Database, DbPool};
use crate::schedule::ServerSystems;
use crate::time::now_ms;
use crate::worker::{Stop, Worker, stop_at_shutdown};

pub(super) fn plugin(app: &mut App) {
    let pool = app.world().resource::<Database>().pool("commands", 1);
    let (finished_tx, finished) = crossbeam_channel::unbounded();
    let worker = Worker::single("command-store", None, move |jobs: Receiver<Job>, _| {
        for job in jobs {
            if let Some(done) = job(&pool) {
                let _ = finished_tx.send(done);
            }
        }
    });
    app.insert_resource(CommandStore { worker, finished })
        .add_systems(Update, apply_finished.in_set(ServerSystems::Receive));
    stop_at_shutdown::<CommandStore>(app);
}

/// A job for the store thread: what it answers, if anything.
type Job = Box<dyn FnOnce(&DbPool) -> Option<Finished> + Send>;

/// A finished job: the answer for its actor, and what the tick should do.
struct Finished {
    actor: Actor,
    answer: Result<String, String>,
    then: Option<Box<dyn FnOnce(&mut World) + Send>>,
}

/// What a job that succeeded says: the answer, and a message for the tick to act on.
pub struct Later {
    answer: String,
    then: Option<Box<dyn FnOnce(&mut World) + Send>>,
}

impl Later {
    /// Answers `text` to whoever ran the command.
    pub fn answer(text: impl Into<String>) -> Self {
        Self {
            answer: text.into(),
            then: None,
        }
    }

    /// …and writes `message` on the tick that receives the answer (moderation's `Changed`).
    pub fn then_write<M: Message>(mut self, message: M) -> Self {
        self.then = Some(Box::new(move |world: &mut World| {
            world.write_message(message);
        }));
        self
    }
}

/// The store thread (see the module docs).
#[derive(Resource)]
pub struct CommandStore {
    worker: Worker<Job>,
    finished: Receiver<Finished>,
}

impl CommandStore {
    /// Runs `job` on the store thread for `actor`; its [`Later`] (or refusal) is answered to the actor.
    pub fn later(
        &self,
        actor: Actor,
        job: impl FnOnce(&DbPool, &Actor) -> Result<Later, String> + Send + 'static,
    ) {
        self.send(Box::new(move |pool| {
            let (answer, then) = match job(pool, &actor) {
                Ok(Later { answer, then }) => (Ok(answer), then),
                Err(reason) => (Err(reason), None),
            };
            Some(Finished {
                actor,
                answer,
                then,
            })
        }));
    }

    /// Records in the audit log that `actor` did `action` to `target` (an account name, or empty).
    pub fn audit(&self, actor: &Actor, action: &'static str, target: &str, detail: String) {
        let entry = audit_entry(actor, action, target, detail);
        self.send(Box::new(move |pool| {
            if let Err(error) = store(pool, &Moderation::Note, &entry) {
                error!(%error, actor = entry.actor, action, "cannot write the audit log");
            }
            None
        }));
    }

    fn send(&self, job: Job) {
        // The queue is unbounded; it refuses only once the server has stopped.
        let _ = self.worker.send(job);
    }
}

impl Stop for CommandStore {
    fn stop(&mut self) {
        self.worker.stop();
    }
}

/// An audit entry for `actor` doing `action` to `target`, now.
pub fn audit_entry(actor: &Actor, action: &str, target: &str, detail: String) -> AuditEntry {
    AuditEntry {
        at_ms: now_ms() as i64,
        actor: actor.name().to_owned(),
        action: action.to_owned(),
        target: target.to_owned(),
        detail,
    }
}

/// On the store thread: stores `change` with its audit entry in one transaction (for a lift, whether
/// there was something in force to lift).
pub fn store(pool: &DbPool, change: &Moderation, entry: &AuditEntry) -> Result<bool, String> {
    db::with_conn(pool, |conn| queries::moderate(conn, change, entry))
}

/// Answers what the store thread finished.
fn apply_finished(
    mut commands: Commands,
    store: Res<CommandStore>,
    mut replies: MessageWriter<Reply>,
) {
    for Finished {
        actor,
        answer,
        then,
    } in store.finished.try_iter()
    {
        if let Some(then) = then {
            commands.queue(then);
        }
        replies.write(Reply { actor, answer });
    }
}
