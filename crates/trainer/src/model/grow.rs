//! Growing a model of a base vocabulary to an extended one (`mlm-train vocab extend`,
//! docs/vocabulary.md): what the vocabulary indexes (the word embeddings, the decoder tied to
//! them, and the output bias) gets the new rows; every base row is copied bit for bit, and each
//! new row, as well as a reused `[unusedN]` row (never trained), becomes the mean of the rows
//! of the pieces the base tokenizer split its token into, the bias likewise. transformers'
//! `resize_token_embeddings` (modeling_utils.py, `mean_resizing`) draws new rows from a normal
//! with the mean and covariance of all rows, the same start for every new token; the mean of
//! the token's own pieces starts each one near what the model already made of the word.

use std::collections::HashMap;

use serde::Serialize;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

use super::{Architecture, ModelError};

/// A row to (re)initialise: its id and the base ids it is the mean of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRow {
    pub id: i64,
    pub pieces: Vec<i64>,
}

/// What a growth did, for the load report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VocabGrowthReport {
    /// Rows of the base checkpoint and of the grown model.
    pub base_rows: i64,
    pub rows: i64,
    /// New rows after the base ones.
    pub appended: usize,
    /// Base rows given to a new token (reused `[unusedN]` slots), re-initialised.
    pub reinitialised: usize,
    /// The variables grown (word embeddings, output bias).
    pub variables: Vec<String>,
}

impl VocabGrowthReport {
    /// One line for the plan.
    pub fn summary(&self) -> String {
        format!(
            "{} -> {} rows: {} appended, {} reused rows re-initialised; each the mean of its \
             token's base pieces (word embeddings, tied decoder, {})",
            self.base_rows,
            self.rows,
            self.appended,
            self.reinitialised,
            self.variables.last().map_or("output bias", String::as_str)
        )
    }
}

