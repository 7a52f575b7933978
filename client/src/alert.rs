//! Alerts: what the server says, shown in a modal box the player dismisses (OK, Enter or Escape), like
//! the Godot client's `OS.alert`. Alerts queue: one shows at a time.

use std::collections::VecDeque;

use bevy::prelude::*;
use bevy_simple_text_input::TextInputSystem;

use crate::theme::{self, Theme};

pub(crate) fn plugin(app: &mut App) {
    app.init_resource::<Alerts>()
        .add_message::<ShowAlert>()
        .add_message::<DismissAlert>()
        // After the text inputs: the Enter that closes an alert must not also submit a field (fields are
        // inactive while an alert is open, see `focus`).
        .add_systems(
            Update,
            (queue_alerts, dismiss_alerts, show_front_alert)
                .chain()
                .in_set(AlertSystems)
                .after(TextInputSystem),
        );
}

/// The alert systems: screens that raise alerts run before them, so an alert opens in the frame it is
/// raised; the scripted mode runs after them.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub struct AlertSystems;

/// Show this text in an alert.
#[derive(Message, Debug, Clone)]
pub struct ShowAlert(pub String);

/// Close the alert that is showing (the OK button, Enter and Escape write this).
#[derive(Message, Debug, Clone, Default)]
pub struct DismissAlert;

/// The alerts waiting, the first of them on screen.
#[derive(Resource, Debug, Default)]
pub struct Alerts {
    queue: VecDeque<String>,
    shown: Option<Entity>,
}

impl Alerts {
    /// The text on screen, if an alert is open.
    pub fn current(&self) -> Option<&str> {
        self.queue.front().map(String::as_str)
    }

    pub fn is_open(&self) -> bool {
        !self.queue.is_empty()
    }
}

#[derive(Component)]
struct AlertOk;

fn queue_alerts(mut shows: MessageReader<ShowAlert>, mut alerts: ResMut<Alerts>) {
    for ShowAlert(text) in shows.read() {
        info!(alert = %text);
        alerts.queue.push_back(text.clone());
    }
}

fn dismiss_alerts(
    mut commands: Commands,
    mut alerts: ResMut<Alerts>,
    mut dismissals: MessageReader<DismissAlert>,
    keys: Option<Res<ButtonInput<KeyCode>>>,
    ok: Query<&Interaction, (Changed<Interaction>, With<AlertOk>)>,
) {
    let key = keys.is_some_and(|k| {
        k.any_just_pressed([KeyCode::Enter, KeyCode::NumpadEnter, KeyCode::Escape])
    });
    let clicked = ok.iter().any(|i| *i == Interaction::Pressed);
    let dismissed = dismissals.read().count() > 0;
    if alerts.is_open() && (key || clicked || dismissed) {
        alerts.queue.pop_front();
        if let Some(shown) = alerts.shown.take() {
            commands.entity(shown).despawn();
        }
    }
}

fn show_front_alert(mut commands: Commands, mut alerts: ResMut<Alerts>, theme: Res<Theme>) {
    if alerts.shown.is_some() {
        return;
    }
    let Some(text) = alerts.queue.front().cloned() else {
        return;
    };
    let overlay = commands
        .spawn((
            Node {
                position_type: PositionType::Absolute,
                width: percent(100),
                height: percent(100),
                justify_content: JustifyContent::Center,
                align_items: AlignItems::Center,
                ..default()
            },
            BackgroundColor(Color::srgba(0.0, 0.0, 0.0, 0.6)),
            GlobalZIndex(100),
            children![(
                Node {
                    flex_direction: FlexDirection::Column,
                    align_items: AlignItems::Center,
                    row_gap: px(16),
                    padding: UiRect::all(px(24)),
                    max_width: percent(70),
                    border: UiRect::all(px(1)),
                    border_radius: BorderRadius::all(px(8)),
                    ..default()
                },
                BackgroundColor(theme::PANEL),
                BorderColor::all(theme::FIELD_BORDER),
                children![
                    theme.text(text, 20.0, theme::TEXT),
                    theme.button("OK", AlertOk)
                ],
            )],
        ))
        .id();
    alerts.shown = Some(overlay);
}
