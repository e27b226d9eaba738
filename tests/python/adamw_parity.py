"""Reference side of crates/trainer/tests/optim_parity.rs.

Usage: adamw_parity.py IN_DIR OUT_DIR

IN_DIR/spec.json and IN_DIR/inputs.safetensors are written by the Rust test:
  param.<name>          initial parameter values
  grad.<k>.<name>       gradient of step k (absent: the parameter has no gradient)
  clip.<name>           gradients for the clipping comparison
The reference computations use PyTorch and transformers themselves:
  * torch.optim.AdamW (CPU, single-tensor path) with the Hugging Face Trainer's two parameter
    groups, decay names from Trainer.get_decay_parameter_names on a module with the same names;
  * torch.nn.utils.clip_grad_norm_;
  * transformers' get_*_schedule functions driven through LambdaLR as the Trainer drives them.
Writes OUT_DIR/outputs.safetensors (after.<k>.<name>, exp_avg.<name>, exp_avg_sq.<name>,
clipped.<max_norm index>.<name>) and OUT_DIR/outputs.json.
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import Trainer
from transformers import optimization as hf_opt


class Layer(nn.Module):
    def __init__(self, hidden_in, hidden):
        super().__init__()
        self.dense = nn.Linear(hidden_in, hidden)
        self.LayerNorm = nn.LayerNorm(hidden)


class Tiny(nn.Module):
    """Parameter names and kinds of a BERT-like model: embedding, linear, LayerNorm, free bias."""

    def __init__(self, vocab, hidden_in, hidden):
        super().__init__()
        self.embeddings = nn.Module()
        self.embeddings.word_embeddings = nn.Embedding(vocab, hidden_in)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList([Layer(hidden_in, hidden)])
        self.cls = nn.Module()
        self.cls.predictions = nn.Module()
        self.cls.predictions.bias = nn.Parameter(torch.zeros(vocab))


def adamw(spec, inputs):
    shapes = spec["shapes"]
    model = Tiny(shapes["vocab"], shapes["hidden_in"], shapes["hidden"])
    initial = {k[len("param."):]: v for k, v in inputs.items() if k.startswith("param.")}
    # strict: the Rust side must use exactly these names and shapes.
    model.load_state_dict(initial, strict=True)
    decay_names = set(Trainer.get_decay_parameter_names(None, model))
    named = dict(model.named_parameters())
    # Trainer.create_optimizer's grouping.
    groups = [
        {"params": [p for n, p in named.items() if n in decay_names], "weight_decay": spec["weight_decay"]},
        {"params": [p for n, p in named.items() if n not in decay_names], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(
        groups,
        lr=spec["lrs"][0],
        betas=(spec["beta1"], spec["beta2"]),
        eps=spec["epsilon"],
        foreach=False,  # what the default picks for CPU tensors; explicit for clarity
    )
    outputs = {}
    for k, lr in enumerate(spec["lrs"]):
        optimizer.zero_grad(set_to_none=True)
        for name, param in named.items():
            grad = inputs.get(f"grad.{k}.{name}")
            if grad is not None:
                param.grad = grad.clone()
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        for name, param in named.items():
            outputs[f"after.{k}.{name}"] = param.detach().clone()
    steps = {}
    for name, param in named.items():
        state = optimizer.state.get(param, {})
        if state:
            outputs[f"exp_avg.{name}"] = state["exp_avg"].clone()
            outputs[f"exp_avg_sq.{name}"] = state["exp_avg_sq"].clone()
        steps[name] = int(state["step"].item()) if state else 0
    return outputs, {"decay": sorted(decay_names), "param_steps": steps}


def clip(spec, inputs):
    outputs, norms = {}, []
    for index, max_norm in enumerate(spec["clip_max_norms"]):
        params = []
        for name in spec["clip_order"]:
            grad = inputs[f"clip.{name}"]
            param = torch.zeros_like(grad, requires_grad=True)
            param.grad = grad.clone()
            params.append((name, param))
        total = torch.nn.utils.clip_grad_norm_([p for _, p in params], max_norm)
        norms.append(total.item())
        for name, param in params:
            outputs[f"clipped.{index}.{name}"] = param.grad.clone()
    return outputs, norms


def schedule_lrs(entry):
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=entry["peak_lr"])
    kind, w, t = entry["kind"], entry["warmup_steps"], entry["total_steps"]
    ratio = entry.get("min_lr_ratio", 0.0)
    if kind == "linear":
        scheduler = hf_opt.get_linear_schedule_with_warmup(optimizer, w, t)
    elif kind == "cosine" and ratio == 0.0:
        scheduler = hf_opt.get_cosine_schedule_with_warmup(optimizer, w, t)
    elif kind == "cosine":
        scheduler = hf_opt.get_cosine_with_min_lr_schedule_with_warmup(optimizer, w, t, min_lr_rate=ratio)
    elif kind == "constant":
        scheduler = hf_opt.get_constant_schedule_with_warmup(optimizer, w)
    elif kind == "warmup_stable_decay":
        scheduler = hf_opt.get_wsd_schedule(
            optimizer,
            w,
            entry["decay_steps"],
            num_training_steps=t,
            min_lr_ratio=ratio,
            warmup_type=entry["warmup_type"],
            decay_type=entry["decay_type"],
        )
    else:
        raise ValueError(f"unknown schedule kind {kind}")
    lrs = []
    # The Trainer's order: optimizer.step() with the current lr, then lr_scheduler.step().
    for _ in range(entry["grid_steps"]):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def main():
    in_dir, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)
    spec = json.loads((in_dir / "spec.json").read_text())
    inputs = load_file(in_dir / "inputs.safetensors")
    tensors, adamw_info = adamw(spec["adamw"], inputs)
    clipped, norms = clip(spec["clip"], inputs)
    tensors.update(clipped)
    save_file({k: v.contiguous() for k, v in tensors.items()}, out_dir / "outputs.safetensors")
    report = {
        "adamw": adamw_info,
        "clip_norms": norms,
        "schedules": [schedule_lrs(entry) for entry in spec["schedules"]],
    }
    (out_dir / "outputs.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
