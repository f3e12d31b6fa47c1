//! Guardrails: what a scenario's `guard:` does when its rolling SLO stays broken.
//!
//! [`GuardCtl`] is the engine's side — a rate factor, a pause of the guard's own, and
//! whether a capacity search drives the scenario — read by the runner on every tick
//! through [`super::ScenarioState::effective_rate`]. [`GuardMachine`] is the decision,
//! a pure state machine the SLO evaluator ticks once a second with the scenario's
//! verdict: after `for` out of the SLO it steps the rate down (or pauses), again after
//! each further `for`, down to the floor; with `recover_after` it climbs back one step
//! each time the SLO has held that long. A capacity search wins: while one drives the
//! scenario the guard is suspended and undoes what it did.

use crate::config::{Guard, GuardAction};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The guard's handles on a scenario's rate.
#[derive(Debug)]
pub struct GuardCtl {
    /// f64 bits of the factor applied to the rate (1: none).
    factor: AtomicU64,
    /// f64 bits of the rate the factor never takes it below.
    floor: AtomicU64,
    paused: AtomicBool,
    /// A capacity search drives the scenario: the guard stands aside.
    searched: AtomicBool,
    /// The control API reverted the guard; the machine resets on its next tick.
    revert: AtomicBool,
}

impl Default for GuardCtl {
    fn default() -> Self {
        GuardCtl {
            factor: AtomicU64::new(1f64.to_bits()),
            floor: AtomicU64::new(0f64.to_bits()),
            paused: AtomicBool::new(false),
            searched: AtomicBool::new(false),
            revert: AtomicBool::new(false),
        }
    }
}

impl GuardCtl {
    /// `base` (the schedule's or the override's rate) as the guard lets it through.
    pub fn apply(&self, base: f64) -> f64 {
        if self.searched.load(Ordering::Relaxed) {
            return base;
        }
        if self.paused.load(Ordering::Relaxed) {
            return 0.0;
        }
        let f = f64::from_bits(self.factor.load(Ordering::Relaxed));
        if f >= 1.0 {
            return base;
        }
        let floor = f64::from_bits(self.floor.load(Ordering::Relaxed));
        (base * f).max(floor.min(base))
    }

    fn set(&self, factor: f64, floor: f64, paused: bool) {
        self.floor.store(floor.to_bits(), Ordering::Relaxed);
        self.factor.store(factor.to_bits(), Ordering::Relaxed);
        self.paused.store(paused, Ordering::Relaxed);
    }

    /// No guard (one a reload removed): the rate goes through untouched.
    pub fn clear(&self) {
        self.set(1.0, 0.0, false);
    }

    /// Whether the guard has paused the scenario.
    pub fn paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed) && !self.searched.load(Ordering::Relaxed)
    }

    /// Whether the guard holds the rate down (stepped down or paused) right now.
    pub fn active(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
            || f64::from_bits(self.factor.load(Ordering::Relaxed)) < 1.0
    }

    /// The control API's revert: the full rate at once; the machine forgets its steps
    /// on its next tick. Returns whether the guard was holding the rate down.
    pub fn revert(&self) -> bool {
        let was = self.active();
        self.set(1.0, 0.0, false);
        self.revert.store(true, Ordering::Relaxed);
        was
    }

    /// Set by the capacity controller while it drives the scenario.
    pub fn set_searched(&self, on: bool) {
        self.searched.store(on, Ordering::Relaxed);
    }

    pub fn searched(&self) -> bool {
        self.searched.load(Ordering::Relaxed)
    }

    fn take_revert(&self) -> bool {
        self.revert.swap(false, Ordering::Relaxed)
    }
}

/// What the guard did on a tick (the `action` label of `soakd_guard_actions_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardEvent {
    StepDown,
    Pause,
    /// One step back up after `recover_after` within the SLO.
    Recover,
    /// Unpaused after `recover_after` within the SLO.
    Resume,
    /// A capacity search took the scenario over; the guard's steps were undone.
    Suspend,
    /// The control API undid the guard's steps.
    Revert,
}

impl GuardEvent {
    pub const ALL: [GuardEvent; 6] = [
        GuardEvent::StepDown,
        GuardEvent::Pause,
        GuardEvent::Recover,
        GuardEvent::Resume,
        GuardEvent::Suspend,
        GuardEvent::Revert,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GuardEvent::StepDown => "step_down",
            GuardEvent::Pause => "pause",
            GuardEvent::Recover => "recover",
            GuardEvent::Resume => "resume",
            GuardEvent::Suspend => "suspend",
            GuardEvent::Revert => "revert",
        }
    }
}

