"""Writes the reference files that test_parallax.cu checks the CUDA code against.

  model_<variant>_d<depth>[_mlp<F>].ptf   initial weights, one batch, logits, loss, every parameter's gradient, and
                                 the loss after 0..steps optimizer steps on that batch, for Muon and AdamW
                                 (_mlp<F>: an MLP hidden size F other than 4C, --mlp-hidden)
  attention_cases.ptf            attention-only cases (q, r, k, v, dO -> o, L, tbar, vbar, dq, dr, dk, dv)
                                 for both variants at T = 1, 17, 127, 1024, B x H > 1 and D = 64, 128
  optim_d2.ptf (--optim)         one Muon and one AdamW step of a d2 model, tensor by tensor, clipping off
                                 and on: the state before, the update and the state after (float64)

The file layout is in dev/README.md (and dev/tensorfile.py). Examples:
  python3 dev/export_reference.py --depth 2 --device cpu            # small, on the CPU, under a minute
  python3 dev/export_reference.py --depth 12 --device cuda          # d12, B = 4, T = 64, on a GPU
  python3 dev/export_reference.py --optim                           # optim_d2.ptf, CPU, 2 s
  python3 dev/export_reference.py --variant softmax --depth 2 --width 256 --mlp-hidden match   # widened MLP
"""
import argparse
import copy
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tensorfile  # noqa: E402
from model_ref import Config, init_params, loss_and_grads, param_table  # noqa: E402
from optim_ref import HPARAMS, UPDATE_MAX_REL, Optimizer  # noqa: E402
from parallax_attention import attention_backward, attention_forward_saved  # noqa: E402

ATTENTION_SHAPES = [  # (B, H, T, D)
    (1, 1, 1, 64), (1, 1, 17, 64), (2, 3, 127, 64), (1, 2, 1024, 64), (2, 2, 100, 128),
]


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="both", help="parallax, softmax or both (default both)")
    ap.add_argument("--depth", type=int, default=12, help="layers (default 12)")
    ap.add_argument("--width", type=int, default=0, help="model width C (default 64 x depth)")
    ap.add_argument("--head-dim", type=int, default=64, help="head dim D (default 64)")
    ap.add_argument("--mlp-hidden", default="0",
                    help="MLP hidden size F; 0 = 4C (default), 'match' = 4C + C/2 for softmax (Parallax's parameters)")
    ap.add_argument("--batch", type=int, default=4, help="batch B (default 4)")
    ap.add_argument("--seq-len", type=int, default=64, help="sequence length T (default 64)")
    ap.add_argument("--max-seq-len", type=int, default=1024, help="longest T allowed (default 1024)")
    ap.add_argument("--steps", type=int, default=10, help="optimizer steps to record (default 10)")
    ap.add_argument("--step-lr-scale", type=float, default=0.1,
                    help="learning rates of the recorded steps, times the defaults (default 0.1: at full rate "
                         "Muon drives the loss on one batch to ~1e-3 in two steps, which compares poorly)")
    ap.add_argument("--seed", type=int, default=1234, help="seed of the weights and the batch")
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto (default auto)")
    ap.add_argument("--dtype", default="float32", help="float32 or float64 (default float32)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"),
                    help="output folder (default dev/ref)")
    ap.add_argument("--no-model", action="store_true", help="write only the attention cases")
    ap.add_argument("--no-attention", action="store_true", help="write only the model file(s)")
    ap.add_argument("--optim", action="store_true",
                    help="write only optim_d2.ptf (one optimizer step per tensor, d2 C = 128, float64 on the CPU)")
    a = ap.parse_args(argv)

    def fail(msg):
        ap.error(msg)  # prints usage and the message, exits with status 2

    if a.variant not in ("parallax", "softmax", "both"):
        fail(f"--variant: unknown variant '{a.variant}' (expected parallax, softmax or both)")
    if a.dtype not in ("float32", "float64"):
        fail(f"--dtype: expected float32 or float64, got '{a.dtype}'")
    if a.device not in ("auto", "cpu", "cuda"):
        fail(f"--device: expected cpu, cuda or auto, got '{a.device}'")
    if a.device == "cuda" and not torch.cuda.is_available():
        fail("--device cuda: this torch sees no GPU")
    for flag, val in (("--depth", a.depth), ("--batch", a.batch), ("--seq-len", a.seq_len),
                      ("--head-dim", a.head_dim), ("--max-seq-len", a.max_seq_len)):
        if val < 1:
            fail(f"{flag}: must be at least 1, got {val}")
    if a.steps < 0:
        fail(f"--steps: must not be negative, got {a.steps}")
    if a.seq_len > a.max_seq_len:
        fail(f"--seq-len {a.seq_len} is above the maximum {a.max_seq_len} (raise --max-seq-len)")
    if a.width == 0:
        a.width = 64 * a.depth
    if a.width < a.head_dim or a.width % a.head_dim:
        fail(f"--width {a.width} must be a positive multiple of --head-dim {a.head_dim}")
    if a.mlp_hidden == "match":
        a.mlp_hidden = 4 * a.width + a.width // 2 if a.variant == "softmax" else 0
    elif not a.mlp_hidden.isdigit():
        fail(f"--mlp-hidden: expected a number or 'match', got '{a.mlp_hidden}'")
    else:
        a.mlp_hidden = int(a.mlp_hidden)
    if a.variant == "both" and a.mlp_hidden not in (0, 4 * a.width):
        fail("--mlp-hidden: a widened MLP is for one --variant (softmax or parallax), not both")
    if a.device == "auto":
        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    return a


