"""Parallax-GPT in plain PyTorch (spec section 2): the parameter table, the init, the forward with autograd,
and the whole backward written out by hand, layer by layer, as the CUDA trainer computes it.

Layout, the same as the trainer's (llm.c style: one tensor per kind, all layers stacked):
  wte        (Vp, C)        token embedding, rows V..Vp-1 are padding and never read
  qkvr_w     (L, n*C, C)    rows [0,C) W_q, [C,2C) W_k, [2C,3C) W_v, [3C,4C) W_r (n = 4; softmax n = 3)
  q_gain     (L, D)         gains after the per-head rmsnorm; k_gain likewise; r_gain (parallax only)
  attproj_w  (L, C, C)      W_o
  fc_w       (L, F, C)      W_1 (F = MLP hidden size, 4C unless mlp_hidden says otherwise)
  fcproj_w   (L, C, F)      W_2
  lm_head_w  (Vp, C)        W_head, untied; only the first V rows enter the loss
Activations are (B, T, C) with heads interleaved as (B, T, H, D); attention takes (B, H, T, D).
Works on torch 1.13 (CPU) and 2.x.
"""
import math
from dataclasses import dataclass

import torch

from parallax_attention import attention_backward, attention_forward_saved, attention_plain, attention_analytic

GPT2_VOCAB = 50257
EPS = 1e-6
ROPE_THETA = 10000.0


@dataclass
class Config:
    variant: str = "parallax"   # or "softmax"
    depth: int = 12             # L
    width: int = 768            # C
    head_dim: int = 64          # D
    vocab: int = GPT2_VOCAB     # V
    max_seq_len: int = 1024
    mlp_hidden: int = 0         # F; 0 means 4C (a widened softmax MLP matches Parallax's parameters at 4C + C/2)

    @property
    def hidden(self):
        return self.mlp_hidden or 4 * self.width

    @property
    def n_head(self):
        return self.width // self.head_dim

    @property
    def padded_vocab(self):     # Vp: a multiple of 128 so the head GEMM tiles evenly (50257 -> 50304)
        return (self.vocab + 127) // 128 * 128

    @property
    def n_proj(self):           # q, k, v (+ r)
        return 4 if self.variant == "parallax" else 3

    def check(self):
        if self.variant not in ("parallax", "softmax"):
            raise ValueError(f"unknown variant '{self.variant}' (expected parallax or softmax)")
        if self.depth < 1:
            raise ValueError(f"depth must be at least 1, got {self.depth}")
        if self.width % self.head_dim != 0 or self.head_dim % 2 != 0:
            raise ValueError(f"width {self.width} must be a multiple of the head dim {self.head_dim} (even)")
        if self.mlp_hidden < 0:
            raise ValueError(f"mlp_hidden must not be negative, got {self.mlp_hidden}")
        if self.vocab < 2:
            raise ValueError(f"vocab must be at least 2, got {self.vocab}")


def param_table(cfg):
    """(name, shape) of every parameter tensor, in file order. The trainer keeps the same table."""
    C, L, D, F, Vp = cfg.width, cfg.depth, cfg.head_dim, cfg.hidden, cfg.padded_vocab
    table = [("wte", (Vp, C)), ("qkvr_w", (L, cfg.n_proj * C, C)), ("q_gain", (L, D)), ("k_gain", (L, D))]
    if cfg.variant == "parallax":
        table.append(("r_gain", (L, D)))
    table += [("attproj_w", (L, C, C)), ("fc_w", (L, F, C)), ("fcproj_w", (L, C, F)), ("lm_head_w", (Vp, C))]
    return table


def init_params(cfg, seed, zero_init_too=False):
    """Spec init: W_q,k,v,r and W_1 uniform with std 0.5/sqrt(C); W_o, W_2, W_head zero; embedding N(0,1);
    q and k gains 1, r gain 1/sqrt(D). With zero_init_too, the zero-initialized matrices get the same
    uniform draw instead, so that a test sees non-zero gradients everywhere (at the spec init W_head = 0
    makes every gradient but the head's exactly zero). Drawn on the CPU in float32, so any device
    gives the same weights."""
    gen = torch.Generator().manual_seed(seed)
    bound = math.sqrt(3.0) * 0.5 / math.sqrt(cfg.width)  # uniform(-a, a) has std a/sqrt(3)
    params = {}
    for name, shape in param_table(cfg):
        if name == "wte":
            w = torch.randn(shape, generator=gen)
        elif name in ("qkvr_w", "fc_w") or (zero_init_too and name in ("attproj_w", "fcproj_w", "lm_head_w")):
            w = (torch.rand(shape, generator=gen) * 2.0 - 1.0) * bound
        elif name in ("q_gain", "k_gain"):
            w = torch.ones(shape)
        elif name == "r_gain":
            w = torch.full(shape, 1.0 / math.sqrt(cfg.head_dim))
        else:
            w = torch.zeros(shape)
        params[name] = w
    return params


