//! Learning-rate schedules: linear, cosine and constant after a linear warmup, and
//! warmup-stable-decay, as pure functions of the optimizer step.
//!
//! Each is a port of a `transformers/optimization.py` lambda (transformers 5.x):
//! `_get_linear_schedule_with_warmup_lr_lambda`, `_get_cosine_schedule_with_warmup_lr_lambda`
//! (the `min_lr_rate` variant behind `get_cosine_with_min_lr_schedule_with_warmup`, which equals
//! plain `get_cosine_schedule_with_warmup` at a floor of 0),
//! `_get_constant_schedule_with_warmup_lr_lambda` and `_get_wsd_scheduler_lambda` (its
//! `warmup_type` and `decay_type`: linear, cosine or 1-sqrt, ModernBERT's decay; by default
//! linear warmup and cosine decay, `num_cycles = 0.5`, as `get_wsd_schedule`).
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

/// How WSD's warmup rises and its decay falls (`get_wsd_schedule`'s `warmup_type` and
/// `decay_type`), over the phase's progress `p` in [0, 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RampShape {
    /// Warmup `p`, decay `1 - p`.
    #[serde(rename = "linear")]
    Linear,
    /// Warmup `(1 - cos(pi p)) / 2`, decay `(1 + cos(pi p)) / 2`.
    #[serde(rename = "cosine")]
    Cosine,
    /// Warmup `1 - sqrt(1 - p)`, decay `1 - sqrt(p)` (Hägele et al. 2024; ModernBERT's decay).
    #[serde(rename = "1-sqrt")]
    OneMinusSqrt,
}

impl RampShape {
    /// The warmup's multiplier at progress `p`, before the floor.
    fn rise(self, p: f64) -> f64 {
        match self {
            Self::Linear => p,
            Self::Cosine => 0.5 * (1.0 - (std::f64::consts::PI * p).cos()),
            Self::OneMinusSqrt => 1.0 - (1.0 - p).sqrt(),
        }
    }

    /// The decay's multiplier at progress `p`, before the floor.
    fn fall(self, p: f64) -> f64 {
        match self {
            Self::Linear => 1.0 - p,
            Self::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * NUM_CYCLES * 2.0 * p).cos()),
            Self::OneMinusSqrt => 1.0 - p.sqrt(),
        }
    }

    /// The name the config and transformers use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Linear => "linear",
            Self::Cosine => "cosine",
            Self::OneMinusSqrt => "1-sqrt",
        }
    }
}

fn linear_ramp() -> RampShape {
    RampShape::Linear
}

fn cosine_ramp() -> RampShape {
    RampShape::Cosine
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
    /// WarmupStableDecay only: the warmup's shape (default linear).
    #[serde(default = "linear_ramp")]
    pub warmup_type: RampShape,
    /// WarmupStableDecay only: the decay's shape (default cosine).
    #[serde(default = "cosine_ramp")]
    pub decay_type: RampShape,
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

    /// `_get_wsd_scheduler_lambda` with `warmup_type` and `decay_type`. The stable phase is
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
            let factor = self.warmup_type.rise(s / warmup.max(1.0));
            return (factor * (1.0 - floor) + floor).max(0.0);
        }
        if s < warmup + stable {
            return 1.0;
        }
        if s < warmup + stable + decay {
            let factor = self.decay_type.fall((s - warmup - stable) / decay.max(1.0));
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
    /// a floor outside [0, 1], no steps, warmup longer than the run, or WSD phases that do not
    /// fit. Errors name this struct's fields; [`Schedule::validate_from`] names config keys.
    pub fn validate(&self) -> Result<(), TrainError> {
        self.validate_from(&ScheduleSource::fields(self))
    }

    /// [`Schedule::validate`], with errors naming the config values in `source`.
    pub fn validate_from(&self, source: &ScheduleSource) -> Result<(), TrainError> {
        use crate::error::check;
        check::non_negative(source.peak_lr, self.peak_lr)?;
        check::fraction(source.min_lr_ratio, self.min_lr_ratio)?;
        self.check_has_steps(source)?;
        self.check_warmup_fits(source)?;
        self.check_decay_fits(source)
    }

    /// Linear and cosine decay towards `total_steps`, so they need one.
    fn check_has_steps(&self, source: &ScheduleSource) -> Result<(), TrainError> {
        if self.kind == ScheduleKind::Constant || self.total_steps > 0 {
            return Ok(());
        }
        Err(source
            .total
            .error("gives a run of 0 steps; a decaying schedule needs at least one".to_owned()))
    }

    /// The warmup ends within the run (a constant schedule without a total has no end).
    fn check_warmup_fits(&self, source: &ScheduleSource) -> Result<(), TrainError> {
        let has_end = self.kind != ScheduleKind::Constant || self.total_steps > 0;
        if !has_end || self.warmup_steps <= self.total_steps {
            return Ok(());
        }
        Err(source.warmup.error(format!(
            "makes the warmup ({} steps) longer than the run ({} steps, {})",
            self.warmup_steps, self.total_steps, source.total
        )))
    }

    /// WSD: warmup and decay together fit in the run (the stable phase may be empty).
    fn check_decay_fits(&self, source: &ScheduleSource) -> Result<(), TrainError> {
        if self.kind != ScheduleKind::WarmupStableDecay
            || self.warmup_steps + self.decay_steps <= self.total_steps
        {
            return Ok(());
        }
        Err(source.decay.error(format!(
            "makes the decay ({} steps) too long: with the warmup ({} steps, {}) it exceeds the \
             run ({} steps, {})",
            self.decay_steps, self.warmup_steps, source.warmup, self.total_steps, source.total
        )))
    }
}