def export_model(a, variant, dtype, device):
    cfg = Config(variant=variant, depth=a.depth, width=a.width, head_dim=a.head_dim, max_seq_len=a.max_seq_len,
                 mlp_hidden=a.mlp_hidden)
    cfg.check()
    t0 = time.time()
    params0 = init_params(cfg, a.seed, zero_init_too=True)
    gen = torch.Generator().manual_seed(a.seed + 1)
    tokens = torch.randint(0, cfg.vocab, (a.batch, a.seq_len + 1), generator=gen)
    idx, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    params = {k: v.to(device=device, dtype=dtype) for k, v in params0.items()}
    idx_d, tgt_d = idx.to(device), targets.to(device)

    logits, loss, grads = loss_and_grads(cfg, params, idx_d, tgt_d, method="autograd")
    tensors = [("param." + n, params0[n]) for n, _ in param_table(cfg)]
    tensors += [("inputs", idx.int()), ("targets", targets.int()), ("logits", logits),
                ("loss", loss.reshape(1))]
    tensors += [("grad." + n, grads[n]) for n, _ in param_table(cfg)]
    del logits, grads

    meta = {"kind": "model", "variant": variant, "depth": cfg.depth, "width": cfg.width,
            "head_dim": cfg.head_dim, "mlp_hidden": cfg.hidden, "vocab": cfg.vocab, "padded_vocab": cfg.padded_vocab,
            "batch": a.batch, "seq_len": a.seq_len, "seed": a.seed, "steps": a.steps,
            "init": "spec, with W_o, W_2 and W_head drawn like W_1 instead of zero",
            "schedule": "constant learning rates (the defaults times lr_scale), no gradient clipping",
            "lr_scale": repr(a.step_lr_scale),
            "losses": "<opt>.losses[i] = loss on the batch after i optimizer steps, i = 0..steps",
            "compute_dtype": a.dtype, "device": device, "torch": torch.__version__}
    for kind in ("muon", "adamw"):
        for k, v in HPARAMS[kind].items():
            meta[f"{kind}.{k}"] = repr(v)
        opt = Optimizer(cfg, kind)
        p = {k: v.clone() for k, v in params.items()}
        losses = []
        for step in range(a.steps + 1):
            _, l, g = loss_and_grads(cfg, p, idx_d, tgt_d, method="autograd")
            losses.append(l.item())
            if step < a.steps:
                opt.step(p, g, lr_scale=a.step_lr_scale)
        tensors.append((f"{kind}.losses", torch.tensor(losses)))
        print(f"  {variant} {kind}: losses {' '.join(f'{x:.4f}' for x in losses)}")

    suffix = f"_mlp{cfg.hidden}" if cfg.hidden != 4 * cfg.width else ""
    path = os.path.join(a.out, f"model_{variant}_d{cfg.depth}{suffix}.ptf")
    tensorfile.write(path, meta, tensors)
    print(f"wrote {path}: {os.path.getsize(path) / 2**20:.1f} MiB in {time.time() - t0:.1f} s "
          f"(B={a.batch} T={a.seq_len} L={cfg.depth} C={cfg.width} loss {loss.item():.5f} on {device})")


