//! The chatbox, like the Godot tutorial's: a scrolling log of `NAME says: "TEXT"` lines (newest at the
//! bottom), join and leave lines, the server's own lines and whispers each styled apart, the online list
//! beside it, and an input line that sends
//! on Enter and clears. What the server sends is collected in [`ChatLog`] whatever the screen, so nothing
//! that arrives with the login answer is missed; the widgets show it.

use std::collections::VecDeque;

use bevy::input::mouse::{MouseScrollUnit, MouseWheel};
use bevy::prelude::*;
use bevy_simple_text_input::{TextInputSettings, TextInputSubmitMessage, TextInputSystem};
use mmo::protocol::{ChatLine, ClientMessage, MAX_CHAT_CHARS, Request, ServerMessage, WhisperLine};

use crate::focus::{Focus, TabOrder};
use crate::net::{FromServer, ToServer};
use crate::screens::Screen;
use crate::theme::{self, Theme};

/// Lines kept in the log; older ones scroll away for good.
pub const MAX_LOG_LINES: usize = 500;

pub(crate) fn plugin(app: &mut App) {
    app.init_resource::<ChatLog>()
        .add_systems(PreUpdate, collect.after(bevy_renet::RenetReceive))
        .add_systems(OnEnter(Screen::Chat), spawn_chatbox)
        .add_systems(
            Update,
            (
                send_on_enter.after(TextInputSystem),
                show_new_lines,
                show_online,
            )
                .chain()
                .run_if(in_state(Screen::Chat)),
        );
}

/// How a log line looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// `NAME says: "TEXT"`.
    Chat,
    /// A line from before this login.
    History,
    /// Someone joined or left.
    Presence,
    /// The server refused something we sent.
    Refused,
    /// A line from the server itself: an announcement, a countdown, the answer to a `/command`.
    System,
    /// A private line to or from this player.
    Whisper,
}

/// One line of the log, as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub seq: u64,
    pub kind: LineKind,
    pub text: String,
}

/// What the chatbox shows.
#[derive(Resource, Debug, Default)]
pub struct ChatLog {
    pub me: Option<String>,
    pub lines: VecDeque<LogLine>,
    pub online: Vec<String>,
    next_seq: u64,
}

impl ChatLog {
    fn push(&mut self, kind: LineKind, text: String) {
        self.lines.push_back(LogLine {
            seq: self.next_seq,
            kind,
            text,
        });
        self.next_seq += 1;
        while self.lines.len() > MAX_LOG_LINES {
            self.lines.pop_front();
        }
    }

    /// The texts, oldest first.
    pub fn texts(&self) -> Vec<&str> {
        self.lines.iter().map(|l| l.text.as_str()).collect()
    }
}

/// How a chat line reads: `NAME says: "TEXT"`.
pub fn says(line: &ChatLine) -> String {
    format!("{} says: \"{}\"", line.sender, line.text)
}

/// How a whisper reads: `NAME whispers: "TEXT"`, or `To NAME: "TEXT"` for one this player sent.
pub fn whispers(line: &WhisperLine, me: Option<&str>) -> String {
    if me == Some(line.from.as_str()) {
        format!("To {}: \"{}\"", line.to, line.text)
    } else {
        format!("{} whispers: \"{}\"", line.from, line.text)
    }
}

fn collect(mut inbox: MessageReader<FromServer>, mut log: ResMut<ChatLog>) {
    for FromServer(message) in inbox.read() {
        match message {
            ServerMessage::LoggedIn { name } => {
                *log = ChatLog {
                    me: Some(name.clone()),
                    next_seq: log.next_seq,
                    ..default()
                };
            }
            ServerMessage::ChatHistory { lines } => {
                for line in lines {
                    log.push(LineKind::History, says(line));
                }
            }
            ServerMessage::Chat(line) => log.push(LineKind::Chat, says(line)),
            ServerMessage::OnlinePlayers { names } => log.online = names.clone(),
            ServerMessage::PlayerJoined { name } => {
                if !log.online.contains(name) {
                    log.online.push(name.clone());
                    log.online.sort_by_key(|n| n.to_lowercase());
                }
                log.push(LineKind::Presence, format!("{name} joined"));
            }
            ServerMessage::PlayerLeft { name } => {
                log.online.retain(|n| n != name);
                log.push(LineKind::Presence, format!("{name} left"));
            }
            ServerMessage::Denied {
                request: Request::Chat | Request::Command,
                reason,
            } => log.push(LineKind::Refused, reason.clone()),
            ServerMessage::System { text } => log.push(LineKind::System, text.clone()),
            ServerMessage::Whisper(line) => {
                let text = whispers(line, log.me.as_deref());
                log.push(LineKind::Whisper, text);
            }
            _ => {}
        }
    }
}

#[derive(Component)]
pub struct LogView;
#[derive(Component)]
pub struct LogEntry(pub u64);
#[derive(Component)]
pub struct OnlineList;
#[derive(Component)]
pub struct ChatInput;
/// The column beside the log: the online list (token mode adds its "Log out" button at the bottom).
#[derive(Component)]
pub struct Sidebar;