# ----------------------------------------------------------------------------------------------------------
# the pieces, each with its backward

def rmsnorm(x):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS)


def rmsnorm_backward(dy, x):
    """y = x s, s = (mean(x^2) + eps)^(-1/2)  ->  dx = s (dy - y mean(dy y))."""
    s = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS)
    y = x * s
    return s * (dy - y * (dy * y).mean(-1, keepdim=True))


def rope_tables(T, D, dtype, device):
    """cos, sin of shape (T, D/2): angle = position * theta^(-2i/D), half-split layout."""
    i = torch.arange(D // 2, dtype=torch.float64)
    freq = ROPE_THETA ** (-2.0 * i / D)
    ang = torch.arange(T, dtype=torch.float64).unsqueeze(1) * freq.unsqueeze(0)
    return torch.cos(ang).to(dtype=dtype, device=device), torch.sin(ang).to(dtype=dtype, device=device)


def rope(x, cos, sin):
    """x (B, T, H, D): [x1, x2] -> [x1 cos - x2 sin, x1 sin + x2 cos]."""
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    c, s = cos[:, None, :], sin[:, None, :]
    return torch.cat([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1)


def rope_backward(dy, cos, sin):
    """The transpose of the rotation: rotate by -angle."""
    h = dy.shape[-1] // 2
    d1, d2 = dy[..., :h], dy[..., h:]
    c, s = cos[:, None, :], sin[:, None, :]
    return torch.cat([d1 * c + d2 * s, -d1 * s + d2 * c], dim=-1)


def cross_entropy(logits, targets, V):
    """Mean over all B*T positions of -log softmax(logits[:V])[target]."""
    lg = logits[..., :V].reshape(-1, V)
    return torch.nn.functional.cross_entropy(lg, targets.reshape(-1))


# ----------------------------------------------------------------------------------------------------------
# forward with autograd

def forward(cfg, params, idx, targets, attention="plain", rope_cs=None):
    """Returns (logits (B, T, Vp), loss). attention: 'plain' (autograd through the T x T matrix),
    'analytic' (the spec's backward formula) or a function (q, r, k, v) -> o (dev/bench_torch.py passes
    SDPA). rope_cs: (cos, sin) from rope_tables, made beforehand (torch.compile then sees no CPU tables).
    params[name][l] may index a stacked tensor or a list of per-layer tensors."""
    attn = attention if callable(attention) else attention_plain if attention == "plain" else attention_analytic
    B, T = idx.shape
    C, H, D, n = cfg.width, cfg.n_head, cfg.head_dim, cfg.n_proj
    cos, sin = rope_cs if rope_cs is not None else rope_tables(T, D, params["wte"].dtype, idx.device)
    x = params["wte"][idx]
    for l in range(cfg.depth):
        qkvr = rmsnorm(x) @ params["qkvr_w"][l].t()
        parts = list(qkvr.split(C, dim=-1))
        q = rope(rmsnorm(parts[0].view(B, T, H, D)) * params["q_gain"][l], cos, sin)
        k = rope(rmsnorm(parts[1].view(B, T, H, D)) * params["k_gain"][l], cos, sin)
        v = parts[2].view(B, T, H, D)
        r = None
        if n == 4:
            r = rope(rmsnorm(parts[3].view(B, T, H, D)) * params["r_gain"][l], cos, sin)
            r = r.transpose(1, 2)
        y = attn(q.transpose(1, 2), r, k.transpose(1, 2), v.transpose(1, 2))
        y = y.transpose(1, 2).reshape(B, T, C)
        x = x + y @ params["attproj_w"][l].t()
        u = rmsnorm(x) @ params["fc_w"][l].t()
        x = x + torch.relu(u).pow(2) @ params["fcproj_w"][l].t()
    logits = rmsnorm(x) @ params["lm_head_w"].t()
    return logits, cross_entropy(logits, targets, cfg.vocab)


# ----------------------------------------------------------------------------------------------------------
# the same forward with every activation kept, and the backward written out by hand

def forward_with_cache(cfg, params, idx, targets):
    """The forward of `forward`, without autograd, keeping what the backward needs (as the trainer does)."""
    B, T = idx.shape
    C, H, D, n = cfg.width, cfg.n_head, cfg.head_dim, cfg.n_proj
    cos, sin = rope_tables(T, D, params["wte"].dtype, idx.device)
    cache = {"cos": cos, "sin": sin, "layers": []}
    x = params["wte"][idx]
    for l in range(cfg.depth):
        a = {"x": x}
        h = rmsnorm(x)
        qkvr = h @ params["qkvr_w"][l].t()
        a["h"] = h
        raw = [p.view(B, T, H, D) for p in qkvr.split(C, dim=-1)]   # q, k, v (, r) before the head norm
        a["raw"] = raw
        gains = ["q_gain", "k_gain", None, "r_gain"]
        heads = []
        for j in range(n):
            if j == 2:
                heads.append(raw[2])
            else:
                heads.append(rope(rmsnorm(raw[j]) * params[gains[j]][l], cos, sin))
        q, k, v = (t.transpose(1, 2) for t in heads[:3])
        r = heads[3].transpose(1, 2) if n == 4 else None
        o, L, tbar, vbar = attention_forward_saved(q, r, k, v)
        a.update(q=q, k=k, v=v, r=r, o=o, L=L, tbar=tbar, vbar=vbar)
        y = o.transpose(1, 2).reshape(B, T, C)
        a["y"] = y
        x = x + y @ params["attproj_w"][l].t()
        a["x_mid"] = x
        h2 = rmsnorm(x)
        u = h2 @ params["fc_w"][l].t()
        act = torch.relu(u).pow(2)
        a.update(h2=h2, u=u, act=act)
        x = x + act @ params["fcproj_w"][l].t()
        cache["layers"].append(a)
    cache["x_final"] = x
    hf = rmsnorm(x)
    cache["hf"] = hf
    logits = hf @ params["lm_head_w"].t()
    return logits, cross_entropy(logits, targets, cfg.vocab), cache


def backward(cfg, params, idx, targets, logits, cache):
    """Gradients of the mean cross-entropy with respect to every parameter, by hand."""
    B, T = idx.shape
    C, H, D, n, V, F = cfg.width, cfg.n_head, cfg.head_dim, cfg.n_proj, cfg.vocab, cfg.hidden
    N = B * T
    cos, sin = cache["cos"], cache["sin"]
    grads = {name: torch.zeros_like(p) for name, p in params.items()}

    # loss: d/dlogits = (softmax - onehot) / N over the first V columns; the padding columns get zero
    dlogits = torch.zeros_like(logits)
    prob = torch.softmax(logits[..., :V], dim=-1)
    prob.scatter_add_(-1, targets.unsqueeze(-1), -torch.ones_like(targets, dtype=prob.dtype).unsqueeze(-1))
    dlogits[..., :V] = prob / N
    grads["lm_head_w"] = dlogits.reshape(N, -1).t() @ cache["hf"].reshape(N, C)
    dx = rmsnorm_backward(dlogits @ params["lm_head_w"], cache["x_final"])

    for l in reversed(range(cfg.depth)):
        a = cache["layers"][l]
        # MLP: x_out = x_mid + relu(h2 W_1^T)^2 W_2^T
        grads["fcproj_w"][l] = dx.reshape(N, C).t() @ a["act"].reshape(N, F)
        dact = dx @ params["fcproj_w"][l]
        du = dact * 2.0 * torch.relu(a["u"])
        grads["fc_w"][l] = du.reshape(N, F).t() @ a["h2"].reshape(N, C)
        dx = dx + rmsnorm_backward(du @ params["fc_w"][l], a["x_mid"])
        # attention: x_mid = x + y W_o^T
        grads["attproj_w"][l] = dx.reshape(N, C).t() @ a["y"].reshape(N, C)
        dy = (dx @ params["attproj_w"][l]).view(B, T, H, D).transpose(1, 2)
        dq, dr, dk, dv = attention_backward(dy, a["q"], a["r"], a["k"], a["v"], a["o"], a["L"], a["tbar"], a["vbar"])
        dheads = [dq, dk, dv, dr]
        gains = ["q_gain", "k_gain", None, "r_gain"]
        draw = []
        for j in range(n):
            d = dheads[j].transpose(1, 2)   # (B, T, H, D)
            if j == 2:
                draw.append(d)
                continue
            dg = rope_backward(d, cos, sin)            # gradient of rmsnorm(raw) * gain
            normed = rmsnorm(a["raw"][j])
            grads[gains[j]][l] = (dg * normed).sum(dim=(0, 1, 2))
            draw.append(rmsnorm_backward(dg * params[gains[j]][l], a["raw"][j]))
        dqkvr = torch.cat([d.reshape(B, T, C) for d in draw], dim=-1)
        grads["qkvr_w"][l] = dqkvr.reshape(N, n * C).t() @ a["h"].reshape(N, C)
        dx = dx + rmsnorm_backward(dqkvr @ params["qkvr_w"][l], a["x"])

    grads["wte"].index_add_(0, idx.reshape(-1), dx.reshape(N, C))
    return grads


def loss_and_grads(cfg, params, idx, targets, method="autograd"):
    """method: 'autograd' (plain attention), 'analytic' (autograd with the spec's attention backward),
    or 'manual' (the whole backward by hand). Returns logits, loss, grads."""
    if method == "manual":
        with torch.no_grad():
            logits, loss, cache = forward_with_cache(cfg, params, idx, targets)
            return logits, loss, backward(cfg, params, idx, targets, logits, cache)
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    logits, loss = forward(cfg, leaves, idx, targets, attention="plain" if method == "autograd" else "analytic")
    loss.backward()
    return logits.detach(), loss.detach(), {k: v.grad for k, v in leaves.items()}
