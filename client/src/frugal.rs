//! When the windowed client updates and redraws: not as fast as it can, but when something changed (input,
//! a message from the server, a player drawn between two snapshots), and otherwise at [`NETWORK_HZ`] so
//! the connection keeps ticking; slower still when the window is not focused.

use std::time::Duration;

use bevy::prelude::*;
use bevy::window::RequestRedraw;
use bevy::winit::{UpdateMode, WinitSettings};

use crate::net::{FromServer, FromSnapshot};
use crate::world::{INTERPOLATION_DELAY_MS, WorldView, local_ms};

/// Updates a second while nothing happens: the network's pace (keep-alives, acks, answers).
pub const NETWORK_HZ: u64 = 20;
/// The same while the window is not focused.
pub const UNFOCUSED_HZ: u64 = 4;

pub(crate) fn plugin(app: &mut App) {
    app.insert_resource(WinitSettings {
        focused_mode: UpdateMode::reactive(Duration::from_millis(1000 / NETWORK_HZ)),
        unfocused_mode: UpdateMode::reactive_low_power(Duration::from_millis(1000 / UNFOCUSED_HZ)),
    })
    .add_systems(Last, redraw_while_changing);
}

/// Asks for the next frame at once while something is changing on screen: what the server just said
/// (the screens react to it) or a player still moving between snapshots.
fn redraw_while_changing(
    messages: MessageReader<FromServer>,
    snapshots: MessageReader<FromSnapshot>,
    view: Res<WorldView>,
    mut redraw: MessageWriter<RequestRedraw>,
) {
    if !messages.is_empty() || !snapshots.is_empty() || moving(&view, local_ms()) {
        redraw.write(RequestRedraw);
    }
}

/// Whether a player is drawn between two positions (its newest one is still ahead of the time drawn).
fn moving(view: &WorldView, local_ms: i64) -> bool {
    let drawn_ms = view.server_ms(local_ms) - INTERPOLATION_DELAY_MS;
    view.players.values().any(|seen| {
        seen.track
            .newest()
            .is_some_and(|(at_ms, _)| at_ms > drawn_ms)
    })
}
