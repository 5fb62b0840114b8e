"""Parallax attention, written plainly: the reference every kernel is judged against (spec section 1).

Shapes: q, r, k, v are (B, H, T, D); causal (query i sees keys j <= i). r is None for the softmax variant.
Three forms of the same function:
  attention_plain      materialized T x T, differentiated by torch autograd
  ParallaxAttention    the analytic backward of the spec, as a custom autograd Function
  attention_streaming  the tiled online-softmax forward that the CUDA kernels follow
Works on torch 1.13 (CPU) and 2.x.
"""
import math

import torch


def causal_mask(T, device):
    """True where key j > query i, i.e. the entries that are masked out."""
    return torch.ones(T, T, dtype=torch.bool, device=device).triu(1)


def attention_plain(q, r, k, v):
    """o_i = sum_j p_ij (1 + tbar_i - t_ij) v_j; with r None, plain softmax attention."""
    D = q.shape[-1]
    c = 1.0 / math.sqrt(D)
    s = c * (q @ k.transpose(-1, -2))
    s = s.masked_fill(causal_mask(q.shape[-2], q.device), float("-inf"))
    p = torch.softmax(s, dim=-1)
    if r is None:
        return p @ v
    t = r @ k.transpose(-1, -2)  # r.k is NOT scaled
    tbar = (p * t).sum(-1, keepdim=True)
    return (p * (1.0 + tbar - t)) @ v


def effective_weights(q, r, k):
    """p_ij (1 + tbar_i - t_ij): rows sum to 1, entries may be negative or above 1."""
    D = q.shape[-1]
    s = (q @ k.transpose(-1, -2)) / math.sqrt(D)
    s = s.masked_fill(causal_mask(q.shape[-2], q.device), float("-inf"))
    p = torch.softmax(s, dim=-1)
    t = r @ k.transpose(-1, -2)
    tbar = (p * t).sum(-1, keepdim=True)
    return p * (1.0 + tbar - t)


def attention_forward_saved(q, r, k, v):
    """Forward that also returns what the backward keeps per row: L = logsumexp_j s_ij, tbar, vbar.
    Softmax variant: tbar is zero and vbar equals o."""
    D = q.shape[-1]
    c = 1.0 / math.sqrt(D)
    s = c * (q @ k.transpose(-1, -2))
    s = s.masked_fill(causal_mask(q.shape[-2], q.device), float("-inf"))
    L = torch.logsumexp(s, dim=-1)
    p = torch.exp(s - L.unsqueeze(-1))
    vbar = p @ v
    if r is None:
        return vbar, L, torch.zeros_like(L), vbar
    t = r @ k.transpose(-1, -2)
    tbar = (p * t).sum(-1)
    o = (p * (1.0 + tbar.unsqueeze(-1) - t)) @ v
    return o, L, tbar, vbar


def attention_backward(g, q, r, k, v, o, L, tbar, vbar):
    """The analytic backward of spec section 1, P recomputed from S and L. Returns dq, dr, dk, dv
    (dr is None for the softmax variant)."""
    D = q.shape[-1]
    c = 1.0 / math.sqrt(D)
    s = c * (q @ k.transpose(-1, -2))
    s = s.masked_fill(causal_mask(q.shape[-2], q.device), float("-inf"))
    p = torch.exp(s - L.unsqueeze(-1))
    A = g @ v.transpose(-1, -2)                      # A_ij = g_i . v_j
    Tg = (g * o).sum(-1, keepdim=True)               # g_i . o_i
    if r is None:
        dS = p * (A - Tg)
        dq = c * (dS @ k)
        dk = c * (dS.transpose(-1, -2) @ q)
        dv = p.transpose(-1, -2) @ g
        return dq, None, dk, dv
    Bv = (g * vbar).sum(-1, keepdim=True)            # g_i . vbar_i
    t = r @ k.transpose(-1, -2)
    tb = tbar.unsqueeze(-1)
    dS = p * ((A - Tg) + (tb - t) * (A - Bv))
    dT = -p * (A - Bv)
    dq = c * (dS @ k)
    dr = dT @ k
    dk = c * (dS.transpose(-1, -2) @ q) + dT.transpose(-1, -2) @ r
    dv = (p * (1.0 + tb - t)).transpose(-1, -2) @ g
    return dq, dr, dk, dv