# ----------------------------------------------------------------------------------------------------------
# one optimizer step, tensor by tensor (test_parallax's optimizer block; dev/test_reference.py's mutations)

OPTIM_CONFIG = dict(variant="parallax", depth=2, width=128, head_dim=64, vocab=97, max_seq_len=64)
OPTIM_WARMUP_STEPS = 2      # steps before the recorded one, so that every state is non-zero
OPTIM_LR_SCALE = 0.5        # the schedule's multiplier in the recorded step: it must scale every group
OPTIM_GRAD_STD = 0.01       # grad norm ~6.8 over the d2 model's 0.46 M parameters


def fp32_round(d):
    """Rounds a dict of tensors to float32 values in place, kept float64: what the file and the GPU hold."""
    for k in d:
        d[k].copy_(d[k].float().double())


def optim_case(kind, seed):
    """The state before the recorded step: float64 weights after OPTIM_WARMUP_STEPS full-rate steps of
    `kind`, the gradient of the recorded step, and the optimizer, every value rounded to float32.
    Returns (cfg, params, grads, opt).
    The gradients are Gaussian, drawn fresh for each step, not the model's: a model gradient of a small
    batch has rank below C, and bf16 Newton-Schulz turns its null space into noise of ~20% of the update
    (float64 NS keeps it 0), which would hide every mutation; full-rank Gaussian matrices keep bf16 NS
    within ~1% of float64. Independent draws keep the momentum buffer off the gradient's direction
    (else plain momentum and Nesterov give the same update after the normalization)."""
    cfg = Config(**OPTIM_CONFIG)
    params = {k: v.double() for k, v in init_params(cfg, seed, zero_init_too=True).items()}
    gen = torch.Generator().manual_seed(seed + 3)
    opt = Optimizer(cfg, kind)
    for step in range(OPTIM_WARMUP_STEPS + 1):
        grads = {k: torch.randn(v.shape, generator=gen, dtype=torch.float64) * OPTIM_GRAD_STD
                 for k, v in params.items()}
        if step < OPTIM_WARMUP_STEPS:
            opt.step(params, grads)
    fp32_round(params)
    fp32_round(grads)
    fp32_round(opt.adam.m)
    fp32_round(opt.adam.v)
    if opt.muon:
        fp32_round(opt.muon.buf)
    return cfg, params, grads, opt


def optim_state(opt, name):
    """(state name, tensor) of one parameter's optimizer state, as the trainer's checkpoint names it."""
    if opt.muon and name in opt.muon.buf:
        return [("muon_buf", opt.muon.buf[name])]
    return [("adam_m", opt.adam.m[name]), ("adam_v", opt.adam.v[name])]


def optim_step(params, grads, opt, grad_clip, bf16_ns=False):
    """One step on copies; returns (updates new - old in float64, the optimizer after, grad norm). With
    bf16_ns, Newton-Schulz rounds to bf16 where muon.cuh does."""
    p = {k: v.clone() for k, v in params.items()}
    opt = copy.deepcopy(opt)
    if opt.muon:
        opt.muon.bf16 = bf16_ns
    norm = opt.step(p, grads, lr_scale=OPTIM_LR_SCALE, grad_clip=grad_clip)
    return {k: p[k] - params[k] for k in p}, opt, norm


