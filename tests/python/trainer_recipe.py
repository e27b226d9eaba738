"""The Hugging Face Trainer's optimisation, as `Trainer` builds it, for loops that replay or
race ours (tests/python/trajectory_parity.py, scripts/bench_hf_adapt.py).

`spec` holds our `[training]` keys (learning_rate, adam_beta1, adam_beta2, adam_epsilon,
weight_decay, fused_optimizer, lr_schedule, warmup_steps, warmup_ratio) and total_steps.
"""

import math

import torch
from transformers import Trainer, get_scheduler
from transformers.loss.loss_utils import fixed_cross_entropy


def optimizer_for(model, spec):
    """Trainer.create_optimizer: two groups, weight decay on the names
    Trainer.get_decay_parameter_names returns; torch.optim.AdamW, fused as Trainer's default
    `adamw_torch_fused`."""
    decay = set(Trainer.get_decay_parameter_names(None, model))
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if n in decay], "weight_decay": spec["weight_decay"]},
        {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups,
        lr=spec["learning_rate"],
        betas=(spec["adam_beta1"], spec["adam_beta2"]),
        eps=spec["adam_epsilon"],
        fused=spec.get("fused_optimizer", True),
    )


def warmup_steps(spec):
    """TrainingArguments.get_warmup_steps: the steps if given, else ceil(total * ratio)."""
    if spec.get("warmup_steps") is not None:
        return int(spec["warmup_steps"])
    return math.ceil(spec["total_steps"] * spec["warmup_ratio"])


def scheduler_for(optimizer, spec):
    """Trainer.create_scheduler: transformers' schedule of that name, stepped after each
    optimizer step."""
    return get_scheduler(
        spec["lr_schedule"],
        optimizer,
        num_warmup_steps=warmup_steps(spec),
        num_training_steps=spec["total_steps"],
    )


def masked_lm_loss(logits, labels, num_items_in_batch=None):
    """The masked-LM loss as transformers computes it for a loss normalised over the whole
    step (`fixed_cross_entropy` with `num_items_in_batch`), or the batch mean without it.
    Unlike `ForMaskedLMLoss` it keeps the logits' dtype (float64 in the parity test)."""
    return fixed_cross_entropy(
        logits.view(-1, logits.shape[-1]), labels.view(-1), num_items_in_batch=num_items_in_batch
    )


def optimizer_step(model, optimizer, scheduler, max_grad_norm):
    """Trainer's order after the backward passes of a step: clip the summed gradients, step
    the optimizer, then the schedule, then zero the gradients. Returns (learning rate used,
    gradient norm before clipping). A max_grad_norm of 0 measures without clipping, as ours."""
    learning_rate = scheduler.get_last_lr()[0]
    limit = max_grad_norm if max_grad_norm > 0 else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), limit).item()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return learning_rate, grad_norm
