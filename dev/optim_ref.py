"""Muon and AdamW exactly as spec section 3, and which parameter goes to which.

Muon takes every 2-D matrix inside the blocks, each C x C block of qkvr_w as its own matrix (W_q, W_k,
W_v, W_r), attproj_w, fc_w and fcproj_w one matrix per layer. AdamW takes the embedding, the head and the
gains, or everything with optimizer 'adamw'. Learning-rate schedules: WSD (default) and cosine.
"""
import math

import torch

NS_COEFFS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5

# Starting points of spec section 3. The trainer's flags default to the same numbers.
HPARAMS = {
    "muon": {
        "muon_lr": 0.02, "muon_beta": 0.95, "muon_wd": 0.0,
        "adam_beta1": 0.8, "adam_beta2": 0.95, "adam_eps": 1e-10, "adam_wd": 0.0,
        "embed_lr": 0.3, "head_lr": 0.008, "gain_lr": 0.02,
    },
    "adamw": {
        "adam_lr": 1e-3, "adam_beta1": 0.9, "adam_beta2": 0.95, "adam_eps": 1e-8, "adam_wd": 0.1,
    },
}

# test_parallax's bounds on one optimizer step against this reference (float64), per tensor: the relative
# error ||d_gpu - d_ref|| / ||d_ref|| of the update d = new - old, and of the optimizer state after it.
# Written into optim_d2.ptf by dev/export_reference.py, read from there by test_parallax, and checked by
# dev/test_reference.py to admit the GPU's roundings and to reject every known mutation of the optimizer.
#  muon:  Newton-Schulz in bf16 (8 significant bits: X, A and b A + c A A rounded at every one of the 5
#         iterations) moves a full-rank update by 1.2e-2 from float64 NS; newton_schulz(bf16=True) measures
#         that with float64 and with float32 accumulation alike (the roundings set it, not the sums), on
#         the exporter's matrices. The bound is twice that.
#  adamw: float32 elementwise arithmetic, a few ulps (2^-24 each) of the update; test_parallax adds what
#         the float32 weight costs (two roundings of |w|, the decay product and the store: one ulp of |w|
#         per element, computed from the file), which dominates where |w| is large against the step.
#  state: buf, m, v after the step, float32 elementwise.
UPDATE_MAX_REL = {"muon": 2.5e-2, "adamw": 1e-5, "state": 1e-5}


def param_group(name):
    """The trainer's ParamGroup of a tensor (train_parallax.cu's table): embed, head, gain or matrix."""
    if name == "wte":
        return "embed"
    if name == "lm_head_w":
        return "head"
    if name.endswith("_gain"):
        return "gain"
    return "matrix"


def muon_matrices(name, w, cfg):
    """View of a stacked parameter as a batch of the matrices Muon orthogonalizes, or None."""
    C = cfg.width
    if name == "qkvr_w":
        return w.view(cfg.depth * cfg.n_proj, C, C)
    if name in ("attproj_w", "fc_w", "fcproj_w"):
        return w
    return None


def newton_schulz(G, steps=NS_STEPS, bf16=False, coeffs=NS_COEFFS):
    """Approximate U V^T of G = U S V^T for a batch of matrices (..., rows, cols). With bf16, X, A and
    b A + c A A are rounded to bf16 where muon.cuh stores them (accumulation stays in the input
    precision), so the result carries the GPU's roundings."""
    a, b, c = coeffs
    rnd = (lambda t: t.bfloat16().to(G.dtype)) if bf16 else (lambda t: t)
    X = G / (G.flatten(-2).norm(dim=-1)[..., None, None] + 1e-7)
    tall = G.shape[-2] > G.shape[-1]
    if tall:
        X = X.transpose(-1, -2)
    for _ in range(steps):
        Xr = rnd(X)
        A = rnd(Xr @ Xr.transpose(-1, -2))
        Bm = rnd(b * A + c * (A @ A))
        X = rnd(a * Xr + Bm @ Xr) if bf16 else a * X + Bm @ Xr
    if tall:
        X = X.transpose(-1, -2)
    return X


def ns_scalar(x, steps=NS_STEPS):
    """What Newton-Schulz does to one singular value x in (0, 1]: p(x) = a x + b x^3 + c x^5, iterated."""
    a, b, c = NS_COEFFS
    for _ in range(steps):
        x = a * x + b * x ** 3 + c * x ** 5
    return x


def ns_image(lo, hi, steps=NS_STEPS):
    """The exact image [min, max] of the interval [lo, hi] of singular values under ns_scalar: p of an
    interval is the interval between p at its ends and at the critical points of p inside it (p' = a +
    3b x^2 + 5c x^4 = 0), applied `steps` times. A grid of samples misses the narrow extrema of p^5."""
    a, b, c = NS_COEFFS
    disc = math.sqrt(9 * b * b - 20 * a * c)
    crit = [math.sqrt(r) for r in ((-3 * b - disc) / (10 * c), (-3 * b + disc) / (10 * c)) if r > 0]
    for _ in range(steps):
        vals = [ns_scalar(x, 1) for x in [lo, hi] + [x for x in crit if lo < x < hi]]
        lo, hi = min(vals), max(vals)
    return lo, hi


