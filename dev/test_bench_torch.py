"""CPU tests of dev/bench_torch.py (the PyTorch side of make bench): its smoke run on the CPU prints both
tables with a row for every shape and implementation, each row numbers that parse or the reason it has
none; --sections picks the tables; bad flags exit 2 naming the flag; the GPU peak read from
trainer/gpu_arch.h and the model FLOPs per token are the trainer's.
  python3 dev/test_bench_torch.py
"""
import os
import subprocess
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_torch as bt  # noqa: E402
from checks import Checks, table_cells  # noqa: E402
from model_ref import Config, forward, init_params, rope_tables  # noqa: E402

CHECKS = Checks("bench-torch")
check = CHECKS.check
EXE = [sys.executable, os.path.join(HERE, "bench_torch.py")]
REASONS = ("unavailable: ", "skipped: ")   # "failed: " is a bug on the CPU


def run(*flags):
    return subprocess.run(EXE + list(flags), capture_output=True, text=True)


def table(text, header_start):
    """The rows (lists of cells) of the markdown table whose header starts with header_start."""
    lines = text.splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith(header_start)), None)
    if start is None:
        return None
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(table_cells(line))
    return rows


def numbers(cells):
    """The cells as non-negative floats (a trailing % dropped), or None if one does not parse."""
    try:
        values = [float(c.rstrip("%")) for c in cells]
    except ValueError:
        return None
    return values if all(v >= 0 for v in values) else None


def check_attention_rows(rows):
    shapes = [f"{B}x{T}x{H}x{D}" for B, T, H, D in bt.SMOKE_ATTENTION_SHAPES]
    want = [(v, impl, s) for s in shapes for v, impl in bt.ATTENTION_IMPLS]
    got = [tuple(r[:3]) for r in rows]
    check("attention table: a row per smoke shape and implementation, in order", got == want and len(want) >= 10,
          f"{len(got)} rows, want {len(want)}")
    sdpa = hasattr(F, "scaled_dot_product_attention")
    bad = []
    for r in rows:
        timed = r[1] == "plain (materialized), eager" or (r[1] == "SDPA, PyTorch's pick" and sdpa)
        if timed:
            ok = len(r) == 7 and numbers(r[3:]) is not None and float(r[3]) > 0 and float(r[5]) > 0
        else:   # on the CPU: no backend forcing, no torch.compile; torch 1.13: no SDPA
            ok = len(r) == 7 and r[3].startswith(REASONS) and r[4:] == ["-", "-", "-"]
        if not ok:
            bad.append(" | ".join(r))
    check("attention rows: numbers that parse where the CPU can run it, else the reason", not bad,
          f"wrong: {bad}" if bad else f"{len(rows)} rows")


def check_model_rows(rows):
    variants = [r[0] for r in rows]
    check("model table: a parallax and a softmax row", variants == ["parallax", "softmax"], str(variants))
    bad = [" | ".join(r) for r in rows if len(r) != 8 or r[2] != str(bt.SMOKE_MICRO_BATCH) or
           numbers(r[3:6]) is None or float(r[3]) <= 0 or float(r[5]) <= 0 or r[6] != "unknown"]
    check("model rows: micro-batch, ms, AdamW ms and tokens/s parse; MFU unknown on the CPU", rows and not bad,
          f"wrong: {bad}" if bad else " ; ".join(" | ".join(r) for r in rows))


def check_same_model():
    """The bench's model is model_ref's: per-layer leaves, the bench's attention (SDPA where torch has it)
    and rope tables made beforehand give model_ref.forward's loss."""
    gen = torch.Generator().manual_seed(5)
    for variant in ("parallax", "softmax"):
        cfg = Config(variant=variant, **bt.SMOKE_MODEL)
        params = init_params(cfg, 3, zero_init_too=True)
        idx, targets = (torch.randint(cfg.vocab, (2, 16), generator=gen) for _ in range(2))
        _, want = forward(cfg, params, idx, targets)
        attn = bt.model_attention(variant, hasattr(F, "scaled_dot_product_attention"))
        rope_cs = rope_tables(16, cfg.head_dim, torch.float32, "cpu")
        _, got = forward(cfg, bt.per_layer_leaves(params, "cpu"), idx, targets, attention=attn, rope_cs=rope_cs)
        check(f"{variant}: the bench's model gives model_ref's loss", abs(got.item() - want.item()) < 1e-5,
              f"{got.item():.6f} vs {want.item():.6f} (fixed seeds: tokens 5, init 3)")