fn spawn_chatbox(mut commands: Commands, theme: Res<Theme>, mut focus: ResMut<Focus>) {
    let input = commands
        .spawn((
            ChatInput,
            TabOrder(0),
            theme.text_field(
                18.0,
                0.0,
                TextInputSettings {
                    mask_character: None,
                    retain_on_submit: false,
                    max_length: Some(MAX_CHAT_CHARS as u16),
                },
            ),
        ))
        .id();
    focus.0 = Some(input);
    let log = commands
        .spawn((
            LogView,
            Node {
                flex_direction: FlexDirection::Column,
                flex_grow: 1.0,
                min_height: px(0),
                overflow: Overflow::scroll_y(),
                padding: UiRect::all(px(8)),
                row_gap: px(2),
                ..default()
            },
            BackgroundColor(theme::FIELD),
            ScrollPosition::default(),
        ))
        .id();
    let field = crate::world::spawn_field(&mut commands);
    let left = commands
        .spawn(Node {
            flex_direction: FlexDirection::Column,
            flex_grow: 1.0,
            row_gap: px(8),
            ..default()
        })
        .add_children(&[field, log, input])
        .id();
    let right = commands
        .spawn((
            Sidebar,
            Node {
                flex_direction: FlexDirection::Column,
                width: px(200),
                padding: UiRect::all(px(8)),
                row_gap: px(6),
                ..default()
            },
            BackgroundColor(theme::PANEL),
            children![
                theme.text("Online", 18.0, theme::MUTED),
                (OnlineList, theme.text("", 18.0, theme::TEXT))
            ],
        ))
        .id();
    commands
        .spawn((
            DespawnOnExit(Screen::Chat),
            Node {
                width: percent(100),
                height: percent(100),
                padding: UiRect::all(px(12)),
                column_gap: px(12),
                ..default()
            },
            BackgroundColor(theme::BACKGROUND),
        ))
        .add_children(&[left, right]);
}

fn send_on_enter(
    mut submits: MessageReader<TextInputSubmitMessage>,
    mut outbox: MessageWriter<ToServer>,
    input: Query<(), With<ChatInput>>,
) {
    for submit in submits.read() {
        if input.contains(submit.entity) && !submit.value.trim().is_empty() {
            outbox.write(ToServer(ClientMessage::Chat {
                text: submit.value.clone(),
            }));
        }
    }
}

/// Appends the lines the view does not show yet, drops the ones the log dropped, and keeps the view
/// scrolled to the newest line.
fn show_new_lines(
    mut commands: Commands,
    log: Res<ChatLog>,
    theme: Res<Theme>,
    mut view: Query<(Entity, &mut ScrollPosition), With<LogView>>,
    shown: Query<(Entity, &LogEntry)>,
) {
    let Ok((view, mut scroll)) = view.single_mut() else {
        return;
    };
    let oldest = log.lines.front().map_or(u64::MAX, |l| l.seq);
    let mut newest_shown = None;
    for (entity, entry) in &shown {
        if entry.0 < oldest {
            commands.entity(entity).despawn();
        }
        newest_shown = newest_shown.max(Some(entry.0));
    }
    let mut added = false;
    for line in log
        .lines
        .iter()
        .filter(|l| newest_shown.is_none_or(|n| l.seq > n))
    {
        let color = match line.kind {
            LineKind::Chat => theme::TEXT,
            LineKind::History => theme::MUTED,
            LineKind::Presence => theme::NOTICE,
            LineKind::Refused => theme::ERROR,
            LineKind::System => theme::SYSTEM,
            LineKind::Whisper => theme::WHISPER,
        };
        let entry = commands
            .spawn((
                LogEntry(line.seq),
                theme.text(line.text.clone(), 18.0, color),
            ))
            .id();
        commands.entity(view).add_child(entry);
        added = true;
    }
    if added {
        // Layout clamps this to the real bottom.
        scroll.y = f32::MAX;
    }
}

/// Mouse-wheel scrolling of the log (windowed only: it needs the input and layout plugins).
pub(crate) fn wheel_plugin(app: &mut App) {
    app.add_systems(Update, scroll_with_wheel.run_if(in_state(Screen::Chat)))
        .add_systems(PostUpdate, sync_scroll.after(bevy::ui::UiSystems::Layout));
}

fn scroll_with_wheel(
    mut wheel: MessageReader<MouseWheel>,
    mut view: Query<&mut ScrollPosition, With<LogView>>,
) {
    let Ok(mut scroll) = view.single_mut() else {
        return;
    };
    for event in wheel.read() {
        let lines = match event.unit {
            MouseScrollUnit::Line => event.y * 24.0,
            MouseScrollUnit::Pixel => event.y,
        };
        scroll.y -= lines;
    }
}

/// Layout clamps the scroll offset without writing it back; do that, so the wheel moves from where the
/// view really is (after "jump to the bottom" asked for `f32::MAX`).
fn sync_scroll(mut view: Query<(&mut ScrollPosition, &ComputedNode), With<LogView>>) {
    for (mut scroll, node) in &mut view {
        let real = node.scroll_position * node.inverse_scale_factor;
        if scroll.0 != real {
            scroll.0 = real;
        }
    }
}

fn show_online(log: Res<ChatLog>, mut list: Query<&mut Text, With<OnlineList>>) {
    let Ok(mut text) = list.single_mut() else {
        return;
    };
    let names = log.online.join("\n");
    if text.0 != names {
        text.0 = names;
    }
}
