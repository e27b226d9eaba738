use super::*;

fn message(result: Result<(), TrainError>) -> String {
    result.unwrap_err().to_string()
}

/// A change to the default `[training]`.
type Edit = fn(&mut TrainingConfig);

fn training(edit: impl FnOnce(&mut TrainingConfig)) -> Result<(), TrainError> {
    let mut config = TrainingConfig::default();
    edit(&mut config);
    config.validate()
}

#[test]
fn defaults_are_valid() {
    ModelSection::default().validate().unwrap();
    TrainingConfig::default().validate().unwrap();
    EvalConfig::default().validate().unwrap();
    CheckpointConfig::default().validate().unwrap();
}

#[test]
fn training_errors_name_the_full_key_and_value() {
    let cases: [(Edit, &str); 14] = [
        (|t| t.batch_size = 0, "training.batch_size = 0 must be >= 1"),
        (
            |t| t.gradient_accumulation_steps = 0,
            "training.gradient_accumulation_steps = 0 must be >= 1",
        ),
        (
            |t| t.logging_steps = 0,
            "training.logging_steps = 0 must be >= 1",
        ),
        (|t| t.prefetch = 0, "training.prefetch = 0 must be >= 1"),
        (
            |t| t.max_steps = Some(0),
            "training.max_steps = 0 must be >= 1",
        ),
        (
            |t| t.epochs = 0.0,
            "training.epochs = 0 must be a finite number > 0",
        ),
        (
            |t| t.learning_rate = -1.0,
            "training.learning_rate = -1 must be a finite number > 0",
        ),
        (
            |t| t.adam_epsilon = 0.0,
            "training.adam_epsilon = 0 must be a finite number > 0",
        ),
        (
            |t| t.adam_beta1 = -0.1,
            "training.adam_beta1 = -0.1 must be in [0, 1)",
        ),
        (
            |t| t.adam_beta2 = 1.0,
            "training.adam_beta2 = 1 must be in [0, 1)",
        ),
        (
            |t| t.weight_decay = -0.1,
            "training.weight_decay = -0.1 must be a finite number >= 0",
        ),
        (
            |t| t.max_grad_norm = f64::NAN,
            "training.max_grad_norm = NaN must be a finite number >= 0",
        ),
        (
            |t| t.warmup_ratio = 1.5,
            "training.warmup_ratio = 1.5 must be in [0, 1]",
        ),
        (
            |t| t.min_lr_ratio = -0.5,
            "training.min_lr_ratio = -0.5 must be in [0, 1]",
        ),
    ];
    for (edit, expected) in cases {
        assert_eq!(message(training(edit)), expected);
    }
}

#[test]
fn the_schedule_is_checked_at_load_when_max_steps_fixes_the_run() {
    let long_warmup = message(training(|t| {
        t.max_steps = Some(10);
        t.warmup_steps = Some(20);
    }));
    assert!(
        long_warmup.starts_with("training.warmup_steps = 20 makes the warmup (20 steps) longer"),
        "{long_warmup}"
    );
    // Without max_steps the run's length needs the corpus: checked when it starts.
    assert!(training(|t| t.warmup_steps = Some(20)).is_ok());
    let wsd = message(training(|t| {
        t.lr_schedule = ScheduleKind::WarmupStableDecay;
        t.warmup_ratio = 0.6;
        t.decay_ratio = 0.5;
    }));
    assert_eq!(
        wsd,
        "training.decay_ratio = 0.5 plus training.warmup_ratio = 0.6 exceeds 1: warmup and \
         decay cannot fit in the run"
    );
    assert!(
        training(|t| {
            t.lr_schedule = ScheduleKind::WarmupStableDecay;
            t.warmup_ratio = 0.9;
            t.decay_ratio = 0.1;
        })
        .is_ok()
    );
    // WSD's shapes shape WSD only: elsewhere they would be silently ignored.
    let shaped = message(training(|t| {
        t.decay_type = crate::schedule::RampShape::OneMinusSqrt
    }));
    assert_eq!(
        shaped,
        "training.decay_type = \"1-sqrt\" applies to lr_schedule = \"warmup_stable_decay\" only"
    );
    assert!(
        training(|t| {
            t.lr_schedule = ScheduleKind::WarmupStableDecay;
            t.warmup_type = crate::schedule::RampShape::Cosine;
            t.decay_type = crate::schedule::RampShape::OneMinusSqrt;
        })
        .is_ok()
    );
}

#[test]
fn model_errors_name_the_full_key() {
    let model = |edit: fn(&mut ModelSection)| {
        let mut section = ModelSection::default();
        edit(&mut section);
        message(section.validate())
    };
    assert_eq!(
        model(|m| m.hidden_size = 100),
        "model.hidden_size = 100 must be a multiple of model.num_attention_heads = 12"
    );
    assert_eq!(
        model(|m| m.num_attention_heads = 0),
        "model.num_attention_heads = 0 must be >= 1"
    );
    assert_eq!(
        model(|m| m.dropout = Some(1.5)),
        "model.dropout = 1.5 must be in [0, 1)"
    );
    assert_eq!(
        model(|m| m.max_position_embeddings = Some(0)),
        "model.max_position_embeddings = 0 must be >= 1"
    );
    assert_eq!(
        model(|m| {
            m.init_from = Some(PathBuf::from("bert"));
            m.config = Some(PathBuf::from("config.json"));
        }),
        "model.config = \"config.json\" cannot be given together with model.init_from \
         (which has its own config.json)"
    );
}

#[test]
fn eval_and_checkpoint_errors_name_the_full_key() {
    let eval = EvalConfig {
        eval_batch_size: 0,
        ..EvalConfig::default()
    };
    assert_eq!(
        message(eval.validate()),
        "eval.eval_batch_size = 0 must be >= 1"
    );
    let eval = EvalConfig {
        max_eval_samples: Some(0),
        ..EvalConfig::default()
    };
    assert_eq!(
        message(eval.validate()),
        "eval.max_eval_samples = 0 must be >= 1"
    );
    let eval = EvalConfig {
        mlm_probability: 1.0,
        ..EvalConfig::default()
    };
    assert_eq!(
        message(eval.validate()),
        "eval.mlm_probability = 1 must be in (0, 1)"
    );
    let every_step = CheckpointConfig {
        save_minutes: Some(0.0),
        keep_last: 0,
        save_steps: 0,
    };
    assert!(every_step.validate().is_ok());
    let negative = CheckpointConfig {
        save_minutes: Some(-1.0),
        ..CheckpointConfig::default()
    };
    assert_eq!(
        message(negative.validate()),
        "checkpoint.save_minutes = -1 must be a finite number >= 0"
    );
}

/// Held-out masking takes `[eval]`'s rate and unit and every other key from `[masking]`.
#[test]
fn held_out_masking_is_evals_rate_and_unit_over_the_run_masking() {
    let training = mlm_masking::MaskingConfig {
        mlm_probability: 0.3,
        whole_word_mask: true,
        eval_seed: 7,
        ..mlm_masking::MaskingConfig::default()
    };
    let held_out = EvalConfig::default().masking(&training);
    assert_eq!(held_out.mlm_probability, 0.15);
    assert!(!held_out.whole_word_mask);
    assert_eq!(held_out.eval_seed, 7);
    let words = EvalConfig {
        unit: super::EvalUnit::Word,
        ..EvalConfig::default()
    };
    assert!(words.masking(&training).whole_word_mask);
}