def check_fallbacks():
    """The GPU-only branches of a model row, with time_model made to fail as the GPU would: out of memory
    above micro-batch 2 (halved until it fits), and torch.compile failing (measured eager)."""
    real = bt.time_model
    bench = bt.Bench(bt.parse_args(["--device", "cpu", "--smoke"]))

    def oom_above_2(cfg, B, T, compiled, bench):
        if B > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 12.00 GiB")
        return real(cfg, B, T, compiled, bench)

    def compile_fails(cfg, B, T, compiled, bench):
        if compiled:
            raise RuntimeError("BackendCompilerFailed: inductor raised\nmore lines")
        return real(cfg, B, T, compiled, bench)

    try:
        bt.time_model = oom_above_2
        notes = []
        row = bt.bench_model_row("parallax", bench, 8, notes)
        check("out of memory halves the micro-batch until it fits, with a note each time",
              row.split("|")[3].strip() == "2" and notes[:2] == [
                  "parallax: micro-batch 8 ran out of GPU memory; trying 4",
                  "parallax: micro-batch 4 ran out of GPU memory; trying 2"], f"{row} ; {notes}")
        bt.time_model = compile_fails
        bench.compile, notes = True, []
        row = bt.bench_model_row("parallax", bench, 2, notes)
        check("a failed torch.compile is measured eager, with a note naming the error",
              "eager" in row.split("|")[2] and notes and "torch.compile failed (RuntimeError: BackendCompilerFailed"
              in notes[0] and "more lines" not in notes[0], f"{row} ; {notes[:1]}")
    finally:
        bt.time_model = real


def main():
    p = run("--device", "cpu", "--smoke")
    check("the CPU smoke run exits 0", p.returncode == 0, f"exit {p.returncode} {p.stderr.strip()[-300:]}")
    first = p.stdout.splitlines()[0] if p.stdout else ""
    check("its first line names the device and the torch version",
          first.startswith("bench_torch on cpu") and f"torch {torch.__version__}" in first, first)
    attn = table(p.stdout, "| attention | implementation | B x T x H x D |")
    model = table(p.stdout, "| attention | implementation | micro-batch |")
    check_attention_rows(attn or [])
    check_model_rows(model or [])

    p = run("--device", "cpu", "--smoke", "--sections", "model")
    check("--sections model prints the model table alone", p.returncode == 0 and
          table(p.stdout, "| attention | implementation | B x T x H x D |") is None and
          len(table(p.stdout, "| attention | implementation | micro-batch |") or []) == 2, f"exit {p.returncode}")

    for flags, named in ((["--bogus"], "--bogus"), (["--sections", "attention,foo"], "--sections"),
                         (["--device", "cpu"], "--smoke"), (["--micro-batch", "0", "--smoke"], "--micro-batch"),
                         (["--device", "tpu"], "--device")):
        p = run(*flags)
        err = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
        check(f"{' '.join(flags)} exits 2 naming {named}", p.returncode == 2 and named in err,
              f"exit {p.returncode}: {err}")

    check_same_model()
    check_fallbacks()

    # the peak of the trainer's table (trainer/gpu_arch.h), matched as the trainer matches it
    peaks = {name: bt.gpu_peak_tflops(name) for name in
             ("NVIDIA H100 80GB HBM3", "NVIDIA H200", "NVIDIA H100 PCIe", "NVIDIA H100 NVL", "Tesla T4")}
    want = {"NVIDIA H100 80GB HBM3": 989.4, "NVIDIA H200": 989.4, "NVIDIA H100 PCIe": 756.0,
            "NVIDIA H100 NVL": None, "Tesla T4": None}
    check("the GPU peak is trainer/gpu_arch.h's (H100 SXM and H200 989.4, unknown GPUs none)",
          peaks == want and len(bt.gpu_peaks()) >= 8, f"{len(bt.gpu_peaks())} rows read; {peaks}")

    # which kernels SDPA's pick ran: the profiler's names filtered (the profiling itself needs a GPU)
    events = ["cudnn_generated_fort_native_sdpa_sm90_flash_fprop", "void at::native::vectorized_elementwise",
              "flash_bwd_kernel", "cudnn_generated_fort_native_sdpa_sm90_flash_fprop", "ampere_bf16_gemm",
              "x" * 90 + "attention"]
    kept = bt.attention_kernel_names(events)
    check("the attention kernels are picked out of the profiler's names, unique, cut to 80 characters",
          kept == ["cudnn_generated_fort_native_sdpa_sm90_flash_fprop", "flash_bwd_kernel", "x" * 80], f"{kept}")

    # d12 Parallax at T = 1024, by hand: 12 layers of (4 + 1 + 4 + 4) C^2 matrix weights, the head, and
    # 12 u per token (u / BT = L H T D)
    mat = 12 * 13 * 768 * 768 + 50304 * 768
    fpt = bt.flops_per_token(Config(variant="parallax"), 1024)
    check("model FLOPs per token are the trainer's formula (d12 Parallax, T = 1024)",
          fpt == 6 * mat + 12 * 12 * 12 * 1024 * 64, f"{fpt:.6g}")
    CHECKS.exit()


if __name__ == "__main__":
    main()
