//! The two screens, as Bevy states: the login form, then the chatbox once the server accepts the login.
//! Losing the connection while chatting goes back to the login screen with the reason.

use bevy::prelude::*;

use crate::alert::{AlertSystems, ShowAlert};
use crate::net::LinkEvent;

pub(crate) fn plugin(app: &mut App) {
    app.init_state::<Screen>()
        .add_systems(Update, back_to_login_when_lost.before(AlertSystems));
}

#[derive(States, Default, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Screen {
    #[default]
    Login,
    Chat,
}

fn back_to_login_when_lost(
    mut events: MessageReader<LinkEvent>,
    screen: Res<State<Screen>>,
    mut next: ResMut<NextState<Screen>>,
    mut alerts: MessageWriter<ShowAlert>,
) {
    for event in events.read() {
        if let LinkEvent::Lost(reason) = event
            && *screen.get() == Screen::Chat
        {
            next.set(Screen::Login);
            alerts.write(ShowAlert(reason.clone()));
        }
    }
}
