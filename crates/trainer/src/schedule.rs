//! Learning-rate schedules: linear, cosine and constant after a linear warmup, and
//! warmup-stable-decay, as pure functions of the optimizer step.
//!
//! Each is a port of a `transformers/optimization.py` lambda (transformers 5.x):
//! `_get_linear_schedule_with_warmup_lr_lambda`, `_get_cosine_schedule_with_warmup_lr_lambda`
//! (the `min_lr_rate` variant behind `get_cosine_with_min_lr_schedule_with_warmup`, which equals
//! plain `get_cosine_schedule_with_warmup` at a floor of 0),
//! `_get_constant_schedule_with_warmup_lr_lambda` and `_get_wsd_scheduler_lambda` with
//! `get_wsd_schedule`'s defaults (linear warmup, cosine decay, `num_cycles = 0.5`).
//!
//! Step semantics follow `torch.optim.lr_scheduler.LambdaLR` as the Hugging Face Trainer drives
//! it: the optimizer step that takes the model from `s` to `s + 1` completed steps uses
//! `peak_lr * lambda(s)`. So the very first update of a warmed-up run uses a learning rate of 0
//! (WSD: `min_lr_ratio * peak_lr`), exactly as in `Trainer`. Call
//! `optimizer.step(schedule.lr_at(steps_already_taken))`.

use serde::{Deserialize, Serialize};

use crate::error::TrainError;

/// `num_cycles` of the cosine decays: half a cosine wave, from the peak to the floor.
const NUM_CYCLES: f64 = 0.5;

/// The shape of the learning rate after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// Linear decay from the peak to `min_lr_ratio * peak` at `total_steps`
    /// (`get_linear_schedule_with_warmup` when `min_lr_ratio = 0`, BERT's schedule).
    #[default]
    Linear,
    /// Half-cosine decay from the peak to `min_lr_ratio * peak` at `total_steps`
    /// (`get_cosine_schedule_with_warmup` / `get_cosine_with_min_lr_schedule_with_warmup`).
    Cosine,
    /// The peak learning rate after warmup (`get_constant_schedule_with_warmup`).
    Constant,
    /// Warmup, a constant stable phase, then a cosine decay over the last `decay_steps` steps
    /// (`get_wsd_schedule`, MiniCPM; Hu et al. 2024).
    #[serde(alias = "wsd")]
    WarmupStableDecay,
}

/// A resolved learning-rate schedule (all counts in optimizer steps). Stored in
/// `trainer_state.json` so a resumed run can show what it continued with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Shape after warmup.
    pub kind: ScheduleKind,
    /// The learning rate at the end of warmup (the optimizer's "initial lr" in HF terms).
    pub peak_lr: f64,
    /// Steps of linear warmup from 0 (WSD: from `min_lr_ratio * peak_lr`) to `peak_lr`.
    pub warmup_steps: u64,
    /// Optimizer steps of the whole run; linear and cosine reach their floor here.
    pub total_steps: u64,
    /// WarmupStableDecay only: steps of the final decay (the stable phase is what remains of
    /// `total_steps` after warmup and decay).
    #[serde(default)]
    pub decay_steps: u64,
    /// Floor of the decay as a fraction of `peak_lr` (linear, cosine, WSD; constant ignores
    /// it). 0 reproduces Hugging Face's default schedules.
    #[serde(default)]
    pub min_lr_ratio: f64,
}

impl Schedule {
    /// The learning rate of the optimizer step taken after `step` completed steps
    /// (`LambdaLR`: `base_lr * lr_lambda(step)`).
    pub fn lr_at(&self, step: u64) -> f64 {
        self.peak_lr * self.multiplier(step)
    }

    /// `lr_lambda(step)`: the learning rate as a fraction of `peak_lr`.
    pub fn multiplier(&self, step: u64) -> f64 {
        let s = step as f64;
        let warmup = self.warmup_steps as f64;
        let total = self.total_steps as f64;
        let floor = self.min_lr_ratio;
        match self.kind {
            ScheduleKind::Linear => {
                if s < warmup {
                    return s / warmup.max(1.0);
                }
                let factor = ((total - s) / (total - warmup).max(1.0)).max(0.0);
                if floor == 0.0 {
                    // Exactly HF's expression (no rescaling, no rounding difference).
                    factor
                } else {
                    factor * (1.0 - floor) + floor
                }
            }
            ScheduleKind::Cosine => {
                if s < warmup {
                    return s / warmup.max(1.0);
                }
                let progress = (s - warmup) / (total - warmup).max(1.0);
                let factor =
                    0.5 * (1.0 + (std::f64::consts::PI * NUM_CYCLES * 2.0 * progress).cos());
                (factor * (1.0 - floor) + floor).max(0.0)
            }
            ScheduleKind::Constant => {
                if s < warmup {
                    s / warmup.max(1.0)
                } else {
                    1.0
                }
            }
            ScheduleKind::WarmupStableDecay => self.wsd_multiplier(s),
        }
    }

