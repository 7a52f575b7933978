//! `--screenshot PATH`: once the scripted steps are done and the UI has had time to settle, save a PNG of
//! the window and exit.

use std::time::Duration;

use bevy::prelude::*;
use bevy::render::view::screenshot::{Capturing, Screenshot, save_to_disk};

use crate::config::ClientConfig;
use crate::script::Script;

pub(crate) fn plugin(app: &mut App) {
    app.add_systems(Update, take_screenshot);
}

fn take_screenshot(
    mut commands: Commands,
    config: Res<ClientConfig>,
    script: Res<Script>,
    capturing: Query<(), With<Capturing>>,
    mut taken: Local<bool>,
    mut exit: MessageWriter<AppExit>,
) {
    let Some(path) = &config.screenshot else {
        return;
    };
    if *taken {
        if capturing.is_empty() && path.exists() {
            info!(path = %path.display(), "screenshot saved");
            exit.write(AppExit::Success);
        }
        return;
    }
    let settle = Duration::from_secs_f32(config.screenshot_delay.max(0.0));
    if script.done_for.is_some_and(|done| done >= settle) {
        let _ = std::fs::remove_file(path);
        commands
            .spawn(Screenshot::primary_window())
            .observe(save_to_disk(path.clone()));
        *taken = true;
    }
}