/// A config value a number of a schedule was resolved from: `training.warmup_ratio = 0.06`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The full key, as the config file spells it.
    pub key: &'static str,
    /// The value, as the user wrote it.
    pub value: String,
}

impl Setting {
    pub fn new(key: &'static str, value: impl std::fmt::Display) -> Self {
        Self {
            key,
            value: value.to_string(),
        }
    }

    fn error(&self, reason: String) -> TrainError {
        TrainError::invalid_config(self.key, &self.value, reason)
    }
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} = {}", self.key, self.value)
    }
}

/// Where each number of a [`Schedule`] came from, so that its errors blame what the user
/// wrote: the warmup of `training.warmup_ratio` when that made it, the run length of
/// `training.epochs` when the step count was derived from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSource {
    /// Key of the peak learning rate.
    pub peak_lr: &'static str,
    /// Key of the floor.
    pub min_lr_ratio: &'static str,
    pub warmup: Setting,
    pub total: Setting,
    pub decay: Setting,
}

impl ScheduleSource {
    /// The schedule's own fields, for a schedule that was not read from a config.
    pub fn fields(schedule: &Schedule) -> Self {
        Self {
            peak_lr: "peak_lr",
            min_lr_ratio: "min_lr_ratio",
            warmup: Setting::new("warmup_steps", schedule.warmup_steps),
            total: Setting::new("total_steps", schedule.total_steps),
            decay: Setting::new("decay_steps", schedule.decay_steps),
        }
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
            warmup_type: RampShape::Linear,
            decay_type: RampShape::Cosine,
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
    fn validate_from_blames_the_config_value_the_number_came_from() {
        let source = ScheduleSource {
            peak_lr: "training.learning_rate",
            min_lr_ratio: "training.min_lr_ratio",
            warmup: Setting::new("training.warmup_ratio", 0.5),
            total: Setting::new("training.epochs", 1.0),
            decay: Setting::new("training.decay_ratio", 0.6),
        };
        let wsd = Schedule {
            decay_steps: 6,
            ..schedule(ScheduleKind::WarmupStableDecay, 5, 10)
        };
        assert_eq!(
            wsd.validate_from(&source).unwrap_err().to_string(),
            "training.decay_ratio = 0.6 makes the decay (6 steps) too long: with the warmup \
             (5 steps, training.warmup_ratio = 0.5) it exceeds the run (10 steps, \
             training.epochs = 1)"
        );
        let long_warmup = schedule(ScheduleKind::Constant, 20, 10);
        let message = long_warmup.validate_from(&source).unwrap_err().to_string();
        assert!(
            message.starts_with("training.warmup_ratio = 0.5 makes the warmup (20 steps)"),
            "{message}"
        );
        let negative = Schedule {
            peak_lr: -1.0,
            ..schedule(ScheduleKind::Linear, 0, 10)
        };
        assert_eq!(
            negative.validate_from(&source).unwrap_err().to_string(),
            "training.learning_rate = -1 must be a finite number >= 0"
        );
        let no_steps = schedule(ScheduleKind::Linear, 0, 0);
        let message = no_steps.validate_from(&source).unwrap_err().to_string();
        assert!(message.starts_with("training.epochs = 1 gives a run of 0 steps"));
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