    /// `_get_wsd_scheduler_lambda` with linear warmup and cosine decay. The stable phase is
    /// `total - warmup - decay` steps, as `get_wsd_schedule` derives it from
    /// `num_training_steps`; past the decay the floor holds.
    fn wsd_multiplier(&self, s: f64) -> f64 {
        let warmup = self.warmup_steps as f64;
        let decay = self.decay_steps as f64;
        // Signed, as in Python: a schedule that does not fit (rejected by `validate`) still
        // gives HF's numbers rather than wrapping around.
        let stable = self.total_steps as f64 - warmup - decay;
        let floor = self.min_lr_ratio;
        if s < warmup {
            let progress = s / warmup.max(1.0);
            return (progress * (1.0 - floor) + floor).max(0.0);
        }
        if s < warmup + stable {
            return 1.0;
        }
        if s < warmup + stable + decay {
            let progress = (s - warmup - stable) / decay.max(1.0);
            let factor = 0.5 * (1.0 + (std::f64::consts::PI * NUM_CYCLES * 2.0 * progress).cos());
            return (factor * (1.0 - floor) + floor).max(0.0);
        }
        floor
    }

    /// Steps of WSD's stable phase (0 for the other kinds).
    pub fn stable_steps(&self) -> u64 {
        match self.kind {
            ScheduleKind::WarmupStableDecay => self
                .total_steps
                .saturating_sub(self.warmup_steps)
                .saturating_sub(self.decay_steps),
            _ => 0,
        }
    }

