//! `move`: players wander a region sized so each sees about [`CROWD`] others, against mmo's interest
//! management (snapshots of what is near) or, on the floor, the naive all-to-all relay of positions.

use std::time::{Duration, Instant};

use mmo::protocol::{ClientMessage, WORLD_SIZE};

use super::{
    CpuMeter, Options, Sim, Stage, XorShift, base_report, finish, idle_pass, join, now_us,
    own_cpu_time,
};
use crate::report::{Report, quantile_ms};
use crate::target::{Kind, Target};

/// `move`: players see about this many others at once (the crowd the region is sized for).
pub const CROWD: f64 = 20.0;
/// The view radius the region is sized for: mmo's default `--view-radius`.
pub const VIEW_RADIUS: f64 = 100.0;
/// On the floor, positions each player sends a second (mmo's default `--snapshot-hz`).
pub const FLOOR_POSITION_HZ: f64 = 20.0;
/// Longest the players walk before the measured phase starts.
const MOVE_SETTLE_LIMIT: Duration = Duration::from_secs(15);

/// The smallest region: a few players still walk a second or more between targets (in a tinier one
/// they would stand still most of the time, and a server rightly sends nothing about players who stand).
pub const MIN_REGION_SIDE: f64 = 300.0;

/// The side of the square (centred on the world's centre) that `move` spreads `clients` players over,
/// so that each sees about [`CROWD`] others: πr²·N/L² = CROWD, clamped to [`MIN_REGION_SIDE`] and the
/// world (below ~60 players the crowd is smaller).
pub fn region_side(clients: usize) -> f64 {
    (VIEW_RADIUS * (std::f64::consts::PI * clients as f64 / CROWD).sqrt())
        .clamp(MIN_REGION_SIDE, f64::from(WORLD_SIZE))
}

/// How long players walk to their first targets before measuring: half the region at the server's
/// speed, plus a second, at most `MOVE_SETTLE_LIMIT`.
pub fn settle_time(side: f64) -> Duration {
    Duration::from_secs_f64(side / 2.0 / f64::from(crate::target::MOVE_SPEED) + 1.0)
        .min(MOVE_SETTLE_LIMIT)
}

/// Where one wandering player is going, and (for the floor, which has no server to walk it) where it
/// is: walked locally at the same speed as the server walks mmo's players.
struct Walker {
    at: (f64, f64),
    goal: (f64, f64),
    next_pick: Instant,
    next_send: Instant,
}

impl Walker {
    fn advance(&mut self, dt: f64) {
        let (dx, dy) = (self.goal.0 - self.at.0, self.goal.1 - self.at.1);
        let distance = (dx * dx + dy * dy).sqrt();
        let step = f64::from(crate::target::MOVE_SPEED) * dt;
        self.at = if distance <= step {
            self.goal
        } else {
            (
                self.at.0 + dx / distance * step,
                self.at.1 + dy / distance * step,
            )
        };
    }
}

/// What a `move` phase received.
#[derive(Default)]
struct MoveTally {
    snapshot_bytes: u64,
    snapshots: u64,
    ages_us: Vec<u64>,
}

/// One pass of wandering for every player: receive, take snapshots (counted into `tally` if given),
/// pick a new goal every 2–5 s (mmo: send it as MoveTo), and on the floor send the current position
/// [`FLOOR_POSITION_HZ`] times a second for the relay to pass to everyone.
fn wander_pass(
    sims: &mut [Sim],
    walkers: &mut [Walker],
    kind: Kind,
    region: (f64, f64),
    rng: &mut XorShift,
    dt: f64,
    mut tally: Option<&mut MoveTally>,
) {
    let now = Instant::now();
    let send_every = Duration::from_secs_f64(1.0 / FLOOR_POSITION_HZ);
    for (sim, walker) in sims.iter_mut().zip(walkers.iter_mut()) {
        // Pumped even when its connection ended: in token mode that is where it reconnects.
        sim.pump(kind, |_, _, _| {});
        if sim.stage != Stage::Ready || sim.is_disconnected() {
            continue;
        }
        let snapshots = sim.net().take_snapshots();
        if let Some(tally) = tally.as_deref_mut() {
            let now_us = now_us();
            for snapshot in snapshots {
                tally.snapshots += 1;
                tally.snapshot_bytes += snapshot.encode().len() as u64;
                tally
                    .ages_us
                    .push(now_us.saturating_sub(snapshot.sent_at_ms * 1000));
            }
        }
        walker.advance(dt);
        if now >= walker.next_pick {
            walker.goal = (
                rng.between(region.0, region.1),
                rng.between(region.0, region.1),
            );
            walker.next_pick = now + Duration::from_secs_f64(rng.between(2.0, 5.0));
            if kind == Kind::Mmo {
                let (x, y) = (walker.goal.0 as f32, walker.goal.1 as f32);
                sim.net().send(&ClientMessage::MoveTo { x, y });
            }
        }
        if kind == Kind::Floor && now >= walker.next_send {
            let (x, y) = (walker.at.0 as f32, walker.at.1 as f32);
            sim.net().send(&ClientMessage::MoveTo { x, y });
            walker.next_send += send_every;
            if walker.next_send < now {
                walker.next_send = now + send_every;
            }
        }
    }
}

