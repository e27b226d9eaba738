//! An interrupted prepare resumes to exactly the uninterrupted output.

use super::*;

#[test]
fn an_interrupted_prepare_resumes_to_the_same_output() {
    assert_resumes_identically(|dir| config(dir, &[fixture("abstracts.jsonl")]), &[1, 3]);
}

/// With phrases mined and matched: the match counts of `phrases.tsv` and the manifest
/// include the documents packed before the stop (a resumed run does not tokenize them again).
#[test]
fn an_interrupted_phrase_prepare_resumes_to_the_same_counts() {
    assert_resumes_identically(
        |dir| {
            let mut cfg = config(dir, &[fixture("abstracts.jsonl")]);
            cfg.phrases = Some(crate::phrases::PhraseSpec {
                file: None,
                pmi_ngrams: Some(40),
                pmi_min_count: 2,
            });
            cfg
        },
        &[1, 3],
    );
}

/// For both packings, a prepare stopped after each of `stops` shards resumes to exactly the
/// uninterrupted output (`stops` empty: after every shard but the last two, which the end of
/// the input closes together with no save in between).
pub(super) fn assert_resumes_identically(
    make_config: impl Fn(&TempDir) -> CorpusConfig,
    stops: &[usize],
) {
    for packing in [Packing::Concat, Packing::Document] {
        let configure = |dir: &TempDir| {
            let mut cfg = make_config(dir);
            cfg.packing = packing;
            cfg.deduplicate = true;
            cfg
        };
        let whole = TempDir::new("prep-whole");
        let reference = run(&configure(&whole)).unwrap().manifest;
        let total_shards = reference.train.shards.len() + reference.validation.shards.len();
        assert!(total_shards > 3);
        let every: Vec<usize> = (1..total_shards - 1).collect();
        for &stop in if stops.is_empty() { &every } else { stops } {
            let dir = TempDir::new("prep-resume");
            let cfg = configure(&dir);
            let out = cfg.output.clone().unwrap();
            let e = prepare(
                &cfg,
                &PrepareOptions {
                    observer: &Quiet,
                    stop_after_shards: Some(stop),
                },
            )
            .unwrap_err();
            // Shards that close together (the last of each split) are saved together.
            let CorpusError::Interrupted { shards: kept } = e else {
                panic!("{e}")
            };
            assert!(kept >= stop && kept < total_shards, "{kept}");
            let refused = PreparedCorpus::open(&out).unwrap_err().to_string();
            assert!(refused.contains("not finished"), "{refused}");
            let report = run(&cfg).unwrap();
            assert_eq!(
                report.outcome,
                Outcome::Resumed { shards_kept: kept },
                "{packing:?}"
            );
            // Paths differ between the two directories (and so do the config keys).
            let mut m = report.manifest;
            m.config_key = reference.config_key.clone();
            m.config = reference.config.clone();
            m.sources = reference.sources.clone();
            assert_eq!(m, reference, "{packing:?} stop {stop}");
            for shard in reference
                .train
                .shards
                .iter()
                .chain(&reference.validation.shards)
            {
                let bytes = |d: &Path| std::fs::read(d.join(&shard.file)).unwrap();
                let whole_out = whole.path().join("out");
                assert!(bytes(&out) == bytes(&whole_out), "{} differs", shard.file);
            }
            let phrases = |d: &Path| std::fs::read_to_string(d.join("phrases.tsv")).ok();
            let whole_phrases = phrases(&whole.path().join("out"));
            assert_eq!(phrases(&out), whole_phrases, "{packing:?} stop {stop}");
            assert!(!out.join(state::STATE_FILE).exists());
            assert_eq!(run(&cfg).unwrap().outcome, Outcome::AlreadyComplete);
        }
    }
}
