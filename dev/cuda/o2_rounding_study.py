"""Kernel study, on the CPU: how the tensor-core forward's bf16 operands move the Parallax output o.

The forward of parallax_kernels.cuh rounds W (= P, unnormalized) and U = W o T to bf16 as operands of the
O1 = W V and O2 = U V products, while d1 = sum W and d2 = sum U stay fp32. This script emulates exactly
that (float64 with the same roundings) and compares three ways of forming O2 against the exact output:
  bf16      O2 = bf16(U) V                      (the kernel today)
  hi+lo     O2 = bf16(U) V + bf16(U - bf16(U)) V (one more tensor-core product per tile)
  d2 from   d2 = sum bf16(U) instead of sum U   (no extra product; tbar then carries bf16 rounding)
  shifted   U = W o (T - tau), tau_i = t_i0 (the row's t at key 0), O2 = bf16(U) V; then
            o = vbar (1 + d2/d1) - O2/d1 and tbar = d2/d1 + tau: the same o in exact arithmetic (the weights
            1 + tbar - t do not change when every t of a row moves by tau), exact at T = 1, and no extra
            product (the kernel since version 3's second revision)
Printed: ||o - o_exact|| / ||o_exact|| at T = 1 (where dq = dk = 0 exactly, so any error in o shows up in
the gradients), T = 2 and 8 (few keys: little averaging) and T = 256, for D = 64 and 128, and the rel error of tbar.
  python3 dev/cuda/o2_rounding_study.py
"""
import math

import torch


def bf16(x):
    return x.to(torch.bfloat16).to(torch.float64)


def forward(q, r, k, v, mode):
    T, D = q.shape
    s = (q @ k.T) / math.sqrt(D)
    s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    m = s.max(-1, keepdim=True).values
    W = torch.exp(s - m)
    t = r @ k.T
    tau = t[:, :1] if mode == "shifted" else torch.zeros(T, 1, dtype=t.dtype)
    t = t - tau
    U = W * t
    d1 = W.sum(-1, keepdim=True)
    d2 = (bf16(U) if mode == "d2 from" else U).sum(-1, keepdim=True)
    O1 = bf16(W) @ v
    O2 = bf16(U) @ v
    if mode == "hi+lo":
        O2 = O2 + bf16(U - bf16(U)) @ v
    vbar, tbar = O1 / d1, d2 / d1
    return vbar * (1 + tbar) - O2 / d1, (tbar + tau).squeeze(-1)


def exact(q, r, k, v):
    T, D = q.shape
    s = (q @ k.T) / math.sqrt(D)
    s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    p = torch.softmax(s, -1)
    t = r @ k.T
    tbar = (p * t).sum(-1, keepdim=True)
    return (p * (1 + tbar - t)) @ v, tbar.squeeze(-1)


def main():
    gen = torch.Generator().manual_seed(0)
    print(f"{'D':>4} {'T':>5} {'mode':>8} {'o rel err':>10} {'tbar rel err':>13}  (median of 20 draws)")
    for D in (64, 128):
        for T in (1, 2, 8, 256):
            for mode in ("bf16", "hi+lo", "d2 from", "shifted"):
                eo, et = [], []
                for _ in range(20):
                    q, k, v = (bf16(torch.randn(T, D, generator=gen, dtype=torch.float64)) for _ in range(3))
                    r = bf16(torch.randn(T, D, generator=gen, dtype=torch.float64) / math.sqrt(D))
                    o, tb = forward(q, r, k, v, mode)
                    o_ref, tb_ref = exact(q, r, k, v)
                    eo.append(((o - o_ref).norm() / o_ref.norm()).item())
                    et.append(((tb - tb_ref).norm() / tb_ref.norm()).item())
                eo.sort()
                et.sort()
                print(f"{D:>4} {T:>5} {mode:>8} {eo[10]:>10.2e} {et[10]:>13.2e}")


if __name__ == "__main__":
    main()
