//! When the windowed client updates and redraws: not as fast as it can, but when something changed (input,
//! a message from the server), at [`ANIMATION_HZ`] while a player is drawn between two snapshots, and
//! otherwise at [`NETWORK_HZ`] so the connection keeps ticking; slower still when the window is not
//! focused.

use std::time::Duration;

use bevy::prelude::*;
use bevy::window::RequestRedraw;
use bevy::winit::{UpdateMode, WinitSettings};

use crate::net::FromServer;
use crate::world::{INTERPOLATION_DELAY_MS, WorldView, local_ms};

/// Updates a second while nothing happens: the network's pace (keep-alives, acks, answers).
pub const NETWORK_HZ: u64 = 20;
/// Frames a second while players move on screen: smooth, and no faster than a common display (where
/// nothing caps the frame rate, such as a software renderer without vsync, it would otherwise be as fast
/// as the machine can draw).
pub const ANIMATION_HZ: u64 = 60;
/// Updates a second while the window is not focused.
pub const UNFOCUSED_HZ: u64 = 4;

pub(crate) fn plugin(app: &mut App) {
    app.insert_resource(WinitSettings {
        focused_mode: UpdateMode::reactive(Duration::from_millis(1000 / NETWORK_HZ)),
        unfocused_mode: UpdateMode::reactive_low_power(Duration::from_millis(1000 / UNFOCUSED_HZ)),
    })
    .add_systems(Last, (redraw_after_messages, animate_while_moving));
}

/// Asks for the next frame at once after the server said something: the screens react to it.
fn redraw_after_messages(
    messages: MessageReader<FromServer>,
    mut redraw: MessageWriter<RequestRedraw>,
) {
    if !messages.is_empty() {
        redraw.write(RequestRedraw);
    }
}

/// Updates at [`ANIMATION_HZ`] while a player is still moving between snapshots, at [`NETWORK_HZ`]
/// otherwise.
fn animate_while_moving(view: Res<WorldView>, mut settings: ResMut<WinitSettings>) {
    let hz = if moving(&view, local_ms()) {
        ANIMATION_HZ
    } else {
        NETWORK_HZ
    };
    let mode = UpdateMode::reactive(Duration::from_millis(1000 / hz));
    if settings.focused_mode != mode {
        settings.focused_mode = mode;
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
