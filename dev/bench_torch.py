"""bench_torch: the PyTorch side of `make bench` (issue 21), in tables that read beside dev/bench_parallax's.
Not a test: it checks nothing, it times.
  make bench-torch                                     (every section; BENCH_TORCH_FLAGS=... passes flags)
  python3 dev/bench_torch.py --sections attention --quick
  python3 dev/bench_torch.py --device cpu --smoke      (tiny shapes, float32, eager: the code paths on a CPU)
1. attention: at 16x1024x12x64, 4x4096x12x64 and 8x2048x8x128 (B x T x H x D), bf16, causal: softmax
   through SDPA with the cuDNN backend, the flash backend and PyTorch's own pick, and Parallax materialized
   (parallax_attention.attention_plain) eager and under torch.compile. Median of 20 timed runs after 3
   warm-ups (and at least WARMUP_S seconds of them), CUDA events, L2 flushed before each run; model FLOPs of spec section 1 (attention_flops).
2. model: d12 of spec section 2 (model_ref.forward), T = 1024, micro-batch 32, bf16 autocast, torch.compile:
   softmax through SDPA and Parallax materialized; forward + backward of one micro-batch and a fused AdamW
   step, tokens/s and MFU for a 2^19-token step as bench_parallax counts them (the trainer's model FLOPs per
   token, the peak from trainer/gpu_arch.h's table). A micro-batch that runs out of memory is halved.
A backend or compile that is unavailable or fails prints a row saying so, never a number.
Runs on torch 2.x with a GPU; on torch 1.13 (Debian's CPU build) only with --device cpu --smoke.
"""
import argparse
import contextlib
import gc
import os
import re
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from model_ref import Config, forward, init_params, param_table, rope_tables  # noqa: E402
from parallax_attention import attention_flops, attention_plain  # noqa: E402

GPU_ARCH_H = os.path.join(HERE, "..", "trainer", "gpu_arch.h")
ATTENTION_SHAPES = [(16, 1024, 12, 64), (4, 4096, 12, 64), (8, 2048, 8, 128)]
SMOKE_ATTENTION_SHAPES = [(2, 64, 2, 16), (1, 33, 3, 8)]   # T = 33: a ragged last tile for the mask
# (variant, implementation): the rows of each shape, in order
ATTENTION_IMPLS = [("softmax", "SDPA, cuDNN backend"), ("softmax", "SDPA, flash backend"),
                   ("softmax", "SDPA, PyTorch's pick"), ("parallax", "plain (materialized), eager"),
                   ("parallax", "plain (materialized), torch.compile")]
MODEL_T, SMOKE_T, SMOKE_MICRO_BATCH = 1024, 32, 2
SMOKE_MODEL = dict(depth=2, width=64, head_dim=16, vocab=500)
STEP_TOKENS = 2 ** 19   # bench_parallax's step: 16 micro-batches of 32 x 1024
WARMUP_S = 0.3          # the least time of warm-up runs on the GPU (Bench.time_median)
WARMUP_NOTE = f" (and at least {WARMUP_S:g} s of them)"


