"""Reference side of crates/trainer/tests/trajectory_parity.rs: a whole training trajectory.

Usage:
  trajectory_parity.py init FAMILY VOCAB_SIZE PAD_ID OUT_DIR
      Writes a random encoder-only checkpoint (the base model class, as sentence encoders
      such as all-MiniLM-L6-v2 ship: no MLM head) with `save_pretrained`, and in
      OUT_DIR/hf_head.safetensors the MLM head transformers' `from_pretrained` initialises
      for it (the fresh head ours must match in kind).
  trajectory_parity.py replay FAMILY DTYPE DUMP_DIR START_CHECKPOINT OUT_DIR
      Loads START_CHECKPOINT (our step-0 checkpoint: the same initial weights, our fresh
      head included) into transformers' masked-LM class and trains it on the micro-batches
      our run recorded (DUMP_DIR/batches.safetensors, DUMP_DIR/run.json), as the Hugging Face
      Trainer would (trainer_recipe.py): Trainer's decay groups, torch.optim.AdamW (fused,
      Trainer's default `adamw_torch_fused`), the schedule from transformers.optimization
      with Trainer's warmup rounding, the loss of each micro-batch as transformers'
      `fixed_cross_entropy` with `num_items_in_batch` (the step's masked tokens),
      clip_grad_norm_ on the summed gradients, then optimizer.step() and scheduler.step().
      Dropout runs with libtorch's
      generator seeded with our seed for each micro-batch, so the same masks are drawn when
      dropout sits where transformers has it. Writes OUT_DIR/trajectory.json (per-step loss,
      learning rate, gradient norm) and OUT_DIR/final.safetensors (the trained weights).

DTYPE is float64 or float32. Runs on the CPU, one thread.
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from trainer_recipe import masked_lm_loss, optimizer_for, optimizer_step, scheduler_for

torch.set_num_threads(1)


def families():
    import transformers as t

    return {
        "bert": (t.BertConfig, t.BertModel, t.BertForMaskedLM, "cls."),
        "roberta": (t.RobertaConfig, t.RobertaModel, t.RobertaForMaskedLM, "lm_head."),
        "distilbert": (t.DistilBertConfig, t.DistilBertModel, t.DistilBertForMaskedLM, "vocab_"),
        "modernbert": (t.ModernBertConfig, t.ModernBertModel, t.ModernBertForMaskedLM,
                       ("head.", "decoder.")),
    }


def tiny_config(family, vocab_size, pad_id):
    """Odd enough sizes to catch transposes: 4 heads of 8, FFN 72, dropout on."""
    config_class = families()[family][0]
    if family == "modernbert":
        # Layers global, local, global; a window (4 each side) shorter than the corpus's
        # 32-token sequences; every dropout on.
        return config_class(
            vocab_size=vocab_size, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
            intermediate_size=72, max_position_embeddings=64, global_attn_every_n_layers=2,
            local_attention=8, embedding_dropout=0.1, attention_dropout=0.1, mlp_dropout=0.1,
            pad_token_id=pad_id, bos_token_id=None, eos_token_id=None, cls_token_id=None,
            sep_token_id=None,
        )
    if family == "distilbert":
        return config_class(
            vocab_size=vocab_size, dim=32, n_layers=2, n_heads=4, hidden_dim=72,
            max_position_embeddings=64, dropout=0.1, attention_dropout=0.1, pad_token_id=pad_id,
        )
    return config_class(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=72,
        max_position_embeddings=64,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        pad_token_id=pad_id,
        type_vocab_size=1 if family == "roberta" else 2,
    )


def init(family, vocab_size, pad_id, out_dir):
    out_dir = Path(out_dir)
    torch.manual_seed(0)
    _, encoder_class, masked_lm_class, head_prefix = families()[family]
    encoder = encoder_class(tiny_config(family, int(vocab_size), int(pad_id)))
    # LayerNorms away from (1, 0), so that loading them is tested too.
    with torch.no_grad():
        for name, param in encoder.named_parameters():
            if "norm" in name.lower():
                param.add_(0.1 * torch.randn_like(param))
    encoder.save_pretrained(out_dir)
    torch.manual_seed(1)
    model = masked_lm_class.from_pretrained(out_dir)
    head = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(head_prefix)}
    save_file(head, out_dir / "hf_head.safetensors")


def train_step(model, optimizer, scheduler, batches, step, spec):
    """One optimizer step: each micro-batch's loss normalised by the step's masked tokens
    (Trainer's compute_loss with `num_items_in_batch`), backward, then Trainer's clip /
    optimizer / schedule order."""
    loss_sum = 0.0
    for micro in step["micro_batches"]:
        torch.manual_seed(micro["dropout_seed"])
        key = micro["key"]
        logits = model(
            input_ids=batches[f"{key}.input_ids"],
            attention_mask=batches[f"{key}.attention_mask"],
        ).logits
        loss = masked_lm_loss(logits, batches[f"{key}.labels"], step["masked_tokens"])
        loss.backward()
        loss_sum += loss.item()
    learning_rate, grad_norm = optimizer_step(model, optimizer, scheduler, spec["max_grad_norm"])
    return {"loss": loss_sum, "learning_rate": learning_rate, "grad_norm": grad_norm}


def replay(family, dtype, dump_dir, start_checkpoint, out_dir):
    dump_dir, out_dir = Path(dump_dir), Path(out_dir)
    run = json.loads((dump_dir / "run.json").read_text())
    spec = run["training"]
    batches = load_file(dump_dir / "batches.safetensors")
    model = families()[family][2].from_pretrained(
        start_checkpoint, dtype=getattr(torch, dtype), attn_implementation="sdpa"
    )
    model.train()
    optimizer = optimizer_for(model, spec)
    scheduler = scheduler_for(optimizer, spec)
    log = [train_step(model, optimizer, scheduler, batches, step, spec) for step in run["steps"]]
    out_dir.mkdir(parents=True, exist_ok=True)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    (out_dir / "trajectory.json").write_text(json.dumps({"steps": log, "trainable": trainable}))
    save_file({k: v.clone() for k, v in model.state_dict().items()}, out_dir / "final.safetensors")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"init": init, "replay": replay}[command](*args)