/// `move`: N players log in, then wander: each walks to a random point of a square region centred on
/// the world's centre, sized so each sees about [`CROWD`] others ([`region_side`]), and picks a new one
/// every 2–5 s. They walk for [`settle_time`] first, to spread out; then for `duration` every snapshot's
/// age (receive time minus its `sent_at_ms`) and the payload bytes each player receives are measured.
/// On the floor, with no world, each player sends its position [`FLOOR_POSITION_HZ`] times a second
/// and the relay passes it to every other player: the naive all-to-all design.
pub fn wander(target: &Target, options: &Options) -> Report {
    let kind = target.kind;
    let mut sims = join(target, "move_", options.clients, options.client_hz);
    let side = region_side(options.clients);
    let centre = f64::from(WORLD_SIZE) / 2.0;
    let region = (centre - side / 2.0, centre + side / 2.0);
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D ^ options.clients as u64);
    let start = Instant::now();
    let mut walkers: Vec<Walker> = sims
        .iter()
        .enumerate()
        .map(|(i, sim)| {
            let at = sim.spawned_at.map_or_else(
                || {
                    (
                        centre + rng.between(-32.0, 32.0),
                        centre + rng.between(-32.0, 32.0),
                    )
                },
                |at| (f64::from(at.x()), f64::from(at.y())),
            );
            Walker {
                at,
                goal: at,
                next_pick: start,
                // Spread the floor's position messages evenly over the first interval.
                next_send: start
                    + Duration::from_secs_f64(
                        i as f64 / sims.len().max(1) as f64 / FLOOR_POSITION_HZ,
                    ),
            }
        })
        .collect();
    let mut last = start;
    let mut pass = |sims: &mut [Sim], walkers: &mut [Walker], tally: Option<&mut MoveTally>| {
        let now = Instant::now();
        let dt = (now - last).as_secs_f64();
        last = now;
        wander_pass(sims, walkers, kind, region, &mut rng, dt, tally);
        idle_pass();
    };
    let settle_until = start + settle_time(side);
    while Instant::now() < settle_until {
        pass(&mut sims, &mut walkers, None);
    }
    for sim in &mut sims {
        (sim.reliable_bytes, sim.entered_view, sim.left_view) = (0, 0, 0);
    }
    let (mark, meter) = (target.log_mark(), CpuMeter::start(target));
    let own_cpu = own_cpu_time();
    let mut tally = MoveTally::default();
    let end = Instant::now() + options.duration;
    while Instant::now() < end {
        pass(&mut sims, &mut walkers, Some(&mut tally));
    }
    let elapsed = meter.at.elapsed().as_secs_f64();
    let mut report = base_report("move", target, options);
    report.region_side = Some(side);
    let players = options.clients.max(1) as f64;
    let reliable: u64 = sims.iter().map(|s| s.reliable_bytes).sum();
    report.bytes_per_player_per_s =
        Some((reliable + tally.snapshot_bytes) as f64 / players / elapsed);
    if kind == Kind::Mmo {
        report.snapshots_per_player_per_s = Some(tally.snapshots as f64 / players / elapsed);
        report.entered_view = Some(sims.iter().map(|s| s.entered_view).sum());
        report.left_view = Some(sims.iter().map(|s| s.left_view).sum());
        tally.ages_us.sort_unstable();
        report.snapshot_age_p50_ms = quantile_ms(&tally.ages_us, 0.50);
        report.snapshot_age_p99_ms = quantile_ms(&tally.ages_us, 0.99);
    }
    report.disconnected = Some(sims.iter().filter(|s| s.is_disconnected()).count() as u64);
    report.reconnects = Some(sims.iter().map(|s| s.reconnects).sum());
    report.loadgen_cpu_core = own_cpu
        .zip(own_cpu_time())
        .and_then(|(before, after)| after.checked_sub(before))
        .map(|used| used.as_secs_f64() / elapsed);
    finish(&mut report, target, &meter, mark);
    report
}