def export_optim(a):
    """optim_d2.ptf: for kind in muon, adamw: <kind>.param/grad/<state>.<name> before the step, and for
    clip in noclip (grad_clip 0), clip (half the gradient norm, so clipping acts): <kind>.<clip>.update.<name>
    (new - old, computed in float64) and <kind>.<clip>.<state>.<name> after it."""
    t0 = time.time()
    meta = {"kind": "optim", "seed": a.seed, "lr_scale": repr(OPTIM_LR_SCALE), "torch": torch.__version__,
            "warmup_steps": OPTIM_WARMUP_STEPS, "compute_dtype": "float64 from float32 inputs",
            "max_rel_update.muon": repr(UPDATE_MAX_REL["muon"]), "max_rel_update.adamw": repr(UPDATE_MAX_REL["adamw"]),
            "max_rel_state": repr(UPDATE_MAX_REL["state"])}
    tensors = []
    for kind in ("muon", "adamw"):
        cfg, params, grads, opt = optim_case(kind, a.seed)
        meta.update({k: v for k, v in OPTIM_CONFIG.items()})
        meta["padded_vocab"] = cfg.padded_vocab
        meta[f"{kind}.adam_t"] = OPTIM_WARMUP_STEPS
        for k, v in HPARAMS[kind].items():
            meta[f"{kind}.{k}"] = repr(v)
        for n, _ in param_table(cfg):
            tensors += [(f"{kind}.param.{n}", params[n]), (f"{kind}.grad.{n}", grads[n])]
            tensors += [(f"{kind}.{s}.{n}", t) for s, t in optim_state(opt, n)]
        _, _, norm = optim_step(params, grads, opt, 0.0)
        clip = float(f"{norm / 2:.6g}")
        meta[f"{kind}.grad_norm"] = repr(norm)
        for tag, grad_clip in (("noclip", 0.0), ("clip", clip)):
            meta[f"{kind}.{tag}.grad_clip"] = repr(grad_clip)
            upd, after, _ = optim_step(params, grads, opt, grad_clip)
            for n, _ in param_table(cfg):
                tensors.append((f"{kind}.{tag}.update.{n}", upd[n]))
                tensors += [(f"{kind}.{tag}.{s}.{n}", t) for s, t in optim_state(after, n)]
        print(f"  optim {kind}: grad norm {norm:.4f}, clip at {clip}")
    path = os.path.join(a.out, "optim_d2.ptf")
    tensorfile.write(path, meta, tensors)
    print(f"wrote {path}: {os.path.getsize(path) / 2**20:.1f} MiB in {time.time() - t0:.1f} s")


def export_attention(a):
    """Inputs are rounded to bf16 (what the kernels read), then everything is computed in float64."""
    t0 = time.time()
    gen = torch.Generator().manual_seed(a.seed + 2)
    tensors = []
    for variant in ("parallax", "softmax"):
        for (B, H, T, D) in ATTENTION_SHAPES:
            def draw(scale=1.0):
                x = torch.randn(B, H, T, D, generator=gen, dtype=torch.float64) * scale
                return x.bfloat16().double()
            q, k, v, g = draw(), draw(), draw(), draw()
            r = draw(1.0 / math.sqrt(D)) if variant == "parallax" else None  # so that t = r.k is ~unit scale
            o, L, tbar, vbar = attention_forward_saved(q, r, k, v)
            dq, dr, dk, dv = attention_backward(g, q, r, k, v, o, L, tbar, vbar)
            pre = f"{variant}.B{B}H{H}T{T}D{D}."
            named = [("q", q), ("r", r), ("k", k), ("v", v), ("dO", g), ("o", o), ("L", L), ("tbar", tbar),
                     ("vbar", vbar), ("dq", dq), ("dr", dr), ("dk", dk), ("dv", dv)]
            tensors += [(pre + n, t) for n, t in named if t is not None]
    path = os.path.join(a.out, "attention_cases.ptf")
    meta = {"kind": "attention", "layout": "(B, H, T, D) row-major; L, tbar: (B, H, T)", "causal": "1",
            "inputs": "bf16-rounded, reference computed in float64, stored float32",
            "shapes": " ".join(f"{B}x{H}x{T}x{D}" for B, H, T, D in ATTENTION_SHAPES), "seed": a.seed}
    tensorfile.write(path, meta, tensors)
    print(f"wrote {path}: {os.path.getsize(path) / 2**20:.1f} MiB in {time.time() - t0:.1f} s")


def main(argv):
    a = parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    if a.device == "cuda":  # exact float32 products: no TF32 in the reference
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    dtype = torch.float64 if a.dtype == "float64" else torch.float32
    if a.optim:
        export_optim(a)
        return
    if not a.no_attention:
        export_attention(a)
    if not a.no_model:
        for variant in (("parallax", "softmax") if a.variant == "both" else (a.variant,)):
            export_model(a, variant, dtype, a.device)


if __name__ == "__main__":
    main(sys.argv[1:])
