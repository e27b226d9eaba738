"""Reference side of crates/trainer/tests/grad_scaler_parity.rs: PyTorch's fp16 recipe,
`torch.amp.GradScaler` with its defaults around `torch.optim.AdamW(fused=True)`, as
Trainer(fp16=True) drives it: scale(loss).backward(), unscale_, clip_grad_norm_, step, update.

Usage: grad_scaler_parity.py SPEC_JSON
SPEC_JSON: {"init": [...] (a 1 x n weight, so weight decay applies), "grads": [[...], ...], "lr": float, "max_norm": float}; each step's
loss is sum(param * grad_k), so its gradient is grad_k (strings "inf"/"nan" allowed).
Prints a JSON list, per step: {"param": [...], "scale": float, "growth_tracker": int}."""
import json
import sys

import torch


def main() -> None:
    spec = json.load(open(sys.argv[1]))
    param = torch.nn.Parameter(torch.tensor(spec["init"], dtype=torch.float32).reshape(1, -1))
    optimizer = torch.optim.AdamW([param], lr=spec["lr"], betas=(0.9, 0.999), eps=1e-6,
                                  weight_decay=0.01, fused=True)
    scaler = torch.amp.GradScaler("cpu")
    out = []
    for grad in spec["grads"]:
        grad = torch.tensor([float(g) for g in grad], dtype=torch.float32).reshape(1, -1)
        optimizer.zero_grad(set_to_none=False)
        loss = (param * grad).sum()
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_([param], spec["max_norm"], foreach=True)
        scaler.step(optimizer)
        scaler.update()
        state = scaler.state_dict()
        out.append({"param": param.detach().flatten().tolist(), "scale": state["scale"],
                    "growth_tracker": state["_growth_tracker"]})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
