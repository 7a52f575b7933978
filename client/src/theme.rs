//! The look: the font (shipped under the top-level `assets/`, it covers Latin, Greek and Cyrillic),
//! sizes and colours, and helpers that build styled text and buttons.

use bevy::prelude::*;
use bevy_simple_text_input::{
    TextInput, TextInputInactive, TextInputSettings, TextInputTextColor, TextInputTextFont,
};

/// The font, relative to the assets folder.
pub const FONT_PATH: &str = "fonts/DejaVuSans.ttf";

pub const BACKGROUND: Color = Color::srgb(0.11, 0.12, 0.15);
pub const PANEL: Color = Color::srgb(0.17, 0.18, 0.22);
pub const FIELD: Color = Color::srgb(0.08, 0.09, 0.11);
pub const FIELD_BORDER: Color = Color::srgb(0.32, 0.34, 0.40);
pub const FIELD_FOCUS: Color = Color::srgb(0.45, 0.62, 0.95);
pub const TEXT: Color = Color::srgb(0.92, 0.93, 0.95);
pub const MUTED: Color = Color::srgb(0.60, 0.63, 0.70);
pub const NOTICE: Color = Color::srgb(0.95, 0.80, 0.35);
pub const ERROR: Color = Color::srgb(0.95, 0.45, 0.42);
/// The server's own lines (announcements, answers to commands).
pub const SYSTEM: Color = Color::srgb(0.45, 0.85, 0.90);
/// Whispers, to and from this player.
pub const WHISPER: Color = Color::srgb(0.85, 0.60, 0.95);
pub const BUTTON: Color = Color::srgb(0.26, 0.40, 0.70);
pub const BUTTON_HOVER: Color = Color::srgb(0.32, 0.48, 0.82);
pub const BUTTON_PRESSED: Color = Color::srgb(0.20, 0.32, 0.58);
pub const BUTTON_DISABLED: Color = Color::srgb(0.25, 0.27, 0.31);

pub(crate) fn plugin(app: &mut App) {
    app.init_resource::<Theme>()
        .add_systems(PostUpdate, button_colors);
}

/// The loaded font (a default handle in headless apps without an asset server).
#[derive(Resource, Debug, Clone)]
pub struct Theme {
    pub font: Handle<Font>,
}

impl FromWorld for Theme {
    fn from_world(world: &mut World) -> Self {
        let font = world
            .get_resource::<AssetServer>()
            .map(|assets| assets.load(FONT_PATH))
            .unwrap_or_default();
        Self { font }
    }
}

impl Theme {
    pub fn font(&self, size: f32) -> TextFont {
        TextFont {
            font: self.font.clone().into(),
            font_size: FontSize::Px(size),
            ..default()
        }
    }

    /// A text node in the theme's font.
    pub fn text(
        &self,
        text: impl Into<String>,
        size: f32,
        color: Color,
    ) -> (Text, TextFont, TextColor) {
        (Text::new(text), self.font(size), TextColor(color))
    }

    /// A button with a label; `marker` tells which button it is.
    pub fn button<M: Component>(&self, label: &str, marker: M) -> impl Bundle + use<M> {
        (
            Button,
            marker,
            Node {
                padding: UiRect::axes(px(18), px(8)),
                border: UiRect::all(px(1)),
                border_radius: BorderRadius::all(px(6)),
                justify_content: JustifyContent::Center,
                ..default()
            },
            BackgroundColor(BUTTON),
            BorderColor::all(FIELD_BORDER),
            children![self.text(label, 18.0, TEXT)],
        )
    }
}

impl Theme {
    /// A one-line text input in the theme (it takes keys only while focused, see `focus`).
    pub fn text_field(
        &self,
        size: f32,
        flex_grow: f32,
        settings: TextInputSettings,
    ) -> impl Bundle + use<> {
        (
            TextInput,
            settings,
            TextInputTextFont(self.font(size)),
            TextInputTextColor(TextColor(TEXT)),
            TextInputInactive(true),
            Node {
                flex_grow,
                padding: UiRect::axes(px(8), px(6)),
                border: UiRect::all(px(1)),
                border_radius: BorderRadius::all(px(4)),
                ..default()
            },
            BackgroundColor(FIELD),
            BorderColor::all(FIELD_BORDER),
        )
    }
}

/// Colours buttons by their state: hovered, pressed, or disabled.
pub(crate) fn button_colors(
    mut buttons: Query<(&Interaction, Has<Disabled>, &mut BackgroundColor), With<Button>>,
) {
    for (interaction, disabled, mut background) in &mut buttons {
        let color = match (disabled, interaction) {
            (true, _) => BUTTON_DISABLED,
            (false, Interaction::Pressed) => BUTTON_PRESSED,
            (false, Interaction::Hovered) => BUTTON_HOVER,
            (false, Interaction::None) => BUTTON,
        };
        if background.0 != color {
            background.0 = color;
        }
    }
}

/// A button that ignores presses (while a request is in flight).
#[derive(Component, Debug, Default)]
pub struct Disabled;