class Muon:
    """Nesterov momentum, then the orthogonalized update. One buffer per parameter tensor. Each part is
    its own method so that dev/test_reference.py can swap one for a wrong version."""

    def __init__(self, beta=0.95, wd=0.0, bf16=False, coeffs=NS_COEFFS):
        self.beta, self.wd, self.bf16, self.coeffs = beta, wd, bf16, coeffs
        self.buf = {}

    def momentum(self, name, g):
        """Updates the buffer and returns the Nesterov direction u."""
        beta = self.beta
        buf = self.buf.setdefault(name, torch.zeros_like(g))
        buf.mul_(beta).add_(g, alpha=1.0 - beta)
        return g * (1.0 - beta) + buf * beta

    def scale(self, rows, cols):
        return math.sqrt(max(1.0, rows / cols))

    def step(self, name, w, g, mats_of, lr):
        U = mats_of(self.momentum(name, g))
        rows, cols = U.shape[-2], U.shape[-1]
        X = newton_schulz(U, bf16=self.bf16, coeffs=self.coeffs).reshape(w.shape)
        if self.wd:
            w.mul_(1.0 - lr * self.wd)
        w.add_(X, alpha=-lr * self.scale(rows, cols))


class AdamW:
    """m, v with bias correction; decoupled weight decay W *= 1 - lr*wd before the step."""

    def __init__(self, beta1, beta2, eps):
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m, self.v, self.t = {}, {}, {}

    def bias_corrections(self, t):
        return 1.0 - self.beta1 ** t, 1.0 - self.beta2 ** t

    def step(self, name, w, g, lr, wd):
        m = self.m.setdefault(name, torch.zeros_like(w))
        v = self.v.setdefault(name, torch.zeros_like(w))
        t = self.t[name] = self.t.get(name, 0) + 1
        m.mul_(self.beta1).add_(g, alpha=1.0 - self.beta1)
        v.mul_(self.beta2).addcmul_(g, g, value=1.0 - self.beta2)
        bc1, bc2 = self.bias_corrections(t)
        mhat = m / bc1
        vhat = v / bc2
        if wd:
            w.mul_(1.0 - lr * wd)
        w.add_(-lr * mhat / (vhat.sqrt() + self.eps))


class Optimizer:
    """The trainer's grouping: optimizer 'muon' (Muon + AdamW) or 'adamw' (AdamW for all).
    lr_scale multiplies every group's learning rate (the schedule). Gradient clipping as the trainer's
    model_update: with grad_clip > 0 and a global norm above it, every gradient is scaled by clip / norm."""

    def __init__(self, cfg, kind, hp=None, bf16_ns=False):
        if kind not in HPARAMS:
            raise ValueError(f"unknown optimizer '{kind}' (expected muon or adamw)")
        self.cfg, self.kind = cfg, kind
        self.hp = dict(HPARAMS[kind], **(hp or {}))
        self.adam = AdamW(self.hp["adam_beta1"], self.hp["adam_beta2"], self.hp["adam_eps"])
        self.muon = Muon(self.hp["muon_beta"], self.hp["muon_wd"], bf16_ns) if kind == "muon" else None

    def muon_view(self, name, w):
        return muon_matrices(name, w, self.cfg)

    def decay(self, name):
        """AdamW-only: weight decay on the matrices, the embedding and the head, not on the gains (the
        trainer's rule; every tensor here is at least 2-D, the gains are (L, D))."""
        return 0.0 if param_group(name) == "gain" else self.hp["adam_wd"]

    def step(self, params, grads, lr_scale=1.0, grad_clip=0.0):
        """One step of every tensor; returns the global gradient norm before clipping."""
        hp = self.hp
        with torch.no_grad():
            norm = math.sqrt(sum(grads[name].double().pow(2).sum().item() for name in params))
            gscale = grad_clip / norm if grad_clip > 0 and norm > grad_clip else 1.0
            for name, w in params.items():
                g = grads[name] * gscale if gscale != 1.0 else grads[name]
                if self.kind == "adamw":
                    self.adam.step(name, w, g, hp["adam_lr"] * lr_scale, self.decay(name))
                elif self.muon_view(name, w) is not None:
                    self.muon.step(name, w, g, lambda t, n=name: self.muon_view(n, t), hp["muon_lr"] * lr_scale)
                else:
                    lr = {"wte": hp["embed_lr"], "lm_head_w": hp["head_lr"]}.get(name, hp["gain_lr"])
                    self.adam.step(name, w, g, lr * lr_scale, hp["adam_wd"])
        return norm


def lr_schedule(step, total, warmup, decay_frac=0.3, kind="wsd", final=0.0):
    """Multiplier of the base learning rates at `step` (0-based) of `total`. WSD: linear warmup over
    `warmup` steps, flat, then linear decay to `final` over the last decay_frac of the run. Cosine:
    the same warmup, then a half cosine down to `final`."""
    if step < warmup:
        return (step + 1) / warmup
    if kind == "wsd":
        decay_start = total - int(decay_frac * total)
        if step < decay_start:
            return 1.0
        frac = (step - decay_start + 1) / max(1, total - decay_start)
        return 1.0 - (1.0 - final) * frac
    if kind == "cosine":
        frac = (step - warmup + 1) / max(1, total - warmup)
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * min(frac, 1.0)))
    raise ValueError(f"unknown schedule '{kind}' (expected wsd or cosine)")
