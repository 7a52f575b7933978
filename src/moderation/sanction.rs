//! `ban NAME [DURATION] [REASON]`, `unban NAME`, `mute NAME DURATION [REASON]`, `unmute NAME`:
//! sanctions stored with their audit entry on the commands' store thread, then enforced on every shard
//! (a [`Change`]). A ban kicks the player and revokes its sessions; a mute stops its chat and whispers.

use std::time::Duration;

use bevy::prelude::*;

use super::{Change, Changed, Sanction, SanctionKind, store, target};
use crate::commands::store::audit_entry;
use crate::commands::{
    Actor, AppCommands, Args, Call, CommandSpec, CommandStore, Later, Needs, Outcome,
};
use crate::db::DbPool;
use crate::db::models::SanctionRow;
use crate::db::queries::Moderation;
use crate::time::{format_duration, now_ms};

pub(super) fn plugin(app: &mut App) {
    app.add_command(
        CommandSpec::new(
            "ban",
            Needs::Moderator,
            "ban NAME [DURATION] [REASON]: DURATION like 30m, 2h, 7d; none: until unban",
        ),
        ban,
    )
    .add_command(
        CommandSpec::new("unban", Needs::Moderator, "unban NAME"),
        unban,
    )
    .add_command(
        CommandSpec::new("mute", Needs::Moderator, "mute NAME DURATION [REASON]"),
        mute,
    )
    .add_command(
        CommandSpec::new("unmute", Needs::Moderator, "unmute NAME"),
        unmute,
    );
}

/// A parsed `ban` or `mute`.
#[derive(Debug, PartialEq)]
struct Impose {
    kind: SanctionKind,
    name: String,
    /// `None`: until lifted (bans only).
    duration: Option<Duration>,
    reason: String,
}

impl Impose {
    fn parse(kind: SanctionKind, mut args: Args) -> Result<Self, String> {
        let name = args.name()?;
        let duration = match kind {
            SanctionKind::Ban => args.optional_duration(),
            SanctionKind::Mute => Some(args.duration()?),
        };
        Ok(Self {
            kind,
            name,
            duration,
            reason: args.rest(),
        })
    }

    /// On the store thread: stores it, then the tick enforces it.
    fn run(self, pool: &DbPool, actor: &Actor) -> Result<Later, String> {
        let (account_id, name, _) = target(pool, actor, &self.name)?;
        let now = now_ms();
        let until_ms = self.duration.map(|d| now + d.as_millis() as u64);
        let row = SanctionRow {
            account_id,
            kind: self.kind.as_str().to_owned(),
            until_ms: until_ms.map(|ms| ms as i64),
            reason: self.reason.clone(),
            by_name: actor.name().to_owned(),
            created_at_ms: now as i64,
        };
        let mut detail = match self.duration {
            Some(d) => format!("for {}", format_duration(d)),
            None => "until lifted".to_owned(),
        };
        if !self.reason.is_empty() {
            detail += &format!(": {}", self.reason);
        }
        let entry = audit_entry(actor, self.kind.as_str(), &name, detail);
        store(pool, actor, Moderation::Sanction(row), &entry)?;
        let sanction = Sanction {
            until_ms,
            reason: self.reason,
        };
        info!(by = actor.name(), name, until = ?sanction.until_ms, reason = sanction.reason, "{}", self.kind.past());
        let answer = match self.kind {
            SanctionKind::Ban => format!("{name} is banned {}", sanction.until()),
            SanctionKind::Mute => {
                let left = super::left(until_ms.unwrap_or(now), now);
                format!("{name} is muted for {}", format_duration(left))
            }
        };
        let answer = sanction.with_reason(answer);
        let change = Change::Sanctioned {
            account_id,
            kind: self.kind,
            sanction,
        };
        Ok(Later::answer(answer).then_write(Changed(change)))
    }
}

/// A parsed `unban` or `unmute`.
#[derive(Debug, PartialEq)]
struct Lift {
    kind: SanctionKind,
    name: String,
}

impl Lift {
    fn parse(kind: SanctionKind, mut args: Args) -> Result<Self, String> {
        Ok(Self {
            kind,
            name: args.name()?,
        })
    }

    fn run(self, pool: &DbPool, actor: &Actor) -> Result<Later, String> {
        let (account_id, name, _) = target(pool, actor, &self.name)?;
        let action = match self.kind {
            SanctionKind::Ban => "unban",
            SanctionKind::Mute => "unmute",
        };
        let entry = audit_entry(actor, action, &name, String::new());
        let lift = Moderation::Lift(account_id, self.kind.as_str());
        let was_in_force = store(pool, actor, lift, &entry)?;
        info!(by = actor.name(), name, kind = self.kind.as_str(), "lifted");
        let word = self.kind.past();
        let answer = if was_in_force {
            format!("{name} is no longer {word}")
        } else {
            format!("{name} was not {word}")
        };
        let change = Change::Lifted {
            account_id,
            kind: self.kind,
        };
        Ok(Later::answer(answer).then_write(Changed(change)))
    }
}

fn impose(kind: SanctionKind, call: &Call, store: &CommandStore) -> Outcome {
    let impose = Impose::parse(kind, call.args())?;
    store.later(call.actor.clone(), move |pool, actor| {
        impose.run(pool, actor)
    });
    Ok(None)
}

fn lift(kind: SanctionKind, call: &Call, store: &CommandStore) -> Outcome {
    let lift = Lift::parse(kind, call.args())?;
    store.later(call.actor.clone(), move |pool, actor| lift.run(pool, actor));
    Ok(None)
}

fn ban(In(call): In<Call>, store: Res<CommandStore>) -> Outcome {
    impose(SanctionKind::Ban, &call, &store)
}

fn mute(In(call): In<Call>, store: Res<CommandStore>) -> Outcome {
    impose(SanctionKind::Mute, &call, &store)
}

fn unban(In(call): In<Call>, store: Res<CommandStore>) -> Outcome {
    lift(SanctionKind::Ban, &call, &store)
}

fn unmute(In(call): In<Call>, store: Res<CommandStore>) -> Outcome {
    lift(SanctionKind::Mute, &call, &store)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BAN: &str = "ban NAME [DURATION] [REASON]";
    const MUTE: &str = "mute NAME DURATION [REASON]";

    #[test]
    fn a_ban_may_last_until_lifted_and_a_mute_may_not() {
        assert_eq!(
            Impose::parse(SanctionKind::Ban, Args::new("bob 2h spamming links", BAN)),
            Ok(Impose {
                kind: SanctionKind::Ban,
                name: "bob".into(),
                duration: Some(Duration::from_secs(7_200)),
                reason: "spamming links".into()
            })
        );
        assert_eq!(
            Impose::parse(SanctionKind::Ban, Args::new("bob spamming", BAN)),
            Ok(Impose {
                kind: SanctionKind::Ban,
                name: "bob".into(),
                duration: None,
                reason: "spamming".into()
            })
        );
        for line in ["bob", "bob forever", "bob 99999999999999999999d"] {
            assert_eq!(
                Impose::parse(SanctionKind::Mute, Args::new(line, MUTE)),
                Err("Usage: mute NAME DURATION [REASON]".into()),
                "{line}"
            );
        }
        assert_eq!(
            Lift::parse(SanctionKind::Ban, Args::new("../../etc", "unban NAME")),
            Err("../../etc is not a player name".into())
        );
    }
}