/// The guard's state as the status API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardStatus {
    /// Actions in force: steps down taken (or 1 while paused).
    pub steps: u32,
    /// The factor on the rate (0 while paused).
    pub factor: f64,
    /// A capacity search drives the scenario; the guard stands aside.
    pub suspended: bool,
    pub last_action: Option<GuardEvent>,
    /// Unix seconds of the last action.
    pub last_action_at: Option<f64>,
}

/// The guard's decisions for one scenario.
#[derive(Debug, Clone)]
pub struct GuardMachine {
    pub cfg: Guard,
    steps: u32,
    /// Since when the SLO has been broken (None: it holds).
    bad_since: Option<f64>,
    /// Since when it has held.
    good_since: Option<f64>,
    last_action: Option<(GuardEvent, f64)>,
    suspended: bool,
}

impl GuardMachine {
    pub fn new(cfg: Guard) -> GuardMachine {
        GuardMachine {
            cfg,
            steps: 0,
            bad_since: None,
            good_since: None,
            last_action: None,
            suspended: false,
        }
    }

    fn factor(&self) -> f64 {
        match self.cfg.action {
            GuardAction::Pause => {
                if self.steps > 0 {
                    0.0
                } else {
                    1.0
                }
            }
            GuardAction::StepDown { keep, .. } => keep.powi(self.steps as i32),
        }
    }

    pub fn status(&self) -> GuardStatus {
        GuardStatus {
            steps: self.steps,
            factor: self.factor(),
            suspended: self.suspended,
            last_action: self.last_action.map(|(a, _)| a),
            last_action_at: self.last_action.map(|(_, t)| t),
        }
    }

    /// Pushes the machine's state to the scenario's controls.
    fn publish(&self, ctl: &GuardCtl) {
        match self.cfg.action {
            GuardAction::Pause => ctl.set(1.0, 0.0, self.steps > 0),
            GuardAction::StepDown { floor, .. } => ctl.set(self.factor(), floor, false),
        }
    }

    fn act(&mut self, e: GuardEvent, now: f64, ctl: &GuardCtl) -> Option<GuardEvent> {
        self.last_action = Some((e, now));
        self.publish(ctl);
        Some(e)
    }