    /// Rejects schedules that cannot be what the user meant: a negative or non-finite peak,
    /// a floor outside [0, 1], warmup longer than the run, or WSD phases that do not fit.
    pub fn validate(&self) -> Result<(), TrainError> {
        let invalid = |key: &str, value: String, reason: &str| TrainError::InvalidConfig {
            key: key.to_string(),
            value,
            reason: reason.to_string(),
        };
        if !self.peak_lr.is_finite() || self.peak_lr < 0.0 {
            return Err(invalid(
                "learning_rate",
                self.peak_lr.to_string(),
                "must be a finite number >= 0",
            ));
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return Err(invalid(
                "min_lr_ratio",
                self.min_lr_ratio.to_string(),
                "must be in [0, 1] (a fraction of the peak learning rate)",
            ));
        }
        let decays = !matches!(self.kind, ScheduleKind::Constant);
        if decays && self.total_steps == 0 {
            return Err(invalid(
                "total_steps",
                "0".into(),
                "a decaying schedule needs at least one step",
            ));
        }
        if decays && self.warmup_steps > self.total_steps {
            return Err(invalid(
                "warmup_steps",
                self.warmup_steps.to_string(),
                &format!("longer than the run ({} steps)", self.total_steps),
            ));
        }
        if self.kind == ScheduleKind::WarmupStableDecay
            && self.warmup_steps + self.decay_steps > self.total_steps
        {
            return Err(invalid(
                "decay_steps",
                self.decay_steps.to_string(),
                &format!(
                    "warmup ({}) plus decay exceed the run ({} steps)",
                    self.warmup_steps, self.total_steps
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(kind: ScheduleKind, warmup: u64, total: u64) -> Schedule {
        Schedule {
            kind,
            peak_lr: 2.0,
            warmup_steps: warmup,
            total_steps: total,
            decay_steps: 0,
            min_lr_ratio: 0.0,
        }
    }

    fn close(actual: f64, expected: f64) {
        assert!(
            (actual - expected).abs() < 1e-12,
            "expected {expected}, got {actual}"
        );
    }

    #[test]
    fn linear_warms_up_then_decays_to_zero() {
        let s = schedule(ScheduleKind::Linear, 10, 110);
        close(s.lr_at(0), 0.0);
        close(s.lr_at(5), 1.0);
        close(s.lr_at(10), 2.0);
        close(s.lr_at(60), 1.0);
        close(s.lr_at(109), 0.02);
        close(s.lr_at(110), 0.0);
        close(s.lr_at(500), 0.0);
    }

    #[test]
    fn no_warmup_starts_at_the_peak() {
        close(schedule(ScheduleKind::Linear, 0, 100).lr_at(0), 2.0);
        close(schedule(ScheduleKind::Cosine, 0, 100).lr_at(0), 2.0);
        close(schedule(ScheduleKind::Constant, 0, 100).lr_at(0), 2.0);
    }

    #[test]
    fn linear_with_floor_ends_at_the_floor() {
        let s = Schedule {
            min_lr_ratio: 0.1,
            ..schedule(ScheduleKind::Linear, 0, 100)
        };
        close(s.lr_at(50), 2.0 * 0.55);
        close(s.lr_at(100), 0.2);
        close(s.lr_at(1000), 0.2);
    }

    #[test]
    fn cosine_is_half_way_at_mid_decay() {
        let s = schedule(ScheduleKind::Cosine, 10, 110);
        close(s.lr_at(5), 1.0);
        close(s.lr_at(10), 2.0);
        close(s.lr_at(60), 1.0);
        close(s.lr_at(35), 1.0 + std::f64::consts::FRAC_1_SQRT_2);
        close(s.lr_at(110), 0.0);
        let floored = Schedule {
            min_lr_ratio: 0.1,
            ..s
        };
        close(floored.lr_at(60), 2.0 * 0.55);
        close(floored.lr_at(110), 0.2);
    }

    #[test]
    fn constant_holds_the_peak_after_warmup() {
        let s = schedule(ScheduleKind::Constant, 4, 0);
        let lrs: Vec<f64> = (0..7).map(|step| s.lr_at(step)).collect();
        assert_eq!(lrs, vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.0, 2.0]);
        assert!(s.validate().is_ok(), "constant needs no total");
    }

    #[test]
    fn wsd_phases() {
        let s = Schedule {
            decay_steps: 20,
            ..schedule(ScheduleKind::WarmupStableDecay, 10, 100)
        };
        assert_eq!(s.stable_steps(), 70);
        close(s.lr_at(0), 0.0);
        close(s.lr_at(5), 1.0);
        for step in 10..80 {
            close(s.lr_at(step), 2.0);
        }
        close(s.lr_at(90), 1.0);
        close(s.lr_at(100), 0.0);
        close(s.lr_at(1000), 0.0);
    }

    #[test]
    fn wsd_floor_also_lifts_the_warmup_start() {
        // HF's WSD warms up from min_lr_ratio, not from 0.
        let s = Schedule {
            decay_steps: 20,
            min_lr_ratio: 0.1,
            ..schedule(ScheduleKind::WarmupStableDecay, 10, 100)
        };
        close(s.lr_at(0), 0.2);
        close(s.lr_at(5), 2.0 * 0.55);
        close(s.lr_at(90), 2.0 * 0.55);
        close(s.lr_at(100), 0.2);
        close(s.lr_at(250), 0.2);
    }

    #[test]
    fn validate_names_the_bad_key() {
        let long_warmup = schedule(ScheduleKind::Linear, 200, 100);
        let message = long_warmup.validate().unwrap_err().to_string();
        assert!(message.contains("warmup_steps = 200"), "{message}");

        let wsd = Schedule {
            decay_steps: 95,
            ..schedule(ScheduleKind::WarmupStableDecay, 10, 100)
        };
        assert!(
            wsd.validate()
                .unwrap_err()
                .to_string()
                .contains("decay_steps")
        );

        let floor = Schedule {
            min_lr_ratio: 1.5,
            ..schedule(ScheduleKind::Cosine, 0, 10)
        };
        assert!(
            floor
                .validate()
                .unwrap_err()
                .to_string()
                .contains("min_lr_ratio")
        );

        let nan = Schedule {
            peak_lr: f64::NAN,
            ..schedule(ScheduleKind::Cosine, 0, 10)
        };
        assert!(nan.validate().is_err());
        assert!(schedule(ScheduleKind::Linear, 0, 0).validate().is_err());
        assert!(schedule(ScheduleKind::Cosine, 10, 100).validate().is_ok());
    }

    #[test]
    fn serde_names_and_round_trip() {
        let s = Schedule {
            decay_steps: 20,
            ..schedule(ScheduleKind::WarmupStableDecay, 10, 100)
        };
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["kind"], "warmup_stable_decay");
        let back: Schedule = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);
        let wsd: ScheduleKind = serde_json::from_str("\"wsd\"").unwrap();
        assert_eq!(wsd, ScheduleKind::WarmupStableDecay);
        for (name, kind) in [
            ("linear", ScheduleKind::Linear),
            ("cosine", ScheduleKind::Cosine),
            ("constant", ScheduleKind::Constant),
        ] {
            let parsed: ScheduleKind = serde_json::from_str(&format!("\"{name}\"")).unwrap();
            assert_eq!(parsed, kind);
        }
        let unknown = serde_json::from_str::<Schedule>(
            r#"{"kind":"linear","peak_lr":1,"warmup_steps":0,"total_steps":1,"bogus":1}"#,
        );
        assert!(unknown.is_err());
    }
}
