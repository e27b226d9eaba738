//! `training.cuda_graphs`: the training step at fixed shapes, captured once as two CUDA
//! graphs and replayed every step after (PyTorch's "whole-network capture",
//! torch/cuda/graphs.py and the CUDA graphs notes): one graph for a micro-batch's forward and
//! backward, one for clipping and the fused AdamW update. A replay launches the hundreds of
//! kernels of a BERT step with no host work per kernel, which is what a step of small
//! matmuls on a fast GPU waits on.
//!
//! What capture needs, and how this path provides it:
//! - *Fixed shapes.* Every micro-batch is laid out in one [`StaticShape`]: `rows` sequences of
//!   `seq_len` tokens (the corpus's longest; `document` batches are padded up to it) and
//!   `masked_slots` predicted positions (the sparse head gathers that many rows; unused slots
//!   point at token 0 with label -100, which adds nothing to the loss or the gradients).
//!   A micro-batch that does not fit (a short last batch, more masked tokens than slots)
//!   runs the plain step instead; the run counts those, and the replays
//!   ([`GraphCounts`], `metrics.jsonl`'s `graphs`).
//! - *Inputs in place.* Each micro-batch is copied into the tensors the graph was captured
//!   with; the loss normaliser and the learning rate are device tensors written before each
//!   step (the fused AdamW's tensor-`lr` overload), so the schedule moves under replay.
//! - *Gradients in place.* They are zeroed with one `_foreach_zero_` before each step, never
//!   freed, so the captured backward accumulates into the same memory every replay.
//! - *Dropout.* Each micro-batch's generator is reseeded (`manual_seed`) before its replay;
//!   libtorch's graph-safe Philox state reads the seed at replay, so a replayed micro-batch
//!   draws the masks an eager one would.
//! - *Warm-up.* [`WARMUP_STEPS`] steps run eagerly on the side stream that captures, so
//!   cuBLAS workspaces and every optimizer state exist before capture (PyTorch: 3 warm-up
//!   iterations).
//!
//! On the CPU, and during warm-up, the same fixed-shape body runs eagerly: that is the path
//! the tests check against the plain step (it differs only by summing over the unused
//! slots' zeros) and for bit-identical resume. fp16's loss scaler is all device tensors, so
//! scaling, unscaling and the scale update are captured with the rest. Not supported
//! (refused when the run opens): data parallelism (NCCL inside a graph), the single-tensor
//! optimizer (it reads the host), `training.unpad` (its shapes change every batch).

use mlm_masking::{Batch, IGNORE_INDEX, MaskingConfig, SelectionMode};
use mlm_torch_ext::TorchExtError;
use mlm_torch_ext::cuda_graph::{CaptureFailure, CudaGraph, SideStream};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::RunError;
use super::job::GraphCounts;
use super::step::{BatchTensors, StepContext, batch_tensors, dropout_seed, masked_logits};
use crate::model::{MaskedLanguageModel, masked_lm_loss_sum};
use crate::optim::{AdamW, GradScaler, unscale_and_clip};

/// Eager steps on the capture stream before capture.
pub const WARMUP_STEPS: u64 = 3;

/// The layout of every micro-batch of a graphed step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticShape {
    pub rows: usize,
    pub seq_len: usize,
    pub masked_slots: usize,
}

impl StaticShape {
    pub fn new(rows: usize, seq_len: usize, masking: &MaskingConfig) -> Self {
        Self {
            rows,
            seq_len,
            masked_slots: masked_slots(rows, seq_len, masking),
        }
    }
}

/// How many predicted positions a micro-batch of `rows` x `seq_len` gets. `selection =
/// "exact"` takes at most `max(1, round(p * n))` of a sequence's n tokens (capped by
/// `max_predictions_per_seq`), a hard bound. Independent (Bernoulli) selection has none, so
/// the slots are the mean plus 6 standard deviations of the binomial count (3x wider for
/// whole words, whose pieces are drawn together), rounded up to a multiple of 8: a batch
/// beyond it is rarer than one in a hundred million, and runs the plain step.
pub fn masked_slots(rows: usize, seq_len: usize, masking: &MaskingConfig) -> usize {
    let cells = rows * seq_len;
    let p = masking.peak_probability();
    let slots = match masking.selection {
        SelectionMode::Exact => {
            let per_sequence = ((p * seq_len as f64).round() as usize).clamp(1, seq_len);
            let cap = masking.max_predictions_per_seq.unwrap_or(usize::MAX);
            rows * per_sequence.min(cap)
        }
        SelectionMode::Independent => {
            let mean = cells as f64 * p;
            // Words, spans and phrases are drawn together: a wider spread.
            let spread = if masking.needs_unit_starts() {
                3.0
            } else {
                1.0
            };
            let sd = (cells as f64 * p * (1.0 - p)).sqrt() * spread;
            (mean + 6.0 * sd).ceil() as usize
        }
    };
    slots.div_ceil(8).saturating_mul(8).clamp(8, cells.max(8))
}

