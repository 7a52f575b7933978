//! Overload: whether the tick is over its budget, so that new work can be refused with a reason
//! ("Server busy, try again") before the server spirals. [`TickLoad`] is fed each tick's duration (by
//! `stats`) and says "shedding" once most ticks of the last second overran the tick period, and stops
//! once nearly all of a second's ticks fit again (hysteresis: a login storm answered "busy" does not
//! flap every tick). Players already in play keep playing; what is shed is new logins and registrations,
//! whose password hashing competes with the tick for the cores.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bevy::prelude::*;

/// Ticks looked at (a second at 60 Hz).
const WINDOW: usize = 60;
/// Shedding starts when more than this many ticks of the window overran the period...
const START_OVER: usize = WINDOW / 2;
/// ...and stops when at most this many did.
const STOP_OVER: usize = WINDOW / 10;

/// The tick's recent durations against its period; see the module docs.
#[derive(Resource, Debug)]
pub struct TickLoad {
    /// `--no-shedding` clears it: the flag then never rises.
    enabled: bool,
    period: Duration,
    /// For each of the last [`WINDOW`] ticks, whether it overran `period`.
    overran: VecDeque<bool>,
    over: usize,
    shedding: Arc<AtomicBool>,
    /// The server is stopping: new work is refused until the end, whatever the ticks.
    closing: bool,
}

impl TickLoad {
    pub fn new(period: Duration, enabled: bool) -> Self {
        Self {
            enabled,
            period,
            overran: VecDeque::with_capacity(WINDOW),
            over: 0,
            shedding: Arc::default(),
            closing: false,
        }
    }

    /// One tick took `took`. Returns whether shedding started or stopped with it.
    pub fn record(&mut self, took: Duration) -> Option<bool> {
        let overran = took > self.period;
        if self.overran.len() == WINDOW && self.overran.pop_front() == Some(true) {
            self.over -= 1;
        }
        self.overran.push_back(overran);
        self.over += usize::from(overran);
        let was = self.shedding();
        let now = if self.closing {
            true
        } else if !self.enabled {
            false
        } else if was {
            self.over > STOP_OVER
        } else {
            self.over > START_OVER
        };
        self.shedding.store(now, Ordering::Relaxed);
        (now != was).then_some(now)
    }

    /// The server is stopping: from now on logins and registrations are refused ("Server busy, try
    /// again", 503), so that a player told the server is shutting down gets its new connect token from
    /// another shard, or from this one once it is back, not from this one on its way out.
    pub fn close(&mut self) {
        self.closing = true;
        self.shedding.store(true, Ordering::Relaxed);
    }

    /// Whether new work is being refused.
    pub fn shedding(&self) -> bool {
        self.shedding.load(Ordering::Relaxed)
    }

    /// The flag, for threads off the tick (the HTTPS login endpoint).
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.shedding.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shedding_starts_when_most_ticks_overrun_and_stops_when_nearly_none_do() {
        let period = Duration::from_millis(16);
        let (slow, fast) = (Duration::from_millis(30), Duration::from_millis(5));
        let mut load = TickLoad::new(period, true);
        for _ in 0..WINDOW {
            assert_eq!(load.record(fast), None);
        }
        for _ in 0..START_OVER {
            load.record(slow);
        }
        assert!(!load.shedding(), "half the ticks late is not yet overload");
        assert_eq!(load.record(slow), Some(true), "most of a second late: shed");
        // Back to fast: shedding holds until at most a tenth of the window overran.
        let mut ticks = 0;
        while load.shedding() {
            load.record(fast);
            ticks += 1;
        }
        // The fast ticks before the slow ones leave the window first, then the slow ones until at most
        // STOP_OVER are left.
        assert_eq!(ticks, WINDOW - STOP_OVER, "stops once nearly all fit");
        assert!(!load.shedding());

        let mut never = TickLoad::new(period, false);
        for _ in 0..2 * WINDOW {
            assert_eq!(never.record(slow), None, "--no-shedding");
        }
    }
}
