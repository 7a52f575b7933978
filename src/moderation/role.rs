//! `role NAME player|moderator|admin`: what an account may do. Admins may make players moderators (or
//! take it back), the console anyone anything; the new role holds on every shard at once.

use bevy::prelude::*;

use super::{Change, Changed, store, target};
use crate::commands::store::audit_entry;
use crate::commands::{
    Actor, AppCommands, Args, Call, CommandSpec, CommandStore, Later, Needs, Outcome, Role,
};
use crate::db::DbPool;
use crate::db::queries::Moderation;

pub(super) fn plugin(app: &mut App) {
    app.add_command(
        CommandSpec::new("role", Needs::Admin, "role NAME player|moderator|admin"),
        set_role,
    );
}

/// A parsed `role`.
#[derive(Debug, PartialEq)]
struct SetRole {
    name: String,
    role: Role,
}

impl SetRole {
    fn parse(mut args: Args) -> Result<Self, String> {
        let name = args.name()?;
        let usage = args.usage();
        let role = Role::parse(&args.rest()).ok_or(usage)?;
        Ok(Self { name, role })
    }

    /// On the store thread: stores the role, then the tick applies it.
    fn run(self, pool: &DbPool, actor: &Actor) -> Result<Later, String> {
        if !actor.outranks(self.role) {
            return Err(format!("You cannot make anyone {}", self.role.a()));
        }
        let (account_id, name, _) = target(pool, actor, &self.name)?;
        let entry = audit_entry(actor, "role", &name, self.role.as_str().to_owned());
        let change = Moderation::SetRole(account_id, self.role.as_str());
        store(pool, actor, change, &entry)?;
        info!(by = actor.name(), name, role = %self.role, "role set");
        let answer = format!("{name} is now {}", self.role.a());
        let change = Change::Role {
            account_id,
            role: self.role,
        };
        Ok(Later::answer(answer).then_write(Changed(change)))
    }
}

fn set_role(In(call): In<Call>, store: Res<CommandStore>) -> Outcome {
    let set = SetRole::parse(call.args())?;
    store.later(call.actor.clone(), move |pool, actor| set.run(pool, actor));
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_is_one_of_three_in_any_case() {
        let usage = "role NAME player|moderator|admin";
        assert_eq!(
            SetRole::parse(Args::new("alice MOD", usage)),
            Ok(SetRole {
                name: "alice".into(),
                role: Role::Moderator
            })
        );
        assert_eq!(
            SetRole::parse(Args::new("bob king", usage)),
            Err("Usage: role NAME player|moderator|admin".into())
        );
    }
}