/// `batch` laid out in `shape` on the host: rows padded to `shape.seq_len` with `pad_id`
/// (attention mask 0), masked positions re-indexed to the wider rows and padded to
/// `shape.masked_slots` with position 0 and label -100. `None` when it does not fit: fewer
/// or more rows, longer rows, more masked tokens. `labels` is left empty (the step reads
/// only the masked positions).
pub fn lay_out(batch: &Batch, shape: StaticShape, pad_id: i64) -> Option<Batch> {
    let fits = batch.batch_size == shape.rows
        && batch.seq_len <= shape.seq_len
        && batch.masked_tokens() <= shape.masked_slots;
    if !fits {
        return None;
    }
    let (from, to) = (batch.seq_len, shape.seq_len);
    let mut input_ids = vec![pad_id; shape.rows * to];
    let mut attention_mask = vec![0; shape.rows * to];
    for row in 0..shape.rows {
        input_ids[row * to..row * to + from]
            .copy_from_slice(&batch.input_ids[row * from..][..from]);
        attention_mask[row * to..row * to + from]
            .copy_from_slice(&batch.attention_mask[row * from..][..from]);
    }
    let unused = shape.masked_slots - batch.masked_tokens();
    let reindex = |&flat: &i64| (flat / from as i64) * to as i64 + flat % from as i64;
    let masked_positions = batch.masked_positions.iter().map(reindex);
    Some(Batch {
        batch_size: shape.rows,
        seq_len: to,
        input_ids,
        attention_mask,
        labels: Vec::new(),
        masked_positions: masked_positions
            .chain(std::iter::repeat_n(0, unused))
            .collect(),
        masked_labels: (batch.masked_labels.iter().copied())
            .chain(std::iter::repeat_n(IGNORE_INDEX, unused))
            .collect(),
        masked_is_mask_token: (batch.masked_is_mask_token.iter().copied())
            .chain(std::iter::repeat_n(false, unused))
            .collect(),
    })
}

/// What a graphed step leaves on the device, as the plain step does.
pub struct GraphedOutputs {
    /// The step's summed cross-entropy (0-dim f64).
    pub loss_sum: Tensor,
    /// The gradient norm before clipping (0-dim).
    pub grad_norm: Tensor,
}

/// The graphs once captured, with the tensors they write.
struct Captured {
    graph: CudaGraph,
    outputs: Vec<Tensor>,
}

/// The fixed-shape step and, on CUDA, its graphs.
pub struct GraphedStep {
    shape: StaticShape,
    pad_id: i64,
    /// The tensors every micro-batch is copied into.
    inputs: BatchTensors,
    /// Masked tokens of the step over all ranks (0-dim, the loss's kind).
    normaliser: Tensor,
    /// The learning rate (0-dim: f32 on CUDA, as the fused kernel reads it; f64 on the CPU).
    lr: Tensor,
    /// CUDA: the capture stream and, after warm-up, the two graphs.
    stream: Option<SideStream>,
    micro_batch: Option<Captured>,
    update: Option<Captured>,
    counts: GraphCounts,
}

impl GraphedStep {
    /// The buffers of `shape` on `device`; `loss_kind` is the kind of the loss sum (f32, or
    /// f64 for fp64 runs).
    pub fn new(
        shape: StaticShape,
        pad_id: i64,
        device: Device,
        loss_kind: Kind,
    ) -> Result<Self, RunError> {
        let empty = Batch {
            batch_size: shape.rows,
            seq_len: shape.seq_len,
            input_ids: vec![pad_id; shape.rows * shape.seq_len],
            attention_mask: vec![1; shape.rows * shape.seq_len],
            labels: Vec::new(),
            masked_positions: vec![0; shape.masked_slots],
            masked_labels: vec![IGNORE_INDEX; shape.masked_slots],
            masked_is_mask_token: vec![false; shape.masked_slots],
        };
        let stream = match device {
            Device::Cuda(index) => Some(SideStream::new(index).map_err(capture_error("stream"))?),
            _ => None,
        };
        let lr_kind = if device.is_cuda() {
            Kind::Float
        } else {
            Kind::Double
        };
        Ok(Self {
            shape,
            pad_id,
            inputs: BatchTensors {
                queries: None,
                ..batch_tensors(&empty, device)
            },
            normaliser: Tensor::zeros([], (loss_kind, device)),
            lr: Tensor::zeros([], (lr_kind, device)),
            stream,
            micro_batch: None,
            update: None,
            counts: GraphCounts::default(),
        })
    }

