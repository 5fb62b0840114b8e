// Which process of a job this is, read from the variables the launcher sets (one process per GPU):
//   torchrun:          RANK, WORLD_SIZE, LOCAL_RANK          (+ MASTER_ADDR, MASTER_PORT)
//   mpirun (Open MPI): OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK
//   srun (Slurm):      SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, only inside a job step (SLURM_STEP_ID set):
//                      a batch script itself has SLURM_PROCID=0 and SLURM_NTASKS of the whole allocation
// The first convention in that order whose rank variable is set is used (torchrun under srun: torchrun's).
// None set: one process, world size 1. Our own variables:
//   PARALLAX_NCCL=1        the NCCL path even at world size 1 (torchrun at world size 1 takes it anyway);
//                          PARALLAX_NCCL=0 the plain path at world size 1 under torchrun
//   PARALLAX_NCCL_ID_FILE  rank 0 writes the NCCL id to this file on a shared filesystem, the others read it
//                          (instead of TCP); a fresh path per job, it must not exist at the start
//   PARALLAX_RDZV_PORT     the TCP port rank 0 serves the id on (default MASTER_PORT + 1: torchrun's own
//                          store listens on MASTER_PORT)
// Everything is checked here, before any GPU work; an error names the variable.
#pragma once

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

typedef const char* (*EnvLookup)(const char* name);   // getenv, or a table in the tests

struct LaunchInfo {
    std::string launcher;     // "none", "torchrun", "mpirun", "srun"
    int rank, world, local_rank;
    bool use_nccl;            // the distributed path (NCCL loaded at run time)
    std::string master_addr;  // TCP rendezvous: rank 0's address and port (empty / 0 with an id file)
    int rdzv_port;
    std::string id_file;      // file rendezvous, else empty
};

struct LaunchConvention {
    const char* launcher;
    const char* rank_var;
    const char* size_var;
    const char* local_var;
    const char* required_var;   // must also be set for the convention to apply (NULL: none)
};

static const LaunchConvention LAUNCH_CONVENTIONS[] = {
    {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK", NULL},
    {"mpirun", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", NULL},
    {"srun", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_STEP_ID"},
};

// A whole decimal integer in [lo, hi]; false with `err` naming the variable.
static bool env_int(EnvLookup env, const char* name, long lo, long hi, long* out, std::string* err) {
    const char* v = env(name);
    if (!v) { *err = std::string(name) + " is not set"; return false; }
    char* end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end) { *err = std::string(name) + "='" + v + "' is not an integer"; return false; }
    if (x < lo || x > hi) {
        *err = std::string(name) + "=" + v + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
        return false;
    }
    *out = x;
    return true;
}

// rank, world size and local rank of the first convention that applies; false with `err` if it is
// incomplete or inconsistent
static bool launch_ranks(EnvLookup env, LaunchInfo* li, std::string* err) {
    li->launcher = "none";
    li->rank = 0; li->world = 1; li->local_rank = 0;
    for (const LaunchConvention& c : LAUNCH_CONVENTIONS) {
        if (!env(c.rank_var) || (c.required_var && !env(c.required_var))) continue;
        long rank, world, local;
        std::string why;
        if (!env_int(env, c.size_var, 1, 1 << 20, &world, &why) ||
            !env_int(env, c.rank_var, 0, 1 << 20, &rank, &why) ||
            !env_int(env, c.local_var, 0, 1 << 20, &local, &why)) {
            *err = std::string(c.launcher) + " launch: " + why;
            return false;
        }
        if (rank >= world) {
            *err = std::string(c.launcher) + " launch: " + c.rank_var + "=" + std::to_string(rank) + " is not below " +
                   c.size_var + "=" + std::to_string(world);
            return false;
        }
        if (local > rank) {   // a node's processes are numbered among the job's: local rank <= rank
            *err = std::string(c.launcher) + " launch: " + c.local_var + "=" + std::to_string(local) + " is above " +
                   c.rank_var + "=" + std::to_string(rank);
            return false;
        }
        li->launcher = c.launcher;
        li->rank = (int)rank; li->world = (int)world; li->local_rank = (int)local;
        return true;
    }
    return true;
}

// use_nccl from world size, launcher and PARALLAX_NCCL
static bool launch_mode(EnvLookup env, LaunchInfo* li, std::string* err) {
    const char* force = env("PARALLAX_NCCL");
    if (force && strcmp(force, "0") && strcmp(force, "1")) {
        *err = std::string("PARALLAX_NCCL='") + force + "' must be 0 or 1";
        return false;
    }
    if (li->world > 1) {
        if (force && !strcmp(force, "0")) {
            *err = "PARALLAX_NCCL=0 but the " + li->launcher + " launch has " + std::to_string(li->world) +
                   " processes (one GPU each needs NCCL)";
            return false;
        }
        li->use_nccl = true;
    } else {
        li->use_nccl = force ? !strcmp(force, "1") : li->launcher == "torchrun";
    }
    return true;
}

// where the other ranks find the NCCL id: PARALLAX_NCCL_ID_FILE, else MASTER_ADDR and the port
static bool launch_rendezvous(EnvLookup env, LaunchInfo* li, std::string* err) {
    li->master_addr.clear();
    li->rdzv_port = 0;
    li->id_file.clear();
    if (!li->use_nccl || li->world == 1) return true;   // one rank makes its own id
    const char* file = env("PARALLAX_NCCL_ID_FILE");
    if (file) {
        if (!*file) { *err = "PARALLAX_NCCL_ID_FILE is set but empty"; return false; }
        li->id_file = file;
        return true;
    }
    const char* addr = env("MASTER_ADDR");
    if (!addr || !*addr) {
        *err = "a " + std::to_string(li->world) + "-process " + li->launcher +
               " launch needs MASTER_ADDR and MASTER_PORT (rank 0's host and a free port) or PARALLAX_NCCL_ID_FILE";
        return false;
    }
    long port;
    if (env("PARALLAX_RDZV_PORT")) {
        if (!env_int(env, "PARALLAX_RDZV_PORT", 1, 65535, &port, err)) return false;
    } else {
        if (!env("MASTER_PORT")) { *err = "MASTER_ADDR is set but MASTER_PORT is not"; return false; }
        if (!env_int(env, "MASTER_PORT", 1, 65534, &port, err)) return false;
        port += 1;
    }
    li->master_addr = addr;
    li->rdzv_port = (int)port;
    return true;
}

// The whole launch description; false with `err` (the caller prints it and exits 2).
static bool launch_parse(EnvLookup env, LaunchInfo* li, std::string* err) {
    return launch_ranks(env, li, err) && launch_mode(env, li, err) && launch_rendezvous(env, li, err);
}

static const char* launch_getenv(const char* name) { return getenv(name); }

// The GPU of this process: its local rank, or GPU 0 when the launcher gave each process one visible GPU.
static int launch_device(const LaunchInfo& li, int device_count, std::string* err) {
    if (li.local_rank < device_count) return li.local_rank;
    if (device_count == 1) return 0;
    *err = "local rank " + std::to_string(li.local_rank) + " but only " + std::to_string(device_count) +
           " GPUs are visible (one process per GPU)";
    return -1;
}