/// Row i of the result is the mean of `table`'s rows `rows[i].pieces`, in f64 (pure; the
/// caller casts to the variable's kind).
pub fn mean_rows(table: &Tensor, rows: &[NewRow]) -> Result<Tensor, ModelError> {
    let torch = |operation| move |source| ModelError::Torch { operation, source };
    let table = table
        .f_to_kind(Kind::Double)
        .map_err(torch("cast rows to f64"))?;
    let means = rows
        .iter()
        .map(|row| {
            let index = Tensor::from_slice(&row.pieces).to_device(table.device());
            table
                .f_index_select(0, &index)
                .and_then(|pieces| pieces.f_mean_dim(0, false, Kind::Double))
                .map_err(torch("average piece rows"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Tensor::f_stack(&means, 0).map_err(torch("stack new rows"))
}

/// Copies every variable of `base` into `grown` (same names; the vocabulary variables have
/// `rows` rows in `grown`), then writes `new_rows` as piece means. On error `grown` may be
/// partly written.
pub fn grow_vocabulary(
    base: &VarStore,
    grown: &VarStore,
    architecture: &dyn Architecture,
    new_rows: &[NewRow],
) -> Result<VocabGrowthReport, ModelError> {
    let vocabulary = architecture
        .keys()
        .vocabulary_variables()
        .map(str::to_owned);
    let base_vars = base.variables();
    let grown_vars = grown.variables();
    let base_rows = base_vars
        .get(&vocabulary[0])
        .ok_or_else(|| ModelError::MissingVariable {
            name: vocabulary[0].clone(),
        })?
        .size()[0];
    let rows = grown_vars[&vocabulary[0]].size()[0];
    check_rows(new_rows, base_rows, rows)?;
    let _no_grad = tch::no_grad_guard();
    for (name, target) in &grown_vars {
        let source = base_vars
            .get(name)
            .ok_or_else(|| ModelError::MissingVariable { name: name.clone() })?;
        if vocabulary.contains(name) {
            grow_variable(source, target, new_rows, base_rows)?;
        } else {
            target
                .shallow_clone()
                .f_copy_(source)
                .map_err(|source| ModelError::Torch {
                    operation: "copy a base variable",
                    source,
                })?;
        }
    }
    Ok(VocabGrowthReport {
        base_rows,
        rows,
        appended: new_rows.iter().filter(|r| r.id >= base_rows).count(),
        reinitialised: new_rows.iter().filter(|r| r.id < base_rows).count(),
        variables: vocabulary.to_vec(),
    })
}

/// Every appended row must be described, and every piece must be a base row.
fn check_rows(new_rows: &[NewRow], base_rows: i64, rows: i64) -> Result<(), ModelError> {
    let described: HashMap<i64, &NewRow> = new_rows.iter().map(|r| (r.id, r)).collect();
    let bad = |message: String| Err(ModelError::BadInput(message));
    if let Some(id) = (base_rows..rows).find(|id| !described.contains_key(id)) {
        return bad(format!(
            "row {id} of the grown vocabulary has no base pieces to start from"
        ));
    }
    for row in new_rows {
        if row.id < 0 || row.id >= rows {
            return bad(format!("new row {} is outside the {rows} rows", row.id));
        }
        if row.pieces.is_empty() || row.pieces.iter().any(|&p| p < 0 || p >= base_rows) {
            return bad(format!(
                "new row {} starts from pieces {:?}, not rows of the {base_rows} base ones",
                row.id, row.pieces
            ));
        }
    }
    Ok(())
}

/// Base rows copied into the first rows, then the new rows written as piece means.
fn grow_variable(
    source: &Tensor,
    target: &Tensor,
    new_rows: &[NewRow],
    base_rows: i64,
) -> Result<(), ModelError> {
    let torch = |operation| move |source| ModelError::Torch { operation, source };
    let mut target = target.shallow_clone();
    target
        .f_narrow(0, 0, base_rows)
        .and_then(|mut head| head.f_copy_(source))
        .map_err(torch("copy base rows"))?;
    if new_rows.is_empty() {
        return Ok(());
    }
    let means = mean_rows(source, new_rows)?
        .f_to_kind(target.kind())
        .map_err(torch("cast new rows"))?;
    let ids: Vec<i64> = new_rows.iter().map(|r| r.id).collect();
    let index = Tensor::from_slice(&ids).to_device(target.device());
    let _written = target
        .f_index_copy_(0, &index, &means)
        .map_err(torch("write new rows"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use tch::Device;

    use super::*;
    use crate::model::{EncoderConfig, MaskedLanguageModel, init_weights_like_hf};

    fn config(model_type: &str, vocab_size: i64) -> EncoderConfig {
        EncoderConfig {
            model_type: Some(model_type.to_owned()),
            vocab_size,
            hidden_size: 8,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            intermediate_size: 16,
            max_position_embeddings: 24,
            pad_token_id: Some(1),
            ..EncoderConfig::default()
        }
    }

    /// A model in f64 with its variables, initialised from `seed` (the bias too, so that its
    /// means are not all zero).
    fn model(config: &EncoderConfig, seed: u64) -> (VarStore, MaskedLanguageModel) {
        let mut vs = VarStore::new(Device::Cpu);
        let model = MaskedLanguageModel::new(&vs.root(), config);
        init_weights_like_hf(&vs, config, seed);
        vs.double();
        let bias = &vs.variables()[config.architecture().keys().decoder_bias];
        let _no_grad = tch::no_grad_guard();
        bias.shallow_clone().copy_(&Tensor::randn(
            [config.vocab_size],
            (Kind::Double, Device::Cpu),
        ));
        (vs, model)
    }

    fn rows() -> Vec<NewRow> {
        vec![
            NewRow {
                id: 3,
                pieces: vec![5, 6],
            }, // a reused slot
            NewRow {
                id: 20,
                pieces: vec![7, 8, 9],
            },
            NewRow {
                id: 21,
                pieces: vec![4],
            },
            NewRow {
                id: 22,
                pieces: vec![10, 11, 12, 19],
            },
        ]
    }

    fn as_f64(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(&t.flatten(0, -1)).unwrap()
    }

    /// Base rows are copied bit for bit, every other variable too, and each new row (and the
    /// reused one) is the mean of its pieces' base rows, computed here in f64 independently.
    fn grows_like_the_mean_of_pieces(model_type: &str) {
        let (base, _) = model(&config(model_type, 20), 7);
        let grown_config = config(model_type, 23);
        let (grown, _) = model(&grown_config, 8);
        let report = grow_vocabulary(&base, &grown, grown_config.architecture(), &rows()).unwrap();
        assert_eq!((report.base_rows, report.rows), (20, 23));
        assert_eq!((report.appended, report.reinitialised), (3, 1));
        let (b, g) = (base.variables(), grown.variables());
        let vocabulary = grown_config.architecture().keys().vocabulary_variables();
        for (name, tensor) in &g {
            if !vocabulary.contains(&name.as_str()) {
                assert!(tensor.equal(&b[name]), "{model_type}: {name} copied");
            }
        }
        for name in vocabulary {
            let (old, new) = (&b[name], &g[name]);
            let width = if old.dim() == 2 { old.size()[1] } else { 1 };
            let old_rows = as_f64(old);
            let new_rows = as_f64(new);
            let row =
                |v: &[f64], i: i64| v[(i * width) as usize..((i + 1) * width) as usize].to_vec();
            for id in (0..20).filter(|&id| id != 3) {
                assert_eq!(
                    row(&new_rows, id),
                    row(&old_rows, id),
                    "{model_type}: {name} row {id}"
                );
            }
            for r in rows() {
                let mean: Vec<f64> = (0..width as usize)
                    .map(|j| {
                        r.pieces.iter().map(|&p| row(&old_rows, p)[j]).sum::<f64>()
                            / r.pieces.len() as f64
                    })
                    .collect();
                for (got, want) in row(&new_rows, r.id).iter().zip(&mean) {
                    assert!(
                        (got - want).abs() <= 1e-15 * want.abs().max(1.0),
                        "{model_type}: {name} row {}",
                        r.id
                    );
                }
            }
        }
    }

    #[test]
    fn bert_rows_grow_as_piece_means_and_base_rows_stay_bit_identical() {
        grows_like_the_mean_of_pieces("bert");
    }

    #[test]
    fn roberta_rows_grow_as_piece_means_and_base_rows_stay_bit_identical() {
        grows_like_the_mean_of_pieces("roberta");
    }

    #[test]
    fn rows_without_pieces_or_with_foreign_pieces_are_refused() {
        let (base, _) = model(&config("bert", 20), 7);
        let (grown, _) = model(&config("bert", 23), 8);
        let family = crate::model::architecture_for("bert").unwrap();
        let mut missing = rows();
        missing.pop();
        let e = grow_vocabulary(&base, &grown, family, &missing).unwrap_err();
        assert!(
            e.to_string()
                .contains("row 22 of the grown vocabulary has no base pieces"),
            "{e}"
        );
        let mut foreign = rows();
        foreign[1].pieces.push(21);
        let e = grow_vocabulary(&base, &grown, family, &foreign).unwrap_err();
        assert!(
            e.to_string().contains("not rows of the 20 base ones"),
            "{e}"
        );
    }
}