class Bench:
    """What the flags decided: device, dtype, repeats, and whether torch.compile and SDPA backend forcing
    are on (both off on the CPU). Times with CUDA events after an L2 flush, or the wall clock on the CPU."""

    def __init__(self, args):
        self.device, self.smoke = args.device, args.smoke
        self.cuda = args.device == "cuda"
        self.dtype = torch.bfloat16 if self.cuda else torch.float32
        self.compile = self.cuda and hasattr(torch, "compile")
        self.force_backends = self.cuda
        # one compiled attention for every shape (compiled at its first call); dynamic=False: each shape gets
        # kernels specialized to it
        self.plain_compiled = torch.compile(attention_plain, dynamic=False) if self.compile else None
        if args.smoke:
            self.attn_reps, self.model_reps = (1, 1), (1, 1)
        elif args.quick:
            self.attn_reps, self.model_reps = (2, 5), (2, 3)
        else:
            self.attn_reps, self.model_reps = (3, 20), (2, 7)   # (warm-ups, timed runs), as bench_parallax
        self.flush_buf = None
        if self.cuda:
            # twice the L2 (H100: 50 MiB), written before every timed run so that no run finds its inputs there
            l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 << 20)
            self.flush_buf = torch.empty(2 * l2 // 4, dtype=torch.float32, device="cuda")

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def time_median(self, fn, warmup, reps):
        """Median milliseconds of `reps` runs of fn after `warmup` untimed ones, and on the GPU after at least
        WARMUP_S seconds of them: a row that follows seconds of CPU work (a torch.compile) must not be timed
        while the GPU's clocks are still coming up."""
        t0 = time.perf_counter()
        n = 0
        while n < warmup or (self.cuda and time.perf_counter() - t0 < WARMUP_S):
            fn()
            n += 1
            if self.cuda and n >= warmup:
                self.sync()   # the wall clock then measures GPU time, not queued launches
        self.sync()
        ms = []
        for _ in range(reps):
            if self.cuda:
                self.flush_buf.zero_()
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                ms.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                fn()
                ms.append((time.perf_counter() - t0) * 1e3)
        return sorted(ms)[len(ms) // 2]

    def autocast(self):
        """bf16 autocast on the GPU (fp32 master weights, bf16 GEMMs); float32 throughout on the CPU."""
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16) if self.cuda else contextlib.nullcontext()

    def free(self):
        """Between sections and model rows, and after a failure: drop compiled graphs (their guards keep the
        last row's tensors alive) and cached blocks, so that the next row starts clean and its peak memory is
        its own."""
        gc.collect()
        if hasattr(torch, "_dynamo"):
            torch._dynamo.reset()
        if self.cuda:
            torch.cuda.empty_cache()


def reason(e):
    """An exception as one short table cell: its first line, no '|'."""
    lines = str(e).strip().splitlines() or [type(e).__name__]
    return f"{type(e).__name__}: {lines[0]}".replace("|", "/")[:160]


def is_oom(e):
    return "out of memory" in str(e).lower()


# ----------------------------------------------------------------------------------------------------------
# the GPU's peak, from the trainer's table

def gpu_peaks():
    """(needs, avoid, tflops) of every row of GPU_PEAKS in trainer/gpu_arch.h: the one table the trainer's and
    bench_parallax's MFU use, read rather than copied so the two cannot drift apart."""
    text = open(GPU_ARCH_H, encoding="utf-8").read()
    body = text[text.index("GPU_PEAKS[] = {"):]
    body = body[:body.index("};")]
    rows = []
    for needs, avoid, tflops in re.findall(r'\{"[^"]*", \{([^}]*)\}, \{([^}]*)\}, ([\d.]+)\}', body):
        rows.append((re.findall(r'"([^"]*)"', needs), re.findall(r'"([^"]*)"', avoid), float(tflops)))
    return rows


def gpu_peak_tflops(name):
    """Dense bf16 TFLOP/s of the GPU called `name`, matched as gpu_peak_bf16 does (every `needs` part in
    the name, no `avoid` part, case-insensitive, first row wins); None when it is not in the table."""
    low = name.lower()
    for needs, avoid, tflops in gpu_peaks():
        if all(p.lower() in low for p in needs) and not any(p.lower() in low for p in avoid):
            return tflops
    return None


# ----------------------------------------------------------------------------------------------------------
# 1. attention alone

def sdpa_fn(backend):
    """Softmax attention through SDPA, with one backend forced (None: PyTorch picks). A forced backend that
    cannot run raises instead of falling back, so its row says why."""
    def fn(q, r, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if backend is None:
        return fn
    from torch.nn.attention import sdpa_kernel   # torch 2.3 on; attention_impl checks it is there

    def forced(q, r, k, v):
        with sdpa_kernel(backend):
            return fn(q, r, k, v)
    return forced


def attention_impl(impl, bench):
    """The function (q, r, k, v) -> o of a row, or the reason it cannot run."""
    if impl.startswith("SDPA"):
        if not hasattr(F, "scaled_dot_product_attention"):
            return None, f"unavailable: torch {torch.__version__} has no scaled_dot_product_attention"
        if impl == "SDPA, PyTorch's pick":
            return sdpa_fn(None), None
        if not bench.force_backends:
            return None, f"skipped: no backend forcing on --device {bench.device}"
        try:
            from torch.nn.attention import SDPBackend
        except ImportError:
            return None, f"unavailable: torch {torch.__version__} has no torch.nn.attention.sdpa_kernel"
        return sdpa_fn(SDPBackend.CUDNN_ATTENTION if "cuDNN" in impl else SDPBackend.FLASH_ATTENTION), None
    if impl.endswith("eager"):
        return attention_plain, None
    if not hasattr(torch, "compile"):
        return None, f"unavailable: torch {torch.__version__} has no torch.compile"
    if not bench.compile:
        return None, f"skipped: no torch.compile on --device {bench.device}"
    return bench.plain_compiled, None


ATTENTION_KERNEL_WORDS = ("cudnn", "flash", "fmha", "attention", "attn", "sdpa", "efficient")


def attention_kernels(fn):
    """The CUDA kernels one call of fn launches whose names look like attention's (torch.profiler), sorted:
    which backend SDPA's own pick ran. An empty list when the profiler cannot say."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return attention_kernel_names(e.key for e in prof.key_averages())


def attention_kernel_names(names):
    """Of the profiler's event names, the ones that look like attention kernels, unique, cut to 80
    characters, sorted."""
    return sorted({n[:80] for n in names if any(w in n.lower() for w in ATTENTION_KERNEL_WORDS)})


def bench_attention_row(variant, impl, shape, bench, notes):
    """One table row: forward and forward + backward of the implementation at (B, T, H, D). For SDPA's own
    pick on the GPU, a line naming the kernels it ran goes into `notes`."""
    B, T, H, D = shape
    cells = f"| {variant} | {impl} | {B}x{T}x{H}x{D} |"
    fn, why = attention_impl(impl, bench)
    if fn is None:
        return f"{cells} {why} | - | - | - |"
    try:
        torch.manual_seed(1)
        q, r, k, v, dO = (torch.randn(B, H, T, D, device=bench.device, dtype=bench.dtype) for _ in range(5))
        if variant == "softmax":
            r = None
        inputs = [x.requires_grad_() for x in (q, r, k, v) if x is not None]

        def fwd():   # the training forward (inputs need gradients), its output dropped
            fn(q, r, k, v)

        def fwdbwd():
            torch.autograd.grad(fn(q, r, k, v), inputs, dO)

        warmup, reps = bench.attn_reps
        ms_f = bench.time_median(fwd, warmup, reps)
        ms_fb = bench.time_median(fwdbwd, warmup, reps)
        if impl == "SDPA, PyTorch's pick" and bench.cuda:
            try:
                ran = "; ".join(attention_kernels(fwdbwd)) or "no kernel named like attention's"
            except Exception as e:   # the profiler is a report, not part of the timing: a failure is noted
                ran = f"the profiler failed: {reason(e)}"
            notes.append(f"{impl} at {B}x{T}x{H}x{D} ran: {ran}")
        failed = None
    except Exception as e:   # a backend that refuses this shape, or a compile that fails: the row says so
        failed = reason(e)
    if failed:
        bench.free()
        return f"{cells} failed: {failed} | - | - | - |"
    fl_f = attention_flops(B, H, T, D, variant, False)
    fl_fb = attention_flops(B, H, T, D, variant, True)
    return f"{cells} {ms_f:.3f} | {fl_f / ms_f / 1e9:.1f} | {ms_fb:.3f} | {fl_fb / ms_fb / 1e9:.1f} |"


def bench_attention(bench):
    print("| attention | implementation | B x T x H x D | fwd ms | fwd TFLOP/s | fwd+bwd ms | fwd+bwd TFLOP/s |\n"
          "|---|---|---|---|---|---|---|", flush=True)
    notes = []
    for shape in SMOKE_ATTENTION_SHAPES if bench.smoke else ATTENTION_SHAPES:
        for variant, impl in ATTENTION_IMPLS:
            print(bench_attention_row(variant, impl, shape, bench, notes), flush=True)
    if notes:
        print("\n" + "\n".join(notes), flush=True)


# ----------------------------------------------------------------------------------------------------------
# 2. the model

def flops_per_token(cfg, T):
    """The trainer's model FLOPs per token (train_parallax.cu, flops_per_token): 6 x the matrix parameters
    (the stacked per-layer matrices and the head; not the embedding, not the gains) plus the causal
    attention of spec section 1 per token, every layer."""
    shapes = dict(param_table(cfg))
    mat = sum(torch.Size(s).numel() for s in shapes.values() if len(s) == 3) + torch.Size(shapes["lm_head_w"]).numel()
    return 6 * mat + cfg.depth * attention_flops(1, cfg.n_head, T, cfg.head_dim, cfg.variant, True) / T


def per_layer_leaves(params, device):
    """model_ref stacks the layers in one tensor per kind; here each layer gets its own leaf, as an
    nn.Module would, so that autograd does not scatter each layer's gradient into the whole stack.
    model_ref.forward indexes params[name][l] and takes either."""
    out = {}
    for name, w in params.items():
        if name in ("wte", "lm_head_w"):
            out[name] = w.to(device).requires_grad_()
        else:
            out[name] = [x.to(device).clone().requires_grad_() for x in w.unbind(0)]
    return out


def model_attention(variant, use_sdpa):
    """The attention model_ref.forward calls: q, k, r cast to v's dtype first (under autocast the head norms
    leave them fp32 and v is bf16), as the trainer's kernels take them."""
    def attn(q, r, k, v):
        q, k = q.to(v.dtype), k.to(v.dtype)
        if variant == "softmax" and use_sdpa:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return attention_plain(q, None if r is None else r.to(v.dtype), k, v)
    return attn


def time_model(cfg, B, T, compiled, bench):
    """Forward + backward of one micro-batch and one AdamW step on random tokens. Returns (ms per micro-batch,
    ms per update, seconds of the first micro-batch: the compile, peak GiB allocated)."""
    if bench.cuda:
        torch.cuda.reset_peak_memory_stats()
    # the random init of the zero-initialized matrices too: tensor cores on zeros draw less power and clock
    # higher than in training (bench_parallax does the same)
    params = per_layer_leaves(init_params(cfg, 1337, zero_init_too=True), bench.device)
    leaves = [t for v in params.values() for t in (v if isinstance(v, list) else [v])]
    rope_cs = rope_tables(T, cfg.head_dim, torch.float32, bench.device)
    attn = model_attention(cfg.variant, hasattr(F, "scaled_dot_product_attention"))

    def loss_fn(idx, targets):
        return forward(cfg, params, idx, targets, attention=attn, rope_cs=rope_cs)[1]

    step_loss = torch.compile(loss_fn, dynamic=False) if compiled else loss_fn
    gen = torch.Generator().manual_seed(12345)
    idx = torch.randint(cfg.vocab, (B, T), generator=gen).to(bench.device)
    targets = torch.randint(cfg.vocab, (B, T), generator=gen).to(bench.device)

    def micro():
        with bench.autocast():
            loss = step_loss(idx, targets)
        loss.backward()

    opt = torch.optim.AdamW(leaves, lr=1e-3, weight_decay=0.1, **({"fused": True} if bench.cuda else {}))
    t0 = time.perf_counter()
    micro()
    bench.sync()
    first_s = time.perf_counter() - t0
    warmup, reps = bench.model_reps
    ms_micro = bench.time_median(micro, warmup - 1, reps)
    ms_update = bench.time_median(opt.step, warmup, reps)
    peak_gib = torch.cuda.max_memory_allocated() / 2 ** 30 if bench.cuda else 0.0
    return ms_micro, ms_update, first_s, peak_gib


def bench_model_row(variant, bench, micro_batch, notes):
    """One table row of the model; halves the micro-batch on out-of-memory and falls back to eager when
    torch.compile fails, each with a note."""
    T = SMOKE_T if bench.smoke else MODEL_T
    cfg = Config(variant=variant, max_seq_len=T, **(SMOKE_MODEL if bench.smoke else {}))
    sdpa = variant == "softmax" and hasattr(F, "scaled_dot_product_attention")
    name = "SDPA (is_causal)" if sdpa else "plain (materialized)"
    if variant == "softmax" and not sdpa:
        name += f" (torch {torch.__version__}: no SDPA)"
    B, compiled = micro_batch, bench.compile
    while True:
        impl = f"{name}, {'torch.compile' if compiled else 'eager'}"
        try:
            ms_micro, ms_update, first_s, peak_gib = time_model(cfg, B, T, compiled, bench)
            break
        except Exception as e:
            why, oom = reason(e), is_oom(e)
        bench.free()   # outside the except block: the exception's frames, and the memory they hold, are gone
        if oom and B > 1:
            notes.append(f"{variant}: micro-batch {B} ran out of GPU memory; trying {B // 2}")
            B //= 2
        elif compiled and not oom:
            notes.append(f"{variant}: torch.compile failed ({why}); measured eager")
            compiled = False
        else:
            return f"| {variant} | {impl} | {B} | failed: {why} | - | - | - | - |"
    accum = max(1, STEP_TOKENS // (B * T))
    step_ms = accum * ms_micro + ms_update
    tps = accum * B * T / (step_ms / 1e3)
    peak = gpu_peak_tflops(torch.cuda.get_device_name(0)) if bench.cuda else None
    mfu = f"{100 * flops_per_token(cfg, T) * tps / (peak * 1e12):.1f}%" if peak else "unknown"
    memory = f"{peak_gib:.1f} GiB" if bench.cuda else "-"
    notes.append(f"{variant}: first micro-batch {first_s:.1f} s ({'compile included' if compiled else 'eager'}); "
                 f"step = {accum} micro-batches of {B} x {T} + the update")
    return f"| {variant} | {impl} | {B} | {ms_micro:.1f} | {ms_update:.1f} | {tps:.0f} | {mfu} | {memory} |"


def bench_model(bench, micro_batch):
    T = SMOKE_T if bench.smoke else MODEL_T
    what = "smoke model (depth {depth}, C = {width}, D = {head_dim}, vocab {vocab})".format(**SMOKE_MODEL) \
        if bench.smoke else "d12"
    warmup, reps = bench.model_reps
    print(f"\n{what}, T = {T}, micro-batch {micro_batch}, step = 2^19 tokens (random tokens), "
          f"{'bf16 autocast, fp32 master weights' if bench.cuda else 'float32'}; update: torch.optim.AdamW"
          f"{' (fused)' if bench.cuda else ''} over every parameter; SDPA's backend is PyTorch's pick; median of "
          f"{reps} after {warmup} warm-ups{WARMUP_NOTE if bench.cuda else ''} (the first compiles)\n", flush=True)
    print("| attention | implementation | micro-batch | fwd+bwd ms / micro-batch | AdamW ms | tokens/s | MFU "
          "| peak memory |\n|---|---|---|---|---|---|---|---|", flush=True)
    notes = []
    for variant in ("parallax", "softmax"):
        print(bench_model_row(variant, bench, micro_batch, notes), flush=True)
        bench.free()
    print("\n" + "\n".join(notes), flush=True)


# ----------------------------------------------------------------------------------------------------------

def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sections", default="attention,model", help="comma-separated: attention, model")
    ap.add_argument("--quick", action="store_true", help="fewer repeats (attention 5 after 2, model 3 after 2)")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--smoke", action="store_true", help="tiny shapes, one repeat: the code paths, no numbers")
    ap.add_argument("--micro-batch", type=int, help=f"the model's micro-batch (default 32; --smoke {SMOKE_MICRO_BATCH})")
    args = ap.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in args.sections if s not in ("attention", "model")]
    if bad or not args.sections:
        ap.error(f"--sections: {'unknown section ' + repr(bad[0]) if bad else 'none given'} (expected attention, model)")
    if args.micro_batch is None:
        args.micro_batch = SMOKE_MICRO_BATCH if args.smoke else 32
    if args.micro_batch < 1:
        ap.error(f"--micro-batch must be at least 1, got {args.micro_batch}")
    if args.device == "cpu" and not args.smoke:
        ap.error("--device cpu runs only with --smoke (the real shapes would take hours on a CPU)")
    return args


def main(argv):
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_torch: skipped: no GPU (--device cpu --smoke runs the code paths on the CPU)")
        return 0
    t0 = time.time()
    bench = Bench(args)
    if bench.cuda:
        try:
            import triton
            triton_version = f", Triton {triton.__version__}"
        except ImportError:
            triton_version = ", no Triton"
        where = (f"{torch.cuda.get_device_name(0)}, torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN "
                 f"{torch.backends.cudnn.version()}{triton_version})")
    else:
        where = f"cpu, torch {torch.__version__}"
    warmup, reps = bench.attn_reps
    print(f"bench_torch on {where}{', smoke: tiny shapes' if args.smoke else ''}\n"
          f"{str(bench.dtype).replace('torch.', '')}, causal; median of {reps} timed runs after {warmup} warm-ups"
          f"{WARMUP_NOTE if bench.cuda else ''}, {'CUDA events, L2 flushed before each' if bench.cuda else 'wall clock'}\n", flush=True)
    if "attention" in args.sections:
        bench_attention(bench)
        bench.free()
    if "model" in args.sections:
        bench_model(bench, args.micro_batch)
    print(f"\nbench_torch: done in {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
