//! The two ways a step's gradients and update run: the plain step, as PyTorch runs it
//! eagerly (with data parallelism's all-reduce and fp16's loss scaling), and
//! `training.cuda_graphs`' fixed-shape step (run/graphed.rs).

use tch::Tensor;

use super::{StepTotals, Training};
use crate::optim::unscale_and_clip;
use crate::run::RunError;
use crate::run::data::StepBatches;
use crate::run::graphed::{GraphedOutputs, Trainee};
use crate::run::step::{StepContext, forward_backward};

impl Training<'_> {
    /// The step as PyTorch runs it eagerly: zeroed gradients, forward and backward over the
    /// micro-batches, unscaling (fp16) and clipping, the update (skipped on the device when a
    /// gradient is not finite). Returns the loss sum and the norm before clipping.
    pub(super) fn plain_step(
        &mut self,
        step: u64,
        batches: &StepBatches,
        totals: &StepTotals,
        learning_rate: f64,
    ) -> Result<(Tensor, Option<Tensor>), RunError> {
        self.parts.optimizer.zero_grad();
        let loss_sum = self.forward_backward(step, batches, totals)?;
        mlm_faults::fault_point("train.mid-step");
        let (grad_norm, found_inf) = self.unscale_and_clip()?;
        self.parts
            .optimizer
            .step_unless(learning_rate, found_inf.as_ref());
        if let Some(scaler) = &mut self.parts.scaler {
            scaler.update()?;
        }
        Ok((loss_sum, grad_norm))
    }

    /// `training.cuda_graphs`: the same step at fixed shapes, replayed from CUDA graphs once
    /// captured (run/graphed.rs). `None` when graphs are off or the batches do not fit.
    pub(super) fn graphed_step(
        &mut self,
        step: u64,
        batches: &StepBatches,
        totals: &StepTotals,
        learning_rate: f64,
    ) -> Result<Option<GraphedOutputs>, RunError> {
        let max_norm = self.max_grad_norm();
        let parts = &mut self.parts;
        let Some(graphed) = parts.graphed.as_mut() else {
            return Ok(None);
        };
        let context = StepContext {
            precision: parts.precision,
            seed: self.job.training.seed,
            step,
            first_micro_batch: 0,
            normaliser: totals.masked_tokens.max(1) as f64,
            reducer: None,
            scaler: None,
            unpad: None,
        };
        let mut trainee = Trainee {
            model: &parts.model.model,
            vs: &parts.model.vs,
            optimizer: &mut parts.optimizer,
            scaler: parts.scaler.as_mut(),
        };
        graphed.step(
            &mut trainee,
            &batches.micro_batches,
            &context,
            learning_rate,
            max_norm,
        )
    }

    /// `training.max_grad_norm`, infinite for 0 (measure only).
    fn max_grad_norm(&self) -> f64 {
        match self.job.training.max_grad_norm {
            norm if norm > 0.0 => norm,
            _ => f64::INFINITY,
        }
    }

    /// Forward and backward over the step's micro-batches; the loss is normalised by the
    /// step's masked-token count over all ranks (DESIGN: the sum over micro-batches divided by
    /// the step's masked tokens). Returns this rank's loss sum, on the device.
    fn forward_backward(
        &self,
        step: u64,
        batches: &StepBatches,
        totals: &StepTotals,
    ) -> Result<Tensor, RunError> {
        let masked = totals.masked_tokens.max(1) as f64;
        let plan = &self.parts.batches;
        let context = StepContext {
            precision: self.parts.precision,
            seed: self.job.training.seed,
            step,
            first_micro_batch: plan.rank as usize * plan.accumulation,
            normaliser: masked / f64::from(plan.world_size),
            reducer: self.parallel.as_ref().map(|(_, reducer)| reducer),
            scaler: self.parts.scaler.as_ref(),
            unpad: self.parts.unpad,
        };
        forward_backward(&self.parts.model.model, &batches.micro_batches, &context)
            .map_err(|e| self.collective_failure("the step's gradient all-reduce", e))
    }

    /// fp16's unscaling and clipping to `training.max_grad_norm` (optim::unscale_and_clip):
    /// the norm before clipping and the flag the update is skipped on.
    fn unscale_and_clip(&mut self) -> Result<(Option<Tensor>, Option<Tensor>), RunError> {
        let host_clip = !self.job.training.fused_optimizer;
        let max_norm = self.max_grad_norm();
        let vs = &self.parts.model.vs;
        Ok(unscale_and_clip(
            vs,
            self.parts.scaler.as_mut(),
            max_norm,
            host_clip,
        )?)
    }
}
