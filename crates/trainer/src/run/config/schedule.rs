//! The learning-rate schedule `[training]` describes: built from its keys and checked, the
//! errors naming the key each number came from. Part of the config (a leaf of the run's
//! modules: the config validates `max_steps` with it, the run builds its schedule with it).

use super::TrainingConfig;
use crate::error::TrainError;
use crate::schedule::{Schedule, ScheduleSource, Setting};

/// The learning-rate schedule of `[training]` over `total_steps`.
pub(crate) fn schedule_for(training: &TrainingConfig, total_steps: u64) -> Schedule {
    let warmup_steps = training
        .warmup_steps
        .unwrap_or_else(|| (training.warmup_ratio * total_steps as f64).ceil() as u64);
    Schedule {
        kind: training.lr_schedule,
        peak_lr: training.learning_rate,
        warmup_steps,
        total_steps,
        decay_steps: (training.decay_ratio * total_steps as f64).round() as u64,
        min_lr_ratio: training.min_lr_ratio,
        warmup_type: training.warmup_type,
        decay_type: training.decay_type,
    }
}

/// [`schedule_for`], checked: errors name the `[training]` key each number came from
/// (`training.warmup_ratio` when the warmup was derived from it, `training.epochs` when the
/// step count was).
pub(crate) fn checked_schedule_for(
    training: &TrainingConfig,
    total_steps: u64,
) -> Result<Schedule, TrainError> {
    let schedule = schedule_for(training, total_steps);
    schedule.validate_from(&schedule_source(training))?;
    Ok(schedule)
}

/// The `[training]` keys a schedule of [`schedule_for`] is made of.
fn schedule_source(training: &TrainingConfig) -> ScheduleSource {
    let warmup = match training.warmup_steps {
        Some(steps) => Setting::new("training.warmup_steps", steps),
        None => Setting::new("training.warmup_ratio", training.warmup_ratio),
    };
    let total = match training.max_steps {
        Some(steps) => Setting::new("training.max_steps", steps),
        None => Setting::new("training.epochs", training.epochs),
    };
    ScheduleSource {
        peak_lr: "training.learning_rate",
        min_lr_ratio: "training.min_lr_ratio",
        warmup,
        total,
        decay: Setting::new("training.decay_ratio", training.decay_ratio),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::ScheduleKind;

    #[test]
    fn warmup_steps_win_over_the_ratio_and_the_ratio_rounds_up() {
        let mut training = TrainingConfig {
            warmup_ratio: 0.06,
            learning_rate: 2e-4,
            lr_schedule: ScheduleKind::Cosine,
            ..TrainingConfig::default()
        };
        let schedule = schedule_for(&training, 1000);
        assert_eq!(schedule.warmup_steps, 60);
        assert_eq!(schedule.total_steps, 1000);
        assert_eq!(schedule.kind, ScheduleKind::Cosine);
        assert_eq!(schedule.peak_lr, 2e-4);
        assert_eq!(schedule_for(&training, 10).warmup_steps, 1);
        training.warmup_steps = Some(7);
        assert_eq!(schedule_for(&training, 1000).warmup_steps, 7);
        assert_eq!(schedule_for(&training, 1000).decay_steps, 100);
    }

    #[test]
    fn checked_schedules_blame_the_key_the_user_set() {
        let mut training = TrainingConfig {
            lr_schedule: ScheduleKind::WarmupStableDecay,
            warmup_ratio: 0.5,
            decay_ratio: 0.6,
            ..TrainingConfig::default()
        };
        let message = checked_schedule_for(&training, 10).unwrap_err().to_string();
        assert!(
            message.starts_with("training.decay_ratio = 0.6 makes the decay (6 steps)"),
            "{message}"
        );
        assert!(
            message.contains("(5 steps, training.warmup_ratio = 0.5)"),
            "{message}"
        );
        assert!(message.contains("training.epochs = 3"), "{message}");

        training.lr_schedule = ScheduleKind::Linear;
        training.warmup_steps = Some(20);
        training.max_steps = Some(10);
        let message = checked_schedule_for(&training, 10).unwrap_err().to_string();
        assert!(
            message.starts_with("training.warmup_steps = 20 makes the warmup (20 steps) longer"),
            "{message}"
        );
        assert!(message.contains("training.max_steps = 10"), "{message}");
        assert!(checked_schedule_for(&training, 20).is_ok());
    }
}
