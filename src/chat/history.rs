//! Chat history: the last lines in memory (sent to each player after login), and the writer thread that
//! stores every line in the database, batched, off the tick, from a queue of at most `--chat-queue`
//! lines (past it chat is paused rather than memory grown), and deletes lines older than
//! `--chat-retention-days`, a small batch at a time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use crossbeam_channel::Receiver;
use prometheus_client::metrics::histogram::Histogram;

use crate::db::models::ChatMessage;
use crate::db::{self, Database, DbPool, queries};
use crate::metrics;
use crate::protocol::ChatLine;
use crate::time::now_ms;
use crate::worker::{Stop, Stopping, Worker};

/// Most lines the writer stores in one transaction.
const WRITE_BATCH: usize = 512;
/// Most old lines the writer deletes in one transaction (a few milliseconds of lock).
const PRUNE_BATCH: i64 = 1_000;
/// How often the writer deletes lines past `--chat-retention-days`.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The most recent lines, oldest first, as sent to a player after login.
#[derive(Resource, Debug)]
pub struct ChatHistory {
    pub(super) lines: VecDeque<ChatLine>,
    capacity: usize,
}

impl ChatHistory {
    /// Loads the last `capacity` lines from the database (once, at start, before the first tick),
    /// none older than `retention` (the writer deletes those soon after).
    pub fn load(
        db: &Database,
        capacity: usize,
        retention: Option<Duration>,
    ) -> Result<Self, String> {
        let since_ms = retention.map_or(0, retention_cutoff_ms);
        let rows = db::with_connection(db, |conn| {
            queries::recent_chat_messages(conn, capacity as i64, since_ms)
        })?;
        let lines = rows
            .into_iter()
            .map(|row| ChatLine {
                sender: row.sender,
                text: row.body,
                sent_at_ms: row.sent_at_ms as u64,
            })
            .collect();
        Ok(Self { lines, capacity })
    }

    /// Adds a line said here or, with `--bus`, on another shard.
    pub fn push(&mut self, line: ChatLine) {
        if self.capacity == 0 {
            return;
        }
        if self.lines.len() == self.capacity {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }
}

/// The history writer thread.
#[derive(Resource)]
pub struct ChatWriter(Worker<ChatMessage>);

impl ChatWriter {
    /// Starts the writer; with a `retention`, it also deletes older lines at start and every
    /// [`PRUNE_EVERY`].
    pub(super) fn start(
        pool: DbPool,
        retention: Option<Duration>,
        writes: Histogram,
        capacity: usize,
    ) -> Self {
        Self(Worker::single(
            "chat-writer",
            Some(capacity),
            move |lines, stopping| {
                let mut next_prune = Instant::now();
                loop {
                    if let Some(retention) = retention
                        && Instant::now() >= next_prune
                    {
                        prune(&pool, retention, &lines, &stopping);
                        next_prune = Instant::now() + PRUNE_EVERY;
                    }
                    let first = match lines.recv_deadline(next_prune) {
                        Ok(first) => first,
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                    };
                    let mut batch = vec![first];
                    batch.extend(lines.try_iter().take(WRITE_BATCH - 1));
                    metrics::time(&writes, || store(&pool, &batch, &stopping));
                }
            },
        ))
    }

    /// Queues `line` for storage; gives it back if `--chat-queue` lines already wait (or the server
    /// has stopped).
    pub(super) fn write(&self, line: ChatMessage) -> Result<(), ChatMessage> {
        self.0.send(line)
    }

    /// Lines waiting to be stored.
    pub fn queued(&self) -> usize {
        self.0.queued()
    }
}

impl Stop for ChatWriter {
    /// Stores every line still queued, then stops the thread.
    fn stop(&mut self) {
        self.0.stop();
    }
}

/// The server time (ms) before which lines are past `retention`.
fn retention_cutoff_ms(retention: Duration) -> i64 {
    i64::try_from(now_ms().saturating_sub(u64::try_from(retention.as_millis()).unwrap_or(u64::MAX)))
        .unwrap_or(i64::MAX)
}

/// Stores `batch`, waiting for the database if it is away (the lines were already sent to players).
fn store(pool: &DbPool, batch: &[ChatMessage], stopping: &Stopping) {
    db::write_until_done(pool, stopping.flag(), "chat lines", batch.len(), |conn| {
        queries::insert_chat_messages(conn, batch)
    });
}

/// Deletes the lines older than `retention`, [`PRUNE_BATCH`] a transaction, storing the lines that
/// arrive meanwhile between two batches (new lines never wait for the whole prune).
fn prune(pool: &DbPool, retention: Duration, lines: &Receiver<ChatMessage>, stopping: &Stopping) {
    let before_ms = retention_cutoff_ms(retention);
    let mut deleted = 0;
    loop {
        let count = match db::with_conn(pool, |conn| {
            queries::prune_chat_messages(conn, before_ms, PRUNE_BATCH)
        }) {
            Ok(count) => count,
            Err(error) => {
                error!(%error, "could not delete old chat lines");
                return;
            }
        };
        deleted += count;
        if count < PRUNE_BATCH as usize {
            break;
        }
        let waiting: Vec<ChatMessage> = lines.try_iter().take(WRITE_BATCH).collect();
        if !waiting.is_empty() {
            store(pool, &waiting, stopping);
        }
    }
    if deleted > 0 {
        info!(
            deleted,
            older_than_days = retention.as_secs_f64() / 86_400.0,
            "pruned chat history"
        );
    }
}
