//! Keyboard focus among text inputs: exactly one field takes keys (the one clicked, or reached with Tab),
//! none while an alert is open; the focused field's border is highlighted.

use bevy::prelude::*;
use bevy_simple_text_input::{TextInput, TextInputInactive, TextInputSystem};

use crate::alert::Alerts;
use crate::theme;

pub(crate) fn plugin(app: &mut App) {
    app.init_resource::<Focus>().add_systems(
        Update,
        (focus_on_click, tab_to_next, apply_focus)
            .chain()
            .before(TextInputSystem),
    );
}

/// The field that takes keys.
#[derive(Resource, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Focus(pub Option<Entity>);

/// Where Tab goes: fields are visited in increasing `TabOrder`.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TabOrder(pub u8);

fn focus_on_click(
    mut focus: ResMut<Focus>,
    fields: Query<(Entity, &Interaction), (Changed<Interaction>, With<TextInput>)>,
) {
    for (entity, interaction) in &fields {
        if *interaction == Interaction::Pressed {
            focus.0 = Some(entity);
        }
    }
}

fn tab_to_next(
    mut focus: ResMut<Focus>,
    keys: Option<Res<ButtonInput<KeyCode>>>,
    fields: Query<(Entity, &TabOrder), With<TextInput>>,
) {
    if !keys.as_ref().is_some_and(|k| k.just_pressed(KeyCode::Tab)) {
        return;
    }
    let back = keys.is_some_and(|k| k.any_pressed([KeyCode::ShiftLeft, KeyCode::ShiftRight]));
    focus.0 = next_field(focus.0, &fields.iter().collect::<Vec<_>>(), back);
}

/// The field after (or before) `current` in tab order, wrapping around.
pub fn next_field(
    current: Option<Entity>,
    fields: &[(Entity, &TabOrder)],
    back: bool,
) -> Option<Entity> {
    let mut order: Vec<_> = fields.iter().map(|(e, o)| (**o, *e)).collect();
    order.sort();
    if back {
        order.reverse();
    }
    let at = current.and_then(|c| order.iter().position(|(_, e)| *e == c));
    match at {
        Some(i) => order.get((i + 1) % order.len()).map(|(_, e)| *e),
        None => order.first().map(|(_, e)| *e),
    }
}

fn apply_focus(
    focus: Res<Focus>,
    alerts: Res<Alerts>,
    mut fields: Query<(Entity, &mut TextInputInactive, &mut BorderColor), With<TextInput>>,
) {
    for (entity, mut inactive, mut border) in &mut fields {
        let active = !alerts.is_open() && focus.0 == Some(entity);
        if inactive.0 == active {
            inactive.0 = !active;
        }
        let color = if focus.0 == Some(entity) {
            theme::FIELD_FOCUS
        } else {
            theme::FIELD_BORDER
        };
        if border.top != color {
            *border = BorderColor::all(color);
        }
    }
}
