// The data-parallel communicator: NCCL opened (trainer/nccl_api.h), rank 0's id handed round
// (trainer/rendezvous.h), one communicator per process; gradient buckets all-reduced on a stream of their own
// as the backward produces them; small host vectors summed over ranks; owners' parts broadcast.
// Only used when the launch asks for it (LaunchInfo::use_nccl): the single-GPU run never touches NCCL.
#pragma once

#include <string>
#include <vector>
#include "cuda_common.h"
#include "launcher.h"
#include "nccl_api.h"
#include "rendezvous.h"

struct GradRange {
    float* p;
    size_t n;
};

struct Dist {
    LaunchInfo li;
    NcclApi api;
    NcclComm comm;
    cudaStream_t stream;                         // the gradient buckets' all-reduces
    std::vector<std::vector<GradRange>> buckets; // in the order the backward finishes them
    std::vector<cudaEvent_t> ready;              // per bucket: its gradients are final (main stream)
    cudaEvent_t bwd_done, comm_done;             // timed: the backward's end, the last bucket's end
    cudaEvent_t gather_start, gather_done;       // timed: the parameter broadcast after the update
    float* dev_buf;                              // staging for host vectors
    size_t dev_buf_n;
};

// Loads NCCL, exits 2 with what to install when it is missing (before any GPU work).
static void dist_load(Dist* d, const LaunchInfo& li) {
    d->li = li;
    std::string err;
    if (!nccl_load(&d->api, &err)) {
        fprintf(stderr, "train_parallax: a %d-process %s launch needs NCCL: %s\n", li.world, li.launcher.c_str(), err.c_str());
        exit(2);
    }
}

// After cudaSetDevice: the id round and the communicator.
static void dist_connect(Dist* d) {
    NcclId id = {};
    if (d->li.rank == 0) ncclCheck(d->api, GetUniqueId(&id));
    RdzvSpec s = {d->li.rank, d->li.world, d->li.master_addr, d->li.rdzv_port, d->li.id_file, rdzv_timeout()};
    std::string err;
    if (!rendezvous(s, (unsigned char*)id.internal, &err)) {
        fprintf(stderr, "train_parallax: rank %d: %s\n", d->li.rank, err.c_str());
        exit(1);
    }
    ncclCheck(d->api, CommInitRank(&d->comm, d->li.world, id, d->li.rank));
    cudaCheck(cudaStreamCreateWithFlags(&d->stream, cudaStreamNonBlocking));   // no implicit sync with stream 0
    cudaCheck(cudaEventCreate(&d->bwd_done));
    cudaCheck(cudaEventCreate(&d->comm_done));
    cudaCheck(cudaEventCreate(&d->gather_start));
    cudaCheck(cudaEventCreate(&d->gather_done));
    d->dev_buf = NULL;
    d->dev_buf_n = 0;
}

static void dist_set_buckets(Dist* d, const std::vector<std::vector<GradRange>>& buckets) {
    d->buckets = buckets;
    d->ready.resize(buckets.size());
    for (cudaEvent_t& e : d->ready) cudaCheck(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
}

// Bucket b's gradients are final on `main`: the comm stream waits for them and sums them over the ranks in
// place. The last bucket also marks the backward's end and the communication's.
static void dist_bucket_ready(Dist* d, int b, cudaStream_t main) {
    bool last = b == (int)d->buckets.size() - 1;
    if (last) cudaCheck(cudaEventRecord(d->bwd_done, main));
    cudaCheck(cudaEventRecord(d->ready[b], main));
    cudaCheck(cudaStreamWaitEvent(d->stream, d->ready[b], 0));
    ncclCheck(d->api, GroupStart());
    for (const GradRange& r : d->buckets[b])
        ncclCheck(d->api, AllReduce(r.p, r.p, r.n, NCCL_FLOAT32, NCCL_SUM, d->comm, d->stream));
    ncclCheck(d->api, GroupEnd());
    if (last) cudaCheck(cudaEventRecord(d->comm_done, d->stream));
}

// main waits for every bucket (call after the step's last backward)
static void dist_grads_wait(Dist* d, cudaStream_t main) { cudaCheck(cudaStreamWaitEvent(main, d->comm_done, 0)); }

// v summed over the ranks, in place (each rank fills its entries, zeros elsewhere: the sum is then exact)
static void dist_sum_host(Dist* d, std::vector<float>& v) {
    if (v.size() > d->dev_buf_n) {
        if (d->dev_buf) cudaCheck(cudaFree(d->dev_buf));
        cudaCheck(cudaMalloc(&d->dev_buf, v.size() * sizeof(float)));
        d->dev_buf_n = v.size();
    }
    cudaCheck(cudaMemcpy(d->dev_buf, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice));
    ncclCheck(d->api, AllReduce(d->dev_buf, d->dev_buf, v.size(), NCCL_FLOAT32, NCCL_SUM, d->comm, 0));
    cudaCheck(cudaMemcpy(v.data(), d->dev_buf, v.size() * sizeof(float), cudaMemcpyDeviceToHost));
}

// one owner's part: root sends from `send`, every rank (root too) receives into `recv`
struct BcastPart {
    const float* send;
    float* recv;
    size_t n;
    int root;
};

static void dist_broadcast(Dist* d, const std::vector<BcastPart>& parts, cudaStream_t stream) {
    ncclCheck(d->api, GroupStart());
    for (const BcastPart& p : parts)
        if (p.n) ncclCheck(d->api, Broadcast(p.send, p.recv, p.n, NCCL_FLOAT32, p.root, d->comm, stream));
    ncclCheck(d->api, GroupEnd());
}

// ms of the step's communication the backward did not hide: the buckets after the backward's end, and the
// parameter broadcast. Call after the step's events completed.
static float dist_exposed_ms(Dist* d) {
    float tail = 0.0f, gather = 0.0f;
    cudaCheck(cudaEventElapsedTime(&tail, d->bwd_done, d->comm_done));
    cudaCheck(cudaEventElapsedTime(&gather, d->gather_start, d->gather_done));
    return (tail > 0.0f ? tail : 0.0f) + gather;
}

static void dist_close(Dist* d) {
    cudaCheck(cudaStreamSynchronize(d->stream));
    d->api.CommDestroy(d->comm);
}
