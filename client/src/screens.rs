//! The two screens, as Bevy states: the login form, then the chatbox once the server accepts the login.
//! Losing the connection while chatting goes back to the login screen with the reason, unless token
//! mode is reconnecting ([`Reconnecting`]).

use std::time::Instant;

use bevy::prelude::*;

use crate::alert::{AlertSystems, ShowAlert};
use crate::net::LinkEvent;

pub(crate) fn plugin(app: &mut App) {
    app.init_state::<Screen>()
        .add_systems(Update, back_to_login_when_lost.before(AlertSystems));
}

/// While it exists, a lost connection keeps the chatbox: token mode is getting a new connect token for
/// the same session (to the shard when it is back, or another) since `since`.
#[derive(Resource, Debug, Clone, Copy)]
pub struct Reconnecting {
    pub since: Instant,
    /// When to ask the login server again.
    pub next_try: Instant,
}

#[derive(States, Default, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Screen {
    #[default]
    Login,
    Chat,
}

pub(crate) fn back_to_login_when_lost(
    mut events: MessageReader<LinkEvent>,
    screen: Res<State<Screen>>,
    mut next: ResMut<NextState<Screen>>,
    mut alerts: MessageWriter<ShowAlert>,
    reconnecting: Option<Res<Reconnecting>>,
) {
    for event in events.read() {
        if let LinkEvent::Lost(reason) = event
            && *screen.get() == Screen::Chat
            && reconnecting.is_none()
        {
            next.set(Screen::Login);
            alerts.write(ShowAlert(reason.clone()));
        }
    }
}
