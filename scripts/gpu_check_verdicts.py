"""The verdicts of scripts/gpu-check: each subcommand reads what a run left (metrics.jsonl,
checkpoints, logs) and prints one `pass|detail` or `FAIL|detail` line per table row.

Kept out of the bash script so that each verdict can be exercised on runs made on the CPU
(`python3 scripts/gpu_check_verdicts.py graphs EAGER GRAPHED CONTROL`, ...): the logic is the
same whatever device made the runs. Needs only the standard library, except `fp16` (torch,
for GradScaler's own update rule) and `weights`/`finite` (safetensors + torch), which the
GPU machine's Python has.
"""

import argparse
import json
import math
import re
import sys
from pathlib import Path


def train_records(run_dir):
    path = Path(run_dir) / "metrics.jsonl"
    return [r for r in map(json.loads, path.read_text().splitlines()) if r.get("split") == "train"]


def losses(run_dir):
    return {r["step"]: r["loss"] for r in train_records(run_dir)}


def verdict(ok, detail):
    print(f"{'pass' if ok else 'FAIL'}|{detail}")


def worst_relative(a, b):
    """The largest |a - b| / |a| over the steps both have, and the steps compared."""
    steps = sorted(set(a) & set(b))
    worst = max((abs(a[s] - b[s]) / abs(a[s]) for s in steps), default=math.inf)
    return worst, steps


# CUDA graphs against the eager step, fp32 without TF32, dropout on, the same seeds: the
# graphed step differs only in summation order (the head's unused slots, a GEMM of another
# shape). On the CPU (the same fixed-shape body, eagerly) the 24 steps part by 1.3e-7 at
# most; a GPU's kernels for the other shapes round differently, which may bring that to
# about 1e-6. 1e-5 leaves that margin and stays far below what dropout itself moves the loss
# (the control: the same run with dropout off, which must part by at least 10x the
# tolerance; on the CPU 1.7e-3), so a replay that froze or skipped the dropout masks, or
# replayed stale inputs or a stale learning rate, fails.
GRAPH_TOLERANCE = 1e-5
GRAPH_MIN_STEPS = 20


def graphs(args):
    eager, replayed, control = (losses(d) for d in (args.eager, args.graphed, args.control))
    worst, steps = worst_relative(eager, replayed)
    dropout_effect, _ = worst_relative(eager, control)
    counts = train_records(args.graphed)[-1].get("graphs") if steps else None
    problems = []
    if len(steps) < GRAPH_MIN_STEPS or len(eager) != len(replayed):
        problems.append(f"{len(steps)} steps compared (need {GRAPH_MIN_STEPS}+)")
    if not worst <= GRAPH_TOLERANCE:
        problems.append(f"losses part by {worst:.1e} > {GRAPH_TOLERANCE:.0e}")
    if not dropout_effect >= 10 * GRAPH_TOLERANCE:
        problems.append(f"control: dropout moves the loss by only {dropout_effect:.1e}")
    if counts is None:
        problems.append("the run reports no graph counts (metrics.jsonl `graphs`)")
    else:
        if counts["replayed"] == 0:
            problems.append("no step replayed")
        if counts["full_batch_fallbacks"] > 0:
            problems.append(f"{counts['full_batch_fallbacks']} full batches fell back")
    shown = (f"replayed {counts['replayed']}, eager {counts['eager']}, fallbacks "
             f"{counts['full_batch_fallbacks']} full / {counts['short_batch_fallbacks']} short"
             if counts else "no graph counts")
    detail = (f"{len(steps)} steps, worst relative loss diff {worst:.1e} (tol {GRAPH_TOLERANCE:.0e}; "
              f"dropout off moves it {dropout_effect:.1e}); {shown}")
    verdict(not problems, "; ".join(problems + [detail]) if problems else detail)


def same_run(args):
    """Two runs of one trajectory (data parallel against one process): per-step losses and
    the final checkpoint's weights within `tolerance` (relative; weights relative to each
    tensor's largest magnitude when above 1, as tests/e2e/distributed.rs compares)."""
    a, b = losses(args.reference), losses(args.other)
    worst, steps = worst_relative(a, b)
    weights = weight_difference(last_checkpoint(args.reference), last_checkpoint(args.other))
    ok = len(steps) >= args.min_steps and len(a) == len(b) and worst <= args.tolerance
    ok = ok and weights <= args.tolerance
    needed = [p for p in args.log_has or [] if p not in Path(args.other_log).read_text()]
    ok = ok and not needed
    detail = (f"{len(steps)} steps: loss {worst:.1e}, weights {weights:.1e} (tol {args.tolerance:.0e})")
    if needed:
        detail += f"; log lacks {needed}"
    verdict(ok, f"{args.label}{detail}")


