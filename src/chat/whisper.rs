//! `/w NAME TEXT` (or `whisper`, `msg`, `tell`): a private line, seen only by its sender and its
//! recipient, on this shard or (with `--bus`) another; and `/who` (or `online`): everyone online, here
//! and on the other shards. A muted player may not whisper.

use bevy::prelude::*;

use crate::commands::{Actor, AppCommands, Args, Call, CommandSpec, Needs, Outcome, answer};
use crate::metrics::Metrics;
use crate::moderation::Sanctions;
use crate::net::{self, Connection, Outbox};
use crate::players::{Elsewhere, Player};
use crate::protocol::{self, ServerMessage, WhisperLine};
use crate::time::now_ms;

pub(super) fn plugin(app: &mut App) {
    app.add_message::<WhisperElsewhere>()
        .add_command(
            CommandSpec::new("who", Needs::Anyone, "who: who is online").aliases(&["online"]),
            who,
        )
        .add_command(
            CommandSpec::new(
                "w",
                Needs::Anyone,
                "w NAME TEXT (or whisper): a private line to NAME",
            )
            .aliases(&["whisper", "msg", "tell"]),
            whisper,
        );
}

/// A whisper for a player on another shard (the bus delivers it there).
#[derive(Message, Debug, Clone)]
pub struct WhisperElsewhere(pub WhisperLine);

/// What the console is told when it tries to whisper.
pub const CONSOLE_CANNOT_WHISPER: &str = "The console cannot whisper: use say";

fn who(In(_): In<Call>, players: Query<&Player>, elsewhere: Res<Elsewhere>) -> Outcome {
    let mut names: Vec<&str> = players.iter().map(|p| p.name.as_str()).collect();
    names.extend(elsewhere.names());
    names.sort_unstable_by_key(|n| n.to_ascii_lowercase());
    answer(format!("{} online: {}", names.len(), names.join(", ")))
}

/// A parsed `w`.
#[derive(Debug, PartialEq)]
struct Whisper {
    to: String,
    text: String,
}

impl Whisper {
    fn parse(mut args: Args) -> Result<Self, String> {
        let to = args.name()?;
        Ok(Self {
            to,
            text: args.text()?,
        })
    }
}

fn whisper(
    In(call): In<Call>,
    mut server: Outbox,
    players: Query<(&Connection, &Player)>,
    sanctions: Res<Sanctions>,
    elsewhere: Res<Elsewhere>,
    mut far: MessageWriter<WhisperElsewhere>,
    metrics: Res<Metrics>,
) -> Outcome {
    let whisper = Whisper::parse(call.args())?;
    let Actor::Player {
        client_id,
        account_id,
        name: from,
        ..
    } = &call.actor
    else {
        return Err(CONSOLE_CANNOT_WHISPER.into());
    };
    let now = now_ms();
    if let Some(mute) = sanctions.mute(*account_id, now) {
        return Err(mute.muted_text(now));
    }
    let here = players
        .iter()
        .find(|(_, p)| p.name.eq_ignore_ascii_case(&whisper.to));
    let (to, to_name) = match here {
        Some((to, player)) => (Some(to.client_id), player.name.clone()),
        // Another shard's player: the bus is there only with `--bus`, and so is `Elsewhere`'s content.
        None => match elsewhere.find(&whisper.to) {
            Some(remote) => (None, remote.to_owned()),
            None => return Err(format!("{} is not online", whisper.to)),
        },
    };
    let line = WhisperLine {
        from: from.clone(),
        to: to_name,
        text: whisper.text,
        sent_at_ms: now,
    };
    let bytes = net::encode(&ServerMessage::Whisper(line.clone()));
    match to {
        Some(to) => server.send_message(to, protocol::CHANNEL, bytes.clone()),
        // The shard where the recipient plays delivers it.
        None => {
            far.write(WhisperElsewhere(line));
        }
    }
    if to != Some(*client_id) {
        server.send_message(*client_id, protocol::CHANNEL, bytes);
    }
    metrics.whispers.inc();
    // The whisper itself is the answer: both ends see it.
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whisper_needs_a_name_and_a_text() {
        let usage = "w NAME TEXT (or whisper): a private line to NAME";
        assert_eq!(
            Whisper::parse(Args::new("Bob  hello there ", usage)),
            Ok(Whisper {
                to: "Bob".into(),
                text: "hello there".into()
            })
        );
        assert_eq!(
            Whisper::parse(Args::new("bob", usage)),
            Err(format!("Usage: {usage}"))
        );
        assert_eq!(
            Whisper::parse(Args::new("../etc x", usage)),
            Err("../etc is not a player name".into())
        );
    }
}
