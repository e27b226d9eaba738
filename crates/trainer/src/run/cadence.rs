//! When a run logs, evaluates and saves: pure decisions from the step number and the time
//! since the last save, so the loop asks one question after each step.

use std::time::{Duration, Instant};

use super::config::{CheckpointConfig, EvalConfig};

/// What is due after an optimizer step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Due {
    pub log: bool,
    pub eval: bool,
    pub save: bool,
}

/// The cadence of `training.logging_steps`, `eval.eval_steps`, `checkpoint.save_steps` and
/// `checkpoint.save_minutes` over a run of `total_steps`.
#[derive(Debug, Clone)]
pub struct Cadence {
    pub logging_steps: u64,
    /// 0: only before the first and after the last step.
    pub eval_steps: u64,
    /// 0: only at the end.
    pub save_steps: u64,
    pub save_every: Option<Duration>,
    pub total_steps: u64,
}

impl Cadence {
    pub fn new(logging_steps: u64, eval: &EvalConfig, save: &CheckpointConfig, total: u64) -> Self {
        Self {
            logging_steps,
            eval_steps: eval.eval_steps,
            save_steps: save.save_steps,
            save_every: save.save_minutes.map(|m| Duration::from_secs_f64(m * 60.0)),
            total_steps: total,
        }
    }

    /// What is due once `step` steps are done, `since_save` after the last save (or the start).
    /// The last step is always logged; the end-of-run evaluation and save are the run's
    /// `finish`, so that an interrupted run gets its save too.
    pub fn after_step(&self, step: u64, since_save: Duration) -> Due {
        let every = |n: u64| n > 0 && step.is_multiple_of(n);
        Due {
            log: every(self.logging_steps) || step == self.total_steps,
            eval: every(self.eval_steps),
            save: every(self.save_steps) || self.save_every.is_some_and(|d| since_save >= d),
        }
    }
}

/// Tokens per second over the window since the last logged step.
#[derive(Debug, Clone)]
pub struct Throughput {
    since: Instant,
    tokens: u64,
    masked: u64,
    slots: u64,
}

/// The tokens trained on since the last log, and how long that took.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub seconds: f64,
    pub tokens: u64,
    pub masked: u64,
    /// Positions of the padded batches: tokens and padding.
    pub slots: u64,
}

impl Window {
    pub fn tokens_per_second(&self) -> f64 {
        self.tokens as f64 / self.seconds
    }

    /// The share of the batches' positions that were padding.
    pub fn padding(&self) -> f64 {
        if self.slots == 0 {
            return 0.0;
        }
        1.0 - self.tokens as f64 / self.slots as f64
    }
}

impl Throughput {
    pub fn start() -> Self {
        Self {
            since: Instant::now(),
            tokens: 0,
            masked: 0,
            slots: 0,
        }
    }

    /// A step trained on `tokens` non-padding tokens, `masked` of them masked, in batches
    /// of `slots` positions.
    pub fn add(&mut self, tokens: usize, masked: usize, slots: usize) {
        self.tokens += tokens as u64;
        self.masked += masked as u64;
        self.slots += slots as u64;
    }

    /// The window since the last call, and a new window from now.
    pub fn take_window(&mut self) -> Window {
        let window = Window {
            seconds: self.since.elapsed().as_secs_f64().max(1e-9),
            tokens: self.tokens,
            masked: self.masked,
            slots: self.slots,
        };
        *self = Self::start();
        window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_is_the_share_of_batch_positions_without_a_token() {
        let mut throughput = Throughput::start();
        throughput.add(30, 4, 40);
        throughput.add(10, 1, 40);
        let window = throughput.take_window();
        assert_eq!((window.tokens, window.masked, window.slots), (40, 5, 80));
        assert!((window.padding() - 0.5).abs() < 1e-12);
        assert_eq!(throughput.take_window().padding(), 0.0, "an empty window");
    }

    fn cadence(logging: u64, eval: u64, save: u64, minutes: Option<f64>) -> Cadence {
        Cadence::new(
            logging,
            &EvalConfig {
                eval_steps: eval,
                ..EvalConfig::default()
            },
            &CheckpointConfig {
                save_steps: save,
                save_minutes: minutes,
                ..CheckpointConfig::default()
            },
            100,
        )
    }

    #[test]
    fn steps_multiples_are_due_and_the_last_step_is_always_logged() {
        let c = cadence(10, 25, 50, None);
        let now = Duration::ZERO;
        assert_eq!(c.after_step(7, now), Due::default());
        assert_eq!(
            c.after_step(50, now),
            Due {
                log: true,
                eval: true,
                save: true
            }
        );
        assert_eq!(
            c.after_step(75, now),
            Due {
                log: false,
                eval: true,
                save: false
            }
        );
        assert!(cadence(30, 0, 0, None).after_step(100, now).log);
    }

    #[test]
    fn zero_means_never_during_the_run() {
        let c = cadence(1, 0, 0, None);
        for step in 1..=100 {
            let due = c.after_step(step, Duration::from_secs(1 << 20));
            assert!(due.log && !due.eval && !due.save, "step {step}");
        }
    }

    #[test]
    fn time_based_saves_fire_once_the_interval_passed() {
        let c = cadence(1, 0, 0, Some(0.5));
        assert!(!c.after_step(3, Duration::from_secs(29)).save);
        assert!(c.after_step(3, Duration::from_secs(30)).save);
    }
}