def last_checkpoint(run_dir):
    found = sorted(Path(run_dir).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    if not found:
        raise FileNotFoundError(f"no checkpoint in {run_dir}")
    return found[-1]


def load_weights(checkpoint):
    from safetensors.torch import load_file

    return load_file(str(Path(checkpoint) / "model.safetensors"))


def weight_difference(a, b):
    wa, wb = load_weights(a), load_weights(b)
    if sorted(wa) != sorted(wb):
        return math.inf
    worst = 0.0
    for name, x in wa.items():
        x, y = x.double(), wb[name].double()
        scale = max(1.0, x.abs().max().item())
        worst = max(worst, (x - y).abs().max().item() / scale)
    return worst


def finite(args):
    weights = load_weights(args.checkpoint)
    bad = [name for name, t in weights.items() if not bool(t.isfinite().all())]
    verdict(not bad, f"{len(weights)} tensors, non-finite: {bad[:3] or 'none'}")


# fp16's loss scale, replayed with torch's own update (GradScaler.update runs
# torch._amp_update_scale_ with growth 2, backoff 0.5, interval 2000): from the scaler state
# the run started from, the step's overflow flag (a logged gradient norm that is not finite:
# JSON null) must produce exactly the logged scale after every step.
def fp16(args):
    import torch

    records = [r for r in train_records(args.run_dir) if r["step"] > args.after]
    scale = torch.tensor([args.scale], dtype=torch.float32)
    tracker = torch.tensor([args.tracker], dtype=torch.int32)
    grew = backed_off = clean = 0
    for r in records:
        found_inf = not (isinstance(r["grad_norm"], (int, float)) and math.isfinite(r["grad_norm"]))
        before = scale.item()
        torch._amp_update_scale_(scale, tracker, torch.tensor([float(found_inf)]), 2.0, 0.5, 2000)
        grew += scale.item() > before
        backed_off += scale.item() < before
        clean += not found_inf
        logged = r.get("loss_scale")
        if logged != scale.item():
            verdict(False, f"step {r['step']}: loss_scale {logged}, GradScaler gives {scale.item()}")
            return
    want = {"none": True, "grow": grew > 0, "backoff": backed_off > 0}[args.expect]
    verdict(want and len(records) >= args.min_steps,
            f"{len(records)} steps from scale {args.scale:g} (tracker {args.tracker}): "
            f"{grew} growths, {backed_off} backoffs ({clean} clean steps), as GradScaler; "
            f"final {scale.item():g}")


def doctor(args):
    r = json.loads(Path(args.json).read_text())
    gpus = r["gpus"]
    name = gpus[0]["name"] if gpus else "no gpu"
    build = r.get("build", {})
    checks = {
        "libtorch 2.11.0": r["libtorch_version"] == "2.11.0",
        "cuda available": r["cuda_available"],
        "gpu described": bool(gpus) and gpus[0]["memory_gib"] > 0,
        "bf16 autocast on cuda": r["bf16"]["cuda_autocast"],
        "shim has cuda graphs, nccl": build.get("cuda_graphs") is True and build.get("nccl") is True,
    }
    for check, ok in checks.items():
        print(f"{check}|{'pass' if ok else 'FAIL'}|{name}")


def eval_match(args):
    cpu, gpu = (json.loads(Path(p).read_text()) for p in (args.cpu, args.cuda))
    ok = (abs(cpu["loss"] - gpu["loss"]) < 1e-4 and cpu["masked_tokens"] == gpu["masked_tokens"]
          and abs(cpu["accuracy"] - gpu["accuracy"]) <= 2 / cpu["masked_tokens"])
    verdict(ok, f"loss cpu {cpu['loss']:.6f} cuda {gpu['loss']:.6f}, "
                f"acc {cpu['accuracy']:.4f}/{gpu['accuracy']:.4f}, {cpu['masked_tokens']} tokens")


def first_step(args):
    """Step 1's loss of two runs from the same weights and batch, padded and unpadded, within
    bf16 rounding (1e-2 relative), and the unpadded run's plan line naming the kernel."""
    def first(run):
        return min(losses(run).items())[1]
    padded, varlen = first(args.padded), first(args.varlen)
    kernel = args.phrase in Path(args.log).read_text()
    diff = abs(padded - varlen) / abs(padded)
    verdict(kernel and diff < 1e-2,
            f"step-1 loss padded {padded:.5f} varlen {varlen:.5f} ({diff:.1e}), plan names the kernel: {kernel}")


# libtorch's warnings (`[W1207 12:00:00.123 file.cpp:42] Warning: ...`, TORCH_WARN's
# `Warning: ... (function ...)`) and the binary's own `warning: ...` lines.
WARNING = re.compile(r"^\[W|warning:|^warning", re.IGNORECASE)


def warnings(args):
    found = []
    for log in args.logs:
        for number, line in enumerate(Path(log).read_text(errors="replace").splitlines(), 1):
            if WARNING.search(line):
                found.append(f"{Path(log).name}:{number}: {line.strip()[:160]}")
    shown = "; ".join(found[:4])
    verdict(not found, f"{len(found)} warning lines in {len(args.logs)} training logs"
                       + (f": {shown}" if found else ""))


def cuda_tests(args):
    """A test binary's `--ignored cuda_tests` run: every cuda test the bundle listed passed
    (fewer, a filter that matched nothing included, fails)."""
    text = Path(args.log).read_text(errors="replace")
    results = re.findall(r"test result: (\w+)\. (\d+) passed; (\d+) failed", text)
    passed = sum(int(p) for _, p, _ in results)
    # The harness's summary: the names under the last `failures:` heading.
    summary = text.rsplit("\nfailures:\n", 1)[-1] if "\nfailures:\n" in text else ""
    failed = re.findall(r"^    (\S+)$", summary, re.MULTILINE)
    panics = re.findall(r"panicked at [^\n]*\n([^\n]*)", text)
    ok = bool(results) and all(r == "ok" for r, _, _ in results) and passed >= args.expected
    detail = f"{passed} of {args.expected} passed"
    if failed:
        names = [f.split("::")[-1] for f in failed]
        more = f" (+{len(names) - 2} more)" if len(names) > 2 else ""
        detail += f"; failed: {', '.join(names[:2])}{more}"
    if panics:
        detail += f"; first panic: {panics[0].strip()[:160]}"
    if not results:
        detail = "no test result in the log" + (f"; first panic: {panics[0].strip()[:160]}" if panics else "")
    verdict(ok, detail)


def killed_rank(args):
    log = Path(args.log).read_text(errors="replace")
    named = f"rank {args.rank} stopped answering" in log
    crashed = "panicked" in log or "frame #" in log
    ok = named and not crashed and args.status not in (0, None) and args.status != 124
    verdict(ok, f"survivor exited {args.status} after {args.seconds} s; names rank {args.rank}: {named}"
                + ("; it crashed instead of reporting" if crashed else ""))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("graphs")
    p.add_argument("eager"), p.add_argument("graphed"), p.add_argument("control")
    p.set_defaults(run=graphs)
    p = sub.add_parser("same-run")
    p.add_argument("reference"), p.add_argument("other"), p.add_argument("other_log")
    p.add_argument("--tolerance", type=float, default=1e-5)
    p.add_argument("--min-steps", type=int, default=10)
    p.add_argument("--log-has", action="append")
    p.add_argument("--label", default="")
    p.set_defaults(run=same_run)
    p = sub.add_parser("finite")
    p.add_argument("checkpoint")
    p.set_defaults(run=finite)
    p = sub.add_parser("fp16")
    p.add_argument("run_dir"), p.add_argument("--after", type=int, default=0)
    p.add_argument("--scale", type=float, default=65536.0)
    p.add_argument("--tracker", type=int, default=0)
    p.add_argument("--expect", choices=["none", "grow", "backoff"], required=True)
    p.add_argument("--min-steps", type=int, default=10)
    p.set_defaults(run=fp16)
    p = sub.add_parser("doctor")
    p.add_argument("json")
    p.set_defaults(run=doctor)
    p = sub.add_parser("eval")
    p.add_argument("cpu"), p.add_argument("cuda")
    p.set_defaults(run=eval_match)
    p = sub.add_parser("first-step")
    p.add_argument("padded"), p.add_argument("varlen"), p.add_argument("log"), p.add_argument("phrase")
    p.set_defaults(run=first_step)
    p = sub.add_parser("warnings")
    p.add_argument("logs", nargs="*")
    p.set_defaults(run=warnings)
    p = sub.add_parser("cuda-tests")
    p.add_argument("log"), p.add_argument("--expected", type=int, default=1)
    p.set_defaults(run=cuda_tests)
    p = sub.add_parser("killed-rank")
    p.add_argument("log"), p.add_argument("--rank", type=int, required=True)
    p.add_argument("--status", type=int), p.add_argument("--seconds", type=int)
    p.set_defaults(run=killed_rank)
    args = parser.parse_args()
    try:
        args.run(args)
    except SystemExit:
        raise
    except Exception as error:  # a missing file or field is a failed row, said so
        print(f"FAIL|{args.command}: {type(error).__name__}: {error}"[:300])


if __name__ == "__main__":
    sys.exit(main())
