//! What the server writes to its log, and how much of it a remote party can cause.
//!
//! [`plugin`] is Bevy's `LogPlugin` as the server wants it: text (the default) or one JSON object a
//! line (`--log-format json`, for a log pipeline), with renetcode's per-datagram errors off and rustls'
//! per-handshake warnings ("Illegal SNI extension") down to errors, so strangers cannot choose how much
//! is written.
//!
//! A line a remote party can cause (a failed login, a token login, a connection, a decode failure, a
//! command) goes through a [`Budget`]: a few a minute from one source (an address, an account), a
//! bounded number from all, and the rest counted and summed up once a minute ("12,345 more \"login
//! failed\" lines in the last minute"). A budget is a `static` beside the line it guards; it joins the
//! summaries on first use, so nothing lists them.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bevy::log::{BoxedFmtLayer, LogPlugin};
use bevy::prelude::*;

/// How the log is written (`--log-format`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Lines for people: time, level, target, message, fields.
    #[default]
    Text,
    /// One JSON object a line, the same fields: `{"timestamp", "level", "target", "message", …}`.
    Json,
}

/// The log filter every format starts from (`RUST_LOG` adds to it).
fn filter() -> String {
    // renetcode logs an error for every datagram it cannot decode: whoever sends junk would choose how
    // much we write (the gate counts drops instead). rustls warns once per odd TLS handshake.
    format!("{},renetcode=off,rustls=error", LogPlugin::default().filter)
}

/// Bevy's log plugin in `format`.
pub fn plugin(format: LogFormat) -> LogPlugin {
    LogPlugin {
        filter: filter(),
        fmt_layer: match format {
            LogFormat::Text => |_| None,
            LogFormat::Json => json_layer,
        },
        ..default()
    }
}

fn json_layer(_: &mut App) -> Option<BoxedFmtLayer> {
    Some(Box::new(
        bevy::log::tracing_subscriber::fmt::Layer::default()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(std::io::stderr),
    ))
}

/// How long a budget's window lasts.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Sources a budget tracks in one window; past it, new sources share the total only.
const MAX_SOURCES: usize = 4_096;

/// The budget of one kind of log line (see the module docs).
#[derive(Debug)]
pub struct Budget {
    /// The line's message, as the summary names it.
    what: &'static str,
    per_source: u32,
    total: u32,
    joined: AtomicBool,
    /// `None` until its first line.
    window: Mutex<Option<Window>>,
}

#[derive(Debug, Default)]
struct Window {
    started: Option<Instant>,
    logged: u32,
    by_source: HashMap<u64, u32>,
    suppressed: u64,
}

/// Every budget used so far, for the summaries.
static BUDGETS: Mutex<Vec<&'static Budget>> = Mutex::new(Vec::new());

impl Budget {
    /// At most `per_source` lines of `what` a minute from one source and `total` from all.
    pub const fn new(what: &'static str, per_source: u32, total: u32) -> Self {
        Self {
            what,
            per_source,
            total,
            joined: AtomicBool::new(false),
            window: Mutex::new(None),
        }
    }

    /// Whether a line from `source` may be written now; if not, it is counted for the summary.
    pub fn allow(&'static self, source: impl Hash) -> bool {
        if !self.joined.swap(true, Ordering::Relaxed) {
            lock(&BUDGETS).push(self);
        }
        let mut hasher = std::hash::DefaultHasher::new();
        source.hash(&mut hasher);
        self.allow_at(hasher.finish(), Instant::now())
    }

    fn allow_at(&self, source: u64, now: Instant) -> bool {
        let mut guard = lock(&self.window);
        let window = guard.get_or_insert_with(Window::default);
        self.roll(window, now);
        let tracked = window.by_source.len() < MAX_SOURCES;
        let from_source = if tracked {
            *window.by_source.entry(source).or_default()
        } else {
            window
                .by_source
                .get(&source)
                .copied()
                .unwrap_or(self.per_source)
        };
        if from_source < self.per_source && window.logged < self.total {
            window.logged += 1;
            if let Some(count) = window.by_source.get_mut(&source) {
                *count += 1;
            }
            true
        } else {
            window.suppressed += 1;
            false
        }
    }

    /// Starts a new window if this one is over, summing up what it held back.
    fn roll(&self, window: &mut Window, now: Instant) {
        let started = *window.started.get_or_insert(now);
        if now.saturating_duration_since(started) < WINDOW {
            return;
        }
        if window.suppressed > 0 {
            let more = window.suppressed;
            warn!(
                line = self.what,
                more, "{more} more \"{}\" lines in the last minute", self.what
            );
        }
        *window = Window {
            started: Some(now),
            ..Window::default()
        };
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Writes the summaries of the windows that ended (run once a second by the stats plugin, so a flood
/// that stops is still summed up).
pub fn summarize(now: Instant) {
    let budgets: Vec<&'static Budget> = lock(&BUDGETS).clone();
    for budget in budgets {
        if let Some(window) = lock(&budget.window).as_mut() {
            budget.roll(window, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_a_few_lines_a_minute_and_all_together_a_bounded_number() {
        let budget = Budget::new("login failed", 3, 5);
        let t0 = Instant::now();
        let allowed = |source, at| budget.allow_at(source, at);
        assert_eq!(
            (0..10).filter(|_| allowed(1, t0)).count(),
            3,
            "one source: 3"
        );
        assert_eq!(
            (0..10).filter(|_| allowed(2, t0)).count(),
            2,
            "all together: 5"
        );
        assert!(!allowed(3, t0));
        let suppressed = || lock(&budget.window).as_ref().unwrap().suppressed;
        assert_eq!(suppressed(), 16);
        // A minute later, a new window: the summary is written and everyone starts again.
        assert!(allowed(1, t0 + WINDOW));
        assert_eq!(suppressed(), 0);
    }
}
