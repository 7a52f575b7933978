//! Who runs a command and what it may run: the [`Actor`] (the console, or a player with its [`Role`]),
//! the [`Roles`] of accounts that are more than players, and what a command [`Needs`].

use std::collections::HashMap;

use bevy::prelude::*;
use bevy_renet::renet::ClientId;
use serde::{Deserialize, Serialize};

use crate::db::{self, Database, queries};

/// What an account may do. Ordered: a moderator outranks a player, an admin both.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub enum Role {
    #[default]
    Player,
    Moderator,
    Admin,
}

impl Role {
    /// As stored and typed: `player`, `moderator`, `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Player => "player",
            Role::Moderator => "moderator",
            Role::Admin => "admin",
        }
    }

    /// With its article: `a player`, `a moderator`, `an admin`.
    pub fn a(self) -> &'static str {
        match self {
            Role::Player => "a player",
            Role::Moderator => "a moderator",
            Role::Admin => "an admin",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "player" => Some(Role::Player),
            "moderator" | "mod" => Some(Role::Moderator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The accounts whose role is not `player`, by account id: loaded at start, changed by moderation's
/// `role` command (here and, with `--bus`, on every shard).
#[derive(Resource, Debug, Default)]
pub struct Roles(HashMap<i32, Role>);

impl Roles {
    /// Reads the staff's roles (once, at start, before the first tick).
    pub fn load(db: &Database) -> Result<Self, String> {
        let staff = db::with_connection(db, queries::staff_roles)?;
        let roles = staff
            .into_iter()
            .map(|(account_id, role)| (account_id, Role::parse(&role).unwrap_or_default()))
            .collect();
        Ok(Self(roles))
    }

    pub fn role(&self, account_id: i32) -> Role {
        self.0.get(&account_id).copied().unwrap_or_default()
    }

    pub fn set(&mut self, account_id: i32, role: Role) {
        match role {
            Role::Player => self.0.remove(&account_id),
            role => self.0.insert(account_id, role),
        };
    }
}

/// Who runs a command: the operator at the server's console, or a player in chat.
#[derive(Debug, Clone)]
pub enum Actor {
    Console,
    Player {
        entity: Entity,
        client_id: ClientId,
        account_id: i32,
        name: String,
        role: Role,
    },
}

impl Actor {
    /// As the audit log and the players it acts on name it.
    pub fn name(&self) -> &str {
        match self {
            Actor::Console => "console",
            Actor::Player { name, .. } => name,
        }
    }

    /// Whether this actor may act on an account of `role`: the console on anyone, a player only on
    /// lower roles (a moderator on players, an admin on players and moderators).
    pub fn outranks(&self, role: Role) -> bool {
        match self {
            Actor::Console => true,
            Actor::Player { role: mine, .. } => *mine > role,
        }
    }

    /// Whether this actor may run a command that needs `needs`.
    pub fn may(&self, needs: Needs) -> bool {
        match self {
            Actor::Console => true,
            Actor::Player { role, .. } => match needs {
                Needs::Anyone => true,
                Needs::Moderator => *role >= Role::Moderator,
                Needs::Admin => *role >= Role::Admin,
                Needs::Console => false,
            },
        }
    }
}

/// What a moderator refused for rank is told.
pub const OUTRANKED: &str = "You cannot do that to a moderator or an admin";

/// Who may run a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Needs {
    Anyone,
    Moderator,
    Admin,
    Console,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn player(role: Role) -> Actor {
        Actor::Player {
            entity: Entity::PLACEHOLDER,
            client_id: 1,
            account_id: 1,
            name: "a".into(),
            role,
        }
    }

    #[test]
    fn players_may_run_what_their_role_allows() {
        assert!(player(Role::Player).may(Needs::Anyone));
        assert!(!player(Role::Player).may(Needs::Moderator));
        assert!(player(Role::Moderator).may(Needs::Moderator));
        assert!(!player(Role::Moderator).may(Needs::Admin));
        assert!(!player(Role::Admin).may(Needs::Console));
        assert!(Actor::Console.may(Needs::Console));
        assert!(player(Role::Admin).outranks(Role::Moderator));
        assert!(!player(Role::Moderator).outranks(Role::Moderator));
    }
}