    /// One evaluation at `now` (Unix seconds) with the SLO's verdict `ok`; `base` is the
    /// rate the guard would hold down (to know when the floor is reached). Returns the
    /// action taken, if any.
    pub fn tick(&mut self, now: f64, ok: bool, base: f64, ctl: &GuardCtl) -> Option<GuardEvent> {
        if ctl.take_revert() {
            let was = self.steps;
            *self = GuardMachine::new(self.cfg);
            self.publish(ctl);
            if was > 0 {
                self.last_action = Some((GuardEvent::Revert, now));
            }
            // The API counted and logged it.
            return None;
        }
        if ctl.searched() {
            if self.suspended {
                return None;
            }
            let had = self.steps;
            self.suspended = true;
            self.steps = 0;
            self.bad_since = None;
            self.good_since = None;
            self.publish(ctl);
            return if had > 0 {
                self.act(GuardEvent::Suspend, now, ctl)
            } else {
                None
            };
        }
        self.suspended = false;
        let since_action = self.last_action.map_or(f64::NEG_INFINITY, |(_, t)| t);
        if !ok {
            self.good_since = None;
            let since = self.bad_since.get_or_insert(now).max(since_action);
            if now - since < self.cfg.after.as_secs_f64() {
                return None;
            }
            match self.cfg.action {
                GuardAction::Pause if self.steps == 0 => {
                    self.steps = 1;
                    self.act(GuardEvent::Pause, now, ctl)
                }
                GuardAction::StepDown { floor, .. } if base * self.factor() > floor => {
                    self.steps += 1;
                    self.act(GuardEvent::StepDown, now, ctl)
                }
                // Paused already, or at the floor: nothing further to do.
                _ => None,
            }
        } else {
            self.bad_since = None;
            let since = self.good_since.get_or_insert(now).max(since_action);
            let after = self.cfg.recover_after?;
            if self.steps == 0 || now - since < after.as_secs_f64() {
                return None;
            }
            self.steps -= 1;
            let e = match self.cfg.action {
                GuardAction::Pause => GuardEvent::Resume,
                GuardAction::StepDown { .. } => GuardEvent::Recover,
            };
            self.act(e, now, ctl)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn step_down(recover: Option<u64>) -> Guard {
        Guard {
            after: Duration::from_secs(10),
            action: GuardAction::StepDown {
                keep: 0.5,
                floor: 20.0,
            },
            recover_after: recover.map(Duration::from_secs),
        }
    }

    /// Ticks once a second from `from` to `to` with `ok`, returning the actions by time.
    fn run(
        m: &mut GuardMachine,
        ctl: &GuardCtl,
        from: u64,
        to: u64,
        ok: bool,
    ) -> Vec<(u64, GuardEvent)> {
        (from..to)
            .filter_map(|t| m.tick(t as f64, ok, 100.0, ctl).map(|e| (t, e)))
            .collect()
    }

    #[test]
    fn the_metric_labels_are_the_events() {
        let names: Vec<&str> = GuardEvent::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(names, crate::metrics::guard::ACTIONS);
    }

    #[test]
    fn steps_down_after_for_each_time_stops_at_the_floor_and_recovers_in_steps() {
        let ctl = GuardCtl::default();
        let mut m = GuardMachine::new(step_down(Some(30)));
        assert_eq!(run(&mut m, &ctl, 0, 9, false), vec![]);
        // 100 → 50 → 25 → 20 (the floor): three steps, one every 10 s, then nothing.
        assert_eq!(
            run(&mut m, &ctl, 9, 60, false),
            vec![
                (10, GuardEvent::StepDown),
                (20, GuardEvent::StepDown),
                (30, GuardEvent::StepDown)
            ]
        );
        assert_eq!(ctl.apply(100.0), 20.0);
        assert_eq!(ctl.apply(10.0), 10.0, "the floor never raises a lower rate");
        // Within the SLO: one step back every 30 s.
        assert_eq!(
            run(&mut m, &ctl, 60, 160, true),
            vec![
                (90, GuardEvent::Recover),
                (120, GuardEvent::Recover),
                (150, GuardEvent::Recover)
            ]
        );
        assert_eq!(ctl.apply(100.0), 100.0);
        assert!(!ctl.active());
    }

    #[test]
    fn a_short_breach_or_a_short_recovery_does_nothing() {
        let ctl = GuardCtl::default();
        let mut m = GuardMachine::new(step_down(Some(30)));
        assert_eq!(run(&mut m, &ctl, 0, 9, false), vec![]);
        assert_eq!(run(&mut m, &ctl, 9, 12, true), vec![]);
        // The breach starts over.
        assert_eq!(
            run(&mut m, &ctl, 12, 30, false),
            vec![(22, GuardEvent::StepDown)]
        );
        assert_eq!(run(&mut m, &ctl, 30, 50, true), vec![]);
        assert_eq!(run(&mut m, &ctl, 50, 55, false), vec![]);
        assert_eq!(ctl.apply(100.0), 50.0);
    }

    #[test]
    fn pause_and_resume() {
        let ctl = GuardCtl::default();
        let mut m = GuardMachine::new(Guard {
            after: Duration::from_secs(5),
            action: GuardAction::Pause,
            recover_after: Some(Duration::from_secs(20)),
        });
        assert_eq!(
            run(&mut m, &ctl, 0, 30, false),
            vec![(5, GuardEvent::Pause)]
        );
        assert_eq!(ctl.apply(100.0), 0.0);
        assert_eq!(
            run(&mut m, &ctl, 30, 60, true),
            vec![(50, GuardEvent::Resume)]
        );
        assert_eq!(ctl.apply(100.0), 100.0);
    }

    #[test]
    fn without_recover_after_it_holds_until_reverted() {
        let ctl = GuardCtl::default();
        let mut m = GuardMachine::new(step_down(None));
        assert_eq!(
            run(&mut m, &ctl, 0, 11, false),
            vec![(10, GuardEvent::StepDown)]
        );
        assert_eq!(run(&mut m, &ctl, 11, 500, true), vec![]);
        assert_eq!(ctl.apply(100.0), 50.0);
        assert!(ctl.revert());
        assert_eq!(ctl.apply(100.0), 100.0, "a revert is immediate");
        assert_eq!(run(&mut m, &ctl, 500, 501, true), vec![]);
        assert_eq!(m.status().steps, 0);
        assert_eq!(m.status().last_action, Some(GuardEvent::Revert));
        // Still watching: a new breach steps down again after `for`.
        assert_eq!(
            run(&mut m, &ctl, 501, 512, false),
            vec![(511, GuardEvent::StepDown)]
        );
    }

    #[test]
    fn a_capacity_search_suspends_the_guard_and_undoes_its_steps() {
        let ctl = GuardCtl::default();
        let mut m = GuardMachine::new(step_down(Some(30)));
        assert_eq!(
            run(&mut m, &ctl, 0, 11, false),
            vec![(10, GuardEvent::StepDown)]
        );
        ctl.set_searched(true);
        assert_eq!(ctl.apply(100.0), 100.0, "the search's rate goes through");
        assert_eq!(
            run(&mut m, &ctl, 11, 100, false),
            vec![(11, GuardEvent::Suspend)]
        );
        assert!(m.status().suspended && m.status().steps == 0);
        ctl.set_searched(false);
        assert_eq!(
            run(&mut m, &ctl, 100, 111, false),
            vec![(110, GuardEvent::StepDown)]
        );
        assert!(!m.status().suspended);
    }
}
