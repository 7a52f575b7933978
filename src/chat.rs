//! Chat: players' lines checked, stamped with the sender's name and the server's time, broadcast to
//! every player (encoded once), kept in a short in-memory history sent after login, and stored in the
//! database by a writer thread that batches inserts off the tick.

use std::collections::VecDeque;
use std::thread::JoinHandle;

use bevy::prelude::*;
use bevy_renet::RenetServer;
use crossbeam_channel::Sender;

use crate::db::models::ChatMessage;
use crate::db::{Database, DbPool, queries};
use crate::net::{self, Connection, Inbound};
use crate::players::{self, Player};
use crate::protocol::{self, ChatLine, ClientMessage, Request, ServerMessage};
use crate::shutdown::ServerStopping;
use crate::time::now_ms;

/// Most lines the writer stores in one transaction.
const WRITE_BATCH: usize = 512;

pub(crate) fn plugin(app: &mut App) {
    let pool = app.world().resource::<Database>().0.clone();
    app.insert_resource(ChatWriter::start(pool))
        .add_systems(Update, handle_chat)
        .add_observer(send_history)
        .add_observer(flush_writer);
}

/// The most recent lines, oldest first, as sent to a player after login.
#[derive(Resource, Debug)]
pub struct ChatHistory {
    lines: VecDeque<ChatLine>,
    capacity: usize,
}

impl ChatHistory {
    /// Loads the last `capacity` lines from the database (once, at start, before the first tick).
    pub fn load(
        pool: &DbPool,
        capacity: usize,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let rows = queries::recent_chat_messages(&mut *pool.get()?, capacity as i64)?;
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

    fn push(&mut self, line: ChatLine) {
        if self.capacity == 0 {
            return;
        }
        if self.lines.len() == self.capacity {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }
}

/// The history writer thread and the channel to it.
#[derive(Resource)]
pub struct ChatWriter {
    lines: Option<Sender<ChatMessage>>,
    thread: Option<JoinHandle<()>>,
}

impl ChatWriter {
    fn start(pool: DbPool) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded::<ChatMessage>();
        let thread = std::thread::Builder::new()
            .name("chat-writer".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter().take(WRITE_BATCH - 1));
                    let stored = pool.get().map_err(|e| e.to_string()).and_then(|mut conn| {
                        queries::insert_chat_messages(&mut conn, &batch).map_err(|e| e.to_string())
                    });
                    if let Err(error) = stored {
                        error!(%error, lines = batch.len(), "could not store chat history");
                    }
                }
            })
            .expect("spawning the chat writer thread");
        Self {
            lines: Some(tx),
            thread: Some(thread),
        }
    }

    fn write(&self, line: ChatMessage) {
        if let Some(lines) = &self.lines {
            let _ = lines.send(line);
        }
    }

    /// Stores every line still queued, then stops the thread.
    pub fn flush(&mut self) {
        self.lines = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            error!("the chat writer panicked");
        }
    }
}

impl Drop for ChatWriter {
    fn drop(&mut self) {
        self.flush();
    }
}

fn handle_chat(
    mut inbound: MessageReader<Inbound>,
    mut server: ResMut<RenetServer>,
    mut history: ResMut<ChatHistory>,
    writer: Res<ChatWriter>,
    senders: Query<&Player>,
    players: Query<(Entity, &Connection), With<Player>>,
) {
    for Inbound {
        entity,
        client_id,
        message,
    } in inbound.read()
    {
        let ClientMessage::Chat { text } = message else {
            continue;
        };
        let deny = |server: &mut RenetServer, reason: &str| {
            let message = ServerMessage::Denied {
                request: Request::Chat,
                reason: reason.to_owned(),
            };
            net::send(server, *client_id, &message);
        };
        let Ok(player) = senders.get(*entity) else {
            deny(&mut server, "You must log in to chat");
            continue;
        };
        let text = match protocol::clean_chat_text(text) {
            Ok(text) => text.to_owned(),
            Err(reason) => {
                deny(&mut server, reason);
                continue;
            }
        };
        let line = ChatLine {
            sender: player.name.clone(),
            text,
            sent_at_ms: now_ms(),
        };
        let bytes = net::encode(&ServerMessage::Chat(line.clone()));
        players::broadcast(&mut server, players, &bytes, None);
        writer.write(ChatMessage {
            account_id: player.account_id,
            sender: line.sender.clone(),
            body: line.text.clone(),
            sent_at_ms: line.sent_at_ms as i64,
        });
        history.push(line);
    }
}

fn send_history(
    add: On<Add, Player>,
    players: Query<&Connection>,
    history: Res<ChatHistory>,
    mut server: ResMut<RenetServer>,
) {
    if let Ok(connection) = players.get(add.entity) {
        let lines = history.lines.iter().cloned().collect();
        net::send(
            &mut server,
            connection.client_id,
            &ServerMessage::ChatHistory { lines },
        );
    }
}

fn flush_writer(_: On<ServerStopping>, mut writer: ResMut<ChatWriter>) {
    writer.flush();
}
