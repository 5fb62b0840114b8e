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


def muon_matrices(name, w, cfg):
    """View of a stacked parameter as a batch of the matrices Muon orthogonalizes, or None."""
    C = cfg.width
    if name == "qkvr_w":
        return w.view(cfg.depth * cfg.n_proj, C, C)
    if name in ("attproj_w", "fc_w", "fcproj_w"):
        return w
    return None


def newton_schulz(G, steps=NS_STEPS, bf16=False):
    """Approximate U V^T of G = U S V^T for a batch of matrices (..., rows, cols). With bf16 the operands
    of every product are rounded to bf16 (accumulation stays in the input precision), as on the GPU."""
    a, b, c = NS_COEFFS
    rnd = (lambda t: t.bfloat16().to(G.dtype)) if bf16 else (lambda t: t)
    X = G / (G.flatten(-2).norm(dim=-1)[..., None, None] + 1e-7)
    tall = G.shape[-2] > G.shape[-1]
    if tall:
        X = X.transpose(-1, -2)
    for _ in range(steps):
        Xr = rnd(X)
        A = rnd(Xr @ Xr.transpose(-1, -2))
        Bm = rnd(b * A + c * (A @ A))
        X = a * X + Bm @ Xr
    if tall:
        X = X.transpose(-1, -2)
    return X


def ns_scalar(x, steps=NS_STEPS):
    """What Newton-Schulz does to one singular value x in (0, 1]: p(x) = a x + b x^3 + c x^5, iterated."""
    a, b, c = NS_COEFFS
    for _ in range(steps):
        x = a * x + b * x ** 3 + c * x ** 5
    return x


class Muon:
    """Nesterov momentum, then the orthogonalized update. One buffer per parameter tensor."""

    def __init__(self, beta=0.95, wd=0.0, bf16=False):
        self.beta, self.wd, self.bf16 = beta, wd, bf16
        self.buf = {}

    def step(self, name, w, g, mats_of, lr):
        beta = self.beta
        buf = self.buf.setdefault(name, torch.zeros_like(w))
        buf.mul_(beta).add_(g, alpha=1.0 - beta)
        u = g * (1.0 - beta) + buf * beta
        U = mats_of(u)
        rows, cols = U.shape[-2], U.shape[-1]
        X = newton_schulz(U, bf16=self.bf16).reshape(w.shape)
        if self.wd:
            w.mul_(1.0 - lr * self.wd)
        w.add_(X, alpha=-lr * math.sqrt(max(1.0, rows / cols)))


class AdamW:
    """m, v with bias correction; decoupled weight decay W *= 1 - lr*wd before the step."""

    def __init__(self, beta1, beta2, eps):
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m, self.v, self.t = {}, {}, {}

    def step(self, name, w, g, lr, wd):
        m = self.m.setdefault(name, torch.zeros_like(w))
        v = self.v.setdefault(name, torch.zeros_like(w))
        t = self.t[name] = self.t.get(name, 0) + 1
        m.mul_(self.beta1).add_(g, alpha=1.0 - self.beta1)
        v.mul_(self.beta2).addcmul_(g, g, value=1.0 - self.beta2)
        mhat = m / (1.0 - self.beta1 ** t)
        vhat = v / (1.0 - self.beta2 ** t)
        if wd:
            w.mul_(1.0 - lr * wd)
        w.add_(-lr * mhat / (vhat.sqrt() + self.eps))


class Optimizer:
    """The trainer's grouping: optimizer 'muon' (Muon + AdamW) or 'adamw' (AdamW for all).
    lr_scale multiplies every group's learning rate (the schedule)."""

    def __init__(self, cfg, kind, hp=None, bf16_ns=False):
        if kind not in HPARAMS:
            raise ValueError(f"unknown optimizer '{kind}' (expected muon or adamw)")
        self.cfg, self.kind = cfg, kind
        self.hp = dict(HPARAMS[kind], **(hp or {}))
        self.adam = AdamW(self.hp["adam_beta1"], self.hp["adam_beta2"], self.hp["adam_eps"])
        self.muon = Muon(self.hp["muon_beta"], self.hp["muon_wd"], bf16_ns) if kind == "muon" else None

    def step(self, params, grads, lr_scale=1.0):
        hp = self.hp
        with torch.no_grad():
            for name, w in params.items():
                g = grads[name]
                if self.kind == "adamw":
                    wd = hp["adam_wd"] if w.dim() >= 2 else 0.0   # decay on matrices, not on the gains
                    self.adam.step(name, w, g, hp["adam_lr"] * lr_scale, wd)
                elif muon_matrices(name, w, self.cfg) is not None:
                    self.muon.step(name, w, g, lambda t, n=name: muon_matrices(n, t, self.cfg),
                                   hp["muon_lr"] * lr_scale)
                else:
                    lr = {"wte": hp["embed_lr"], "lm_head_w": hp["head_lr"]}.get(name, hp["gain_lr"])
                    self.adam.step(name, w, g, lr * lr_scale, hp["adam_wd"])


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