    pub fn shape(&self) -> StaticShape {
        self.shape
    }

    /// Steps taken at the fixed shapes (warm-up included).
    pub fn steps(&self) -> u64 {
        self.counts.fixed_shape_steps()
    }

    /// How the steps so far ran: eagerly, replayed, or left to the plain step.
    pub fn counts(&self) -> GraphCounts {
        self.counts
    }

    /// One optimizer step of `trainee` over `batches` at learning rate `lr`, clipping to
    /// `max_norm` (infinite: measure only): forward and backward of each micro-batch, then
    /// the update (with fp16's unscaling and scale update), as the plain step does, replayed
    /// from graphs once captured. `None` (nothing done) when a micro-batch does not fit.
    pub fn step(
        &mut self,
        trainee: &mut Trainee<'_>,
        batches: &[Batch],
        ctx: &StepContext<'_>,
        lr: f64,
        max_norm: f64,
    ) -> Result<Option<GraphedOutputs>, RunError> {
        let laid_out: Option<Vec<Batch>> = batches
            .iter()
            .map(|batch| lay_out(batch, self.shape, self.pad_id))
            .collect();
        let Some(laid_out) = laid_out.filter(|l| !l.is_empty()) else {
            self.count_fallback(batches);
            return Ok(None);
        };
        // Warm-up and capture run on the side stream; replays on the caller's stream.
        let steps = self.steps();
        let capture_now = self.stream.is_some() && steps == WARMUP_STEPS;
        let stream = self.stream.take();
        let warming = steps <= WARMUP_STEPS;
        let outputs = match stream.as_ref().filter(|_| warming).map(SideStream::enter) {
            Some(Err(e)) => Err(capture_error("enter the capture stream")(e)),
            entered => {
                let _entered = entered;
                self.run(trainee, &laid_out, ctx, (lr, max_norm), capture_now)
            }
        };
        self.stream = stream;
        // The capturing step replays what it captured: a replay too.
        match self.micro_batch {
            Some(_) => self.counts.replayed += 1,
            None => self.counts.eager += 1,
        }
        outputs.map(Some)
    }

    /// Counts a step whose `batches` did not fit the shape: short (a micro-batch with fewer
    /// rows, or none at all) or full (every micro-batch had the rows; too many masked
    /// tokens or longer rows).
    fn count_fallback(&mut self, batches: &[Batch]) {
        let short = batches.is_empty() || batches.iter().any(|b| b.batch_size < self.shape.rows);
        if short {
            self.counts.short_batch_fallbacks += 1;
        } else {
            self.counts.full_batch_fallbacks += 1;
        }
    }

    /// The step over micro-batches that fit the shape (see [`GraphedStep::step`]).
    fn run(
        &mut self,
        trainee: &mut Trainee<'_>,
        laid_out: &[Batch],
        ctx: &StepContext<'_>,
        (lr, max_norm): (f64, f64),
        capture: bool,
    ) -> Result<GraphedOutputs, RunError> {
        trainee.optimizer.zero_grad();
        let _ = self.normaliser.fill_(ctx.normaliser);
        let _ = self.lr.fill_(lr);
        let mut loss_sum = Tensor::zeros([], (Kind::Double, self.normaliser.device()));
        for (micro, batch) in laid_out.iter().enumerate() {
            self.stage(batch);
            tch::manual_seed(dropout_seed(
                ctx.seed,
                ctx.step,
                ctx.first_micro_batch + micro,
            ));
            let sum = self.run_micro_batch(trainee, ctx, capture && micro == 0)?;
            loss_sum += sum.to_kind(Kind::Double);
        }
        let outputs = self.run_update(trainee, max_norm, capture)?;
        trainee.optimizer.count_step();
        Ok(GraphedOutputs {
            loss_sum,
            // The graph's outputs are overwritten by the next replay; the step keeps a copy.
            grad_norm: outputs[0].copy(),
        })
    }

    /// Copies a laid-out micro-batch into the captured inputs: uploaded as the plain step
    /// uploads (pinned, non-blocking), then copied on the device, which waits for nothing.
    fn stage(&mut self, batch: &Batch) {
        let uploaded = batch_tensors(batch, self.normaliser.device());
        tch::no_grad(|| {
            self.inputs.input_ids.copy_(&uploaded.input_ids);
            self.inputs.attention_mask.copy_(&uploaded.attention_mask);
            self.inputs
                .masked_positions
                .copy_(&uploaded.masked_positions);
            self.inputs.masked_labels.copy_(&uploaded.masked_labels);
        });
    }