class ParallaxAttention(torch.autograd.Function):
    """Forward saves (o, L, tbar, vbar) like the kernels; backward is the spec's formula, not autograd."""

    @staticmethod
    def forward(ctx, q, r, k, v):
        o, L, tbar, vbar = attention_forward_saved(q, r, k, v)
        ctx.save_for_backward(q, r, k, v, o, L, tbar, vbar)
        return o

    @staticmethod
    def backward(ctx, g):
        q, r, k, v, o, L, tbar, vbar = ctx.saved_tensors
        return attention_backward(g, q, r, k, v, o, L, tbar, vbar)


class SoftmaxAttention(torch.autograd.Function):
    """The same analytic backward with the probe compiled out (r = None)."""

    @staticmethod
    def forward(ctx, q, k, v):
        o, L, tbar, vbar = attention_forward_saved(q, None, k, v)
        ctx.save_for_backward(q, k, v, o, L)
        return o

    @staticmethod
    def backward(ctx, g):
        q, k, v, o, L = ctx.saved_tensors
        dq, _, dk, dv = attention_backward(g, q, None, k, v, o, L, None, None)
        return dq, dk, dv


def attention_analytic(q, r, k, v):
    if r is None:
        return SoftmaxAttention.apply(q, k, v)
    return ParallaxAttention.apply(q, r, k, v)


def attention_streaming(q, r, k, v, tile_q=16, tile_k=16):
    """The FlashAttention-style forward of spec section 1, tile by tile with fp32-style accumulators.
    Returns o, L (= m + log d1), tbar, vbar exactly as the kernels save them."""
    B, H, T, D = q.shape
    c = 1.0 / math.sqrt(D)
    o = torch.empty_like(q)
    vbar_out = torch.empty_like(q)
    L_out = torch.empty(B, H, T, dtype=q.dtype, device=q.device)
    tbar_out = torch.zeros(B, H, T, dtype=q.dtype, device=q.device)
    for i0 in range(0, T, tile_q):
        i1 = min(i0 + tile_q, T)
        Q = q[:, :, i0:i1]
        n = i1 - i0
        m = torch.full((B, H, n, 1), float("-inf"), dtype=q.dtype, device=q.device)
        d1 = torch.zeros(B, H, n, 1, dtype=q.dtype, device=q.device)
        d2 = torch.zeros_like(d1)
        O1 = torch.zeros(B, H, n, D, dtype=q.dtype, device=q.device)
        O2 = torch.zeros_like(O1)
        for j0 in range(0, i1, tile_k):  # causal: key tiles past the last query are skipped
            j1 = min(j0 + tile_k, T)
            K, V = k[:, :, j0:j1], v[:, :, j0:j1]
            S = c * (Q @ K.transpose(-1, -2))
            qi = torch.arange(i0, i1, device=q.device).unsqueeze(1)
            kj = torch.arange(j0, j1, device=q.device).unsqueeze(0)
            S = S.masked_fill(kj > qi, float("-inf"))
            m_new = torch.maximum(m, S.max(-1, keepdim=True).values)
            a = torch.exp(m - m_new)
            W = torch.exp(S - m_new)
            d1 = a * d1 + W.sum(-1, keepdim=True)
            O1 = a * O1 + W @ V
            if r is not None:
                Tt = r[:, :, i0:i1] @ K.transpose(-1, -2)
                U = W * Tt
                d2 = a * d2 + U.sum(-1, keepdim=True)
                O2 = a * O2 + U @ V
            m = m_new
        vbar = O1 / d1
        tbar = d2 / d1
        o[:, :, i0:i1] = vbar * (1.0 + tbar) - O2 / d1 if r is not None else vbar
        vbar_out[:, :, i0:i1] = vbar
        L_out[:, :, i0:i1] = (m + torch.log(d1)).squeeze(-1)
        tbar_out[:, :, i0:i1] = tbar.squeeze(-1)
    return o, L_out, tbar_out, vbar_out


def attention_flops(B, H, T, D, variant, with_backward):
    """Model FLOPs of spec section 1 (minimal causal work), u = B*H*T*T*D: the forward alone, or the
    forward plus the backward when with_backward is set."""
    u = B * H * T * T * D
    if variant == "parallax":
        return (4 + (8 if with_backward else 0)) * u
    return (2 + (5 if with_backward else 0)) * u