    /// A micro-batch's forward and backward: the summed cross-entropy (0-dim, the loss kind).
    fn run_micro_batch(
        &mut self,
        trainee: &Trainee<'_>,
        ctx: &StepContext<'_>,
        capture: bool,
    ) -> Result<Tensor, RunError> {
        let body = || micro_batch_body(trainee, &self.inputs, &self.normaliser, ctx);
        if capture {
            let (graph, sum) = CudaGraph::capture(None, body)
                .map_err(captured_error("capture the forward and backward"))?;
            self.micro_batch = Some(Captured {
                graph,
                outputs: vec![sum],
            });
        }
        match &self.micro_batch {
            Some(captured) => {
                captured
                    .graph
                    .replay()
                    .map_err(capture_error("replay the forward and backward"))?;
                Ok(captured.outputs[0].shallow_clone())
            }
            None => body(),
        }
    }

    /// Unscaling (fp16), clipping and the update: the norm before clipping and the skip flag.
    fn run_update(
        &mut self,
        trainee: &mut Trainee<'_>,
        max_norm: f64,
        capture: bool,
    ) -> Result<Vec<Tensor>, RunError> {
        if capture {
            let pool = self.micro_batch.as_ref().map(|c| &c.graph);
            let (graph, outputs) =
                CudaGraph::capture(pool, || update_body(trainee, &self.lr, max_norm))
                    .map_err(captured_error("capture the update"))?;
            self.update = Some(Captured { graph, outputs });
        }
        match &self.update {
            Some(captured) => {
                captured
                    .graph
                    .replay()
                    .map_err(capture_error("replay the update"))?;
                Ok(captured.outputs.iter().map(Tensor::shallow_clone).collect())
            }
            None => update_body(trainee, &self.lr, max_norm),
        }
    }
}

/// What a step trains: the model, its variables, the optimizer and, for fp16, the loss
/// scaler.
pub struct Trainee<'a> {
    pub model: &'a MaskedLanguageModel,
    pub vs: &'a VarStore,
    pub optimizer: &'a mut AdamW,
    pub scaler: Option<&'a mut GradScaler>,
}

/// Forward, loss and backward of the micro-batch in `inputs` (the loss scaled for fp16);
/// what a graph captures.
fn micro_batch_body(
    trainee: &Trainee<'_>,
    inputs: &BatchTensors,
    normaliser: &Tensor,
    ctx: &StepContext<'_>,
) -> Result<Tensor, RunError> {
    let logits = masked_logits(trainee.model, inputs, ctx.precision, true)?;
    let sum = masked_lm_loss_sum(&logits, &inputs.masked_labels);
    let loss = &sum / normaliser;
    match trainee.scaler.as_deref() {
        Some(scaler) => scaler.scale(&loss).f_backward()?,
        None => loss.f_backward()?,
    }
    Ok(sum.detach())
}

/// fp16's unscaling, clipping and the skip flag as the plain step prepares them
/// (optim::unscale_and_clip), the fused AdamW update at the learning rate in `lr`, fp16's
/// scale update: what a graph captures. Returns [norm, flag].
fn update_body(
    trainee: &mut Trainee<'_>,
    lr: &Tensor,
    max_norm: f64,
) -> Result<Vec<Tensor>, RunError> {
    let (norm, found_inf) =
        unscale_and_clip(trainee.vs, trainee.scaler.as_deref_mut(), max_norm, false)?;
    let (Some(norm), Some(found_inf)) = (norm, found_inf) else {
        return Err(RunError::InvalidConfig(
            "the model has no gradients to update".into(),
        ));
    };
    trainee.optimizer.queue_update(lr, Some(&found_inf));
    if let Some(scaler) = trainee.scaler.as_deref_mut() {
        scaler.update()?;
    }
    Ok(vec![norm, found_inf])
}

fn capture_error(what: &'static str) -> impl Fn(TorchExtError) -> RunError {
    move |source| RunError::CudaGraph { what, source }
}

/// A failed capture: the captured body's own error when it failed (the capture's end then
/// fails too, but only as a consequence), else the capture's.
fn captured_error(what: &'static str) -> impl Fn(CaptureFailure<RunError>) -> RunError {
    move |failure| match failure {
        CaptureFailure::Body(error) => error,
        CaptureFailure::Capture(source) => RunError::CudaGraph { what, source },
    }
}

#[cfg(test)]
mod tests;
