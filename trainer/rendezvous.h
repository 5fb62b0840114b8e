// Hands rank 0's NCCL id (NCCL_ID_BYTES opaque bytes) to every other rank, before ncclCommInitRank:
//   TCP:  rank 0 listens on rdzv_port and sends the id to world - 1 connections; the others connect to
//         master_addr:rdzv_port, retrying until rank 0 is up
//   file: rank 0 writes id_file (a temporary name, then rename), the others wait for it to appear
// Every message carries a magic and the world size, so ranks launched with different sizes fail at once.
// Waits end after PARALLAX_RDZV_TIMEOUT seconds (default 300) with an error naming the address or file.
#pragma once

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>

#define RDZV_MAGIC 0x50524458u   // "PRDX"

struct RdzvMessage {
    unsigned magic;
    int world;
    unsigned char id[128];
};

struct RdzvSpec {
    int rank, world;
    std::string master_addr;   // TCP, or
    int port;
    std::string id_file;       // a shared file
    double timeout_s;
};

static double rdzv_now() {
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static double rdzv_timeout() {
    const char* v = getenv("PARALLAX_RDZV_TIMEOUT");
    double t = v ? atof(v) : 300.0;
    return t > 0 ? t : 300.0;
}

static bool write_all(int fd, const void* p, size_t n) {
    const char* c = (const char*)p;
    while (n > 0) {
        ssize_t k = write(fd, c, n);
        if (k <= 0) return false;
        c += k; n -= k;
    }
    return true;
}

static bool read_all(int fd, void* p, size_t n) {
    char* c = (char*)p;
    while (n > 0) {
        ssize_t k = read(fd, c, n);
        if (k <= 0) return false;
        c += k; n -= k;
    }
    return true;
}

// rank 0: accept world - 1 connections, check each peer's world size, send the id
static bool rdzv_serve_tcp(const RdzvSpec& s, const RdzvMessage& msg, std::string* err) {
    std::string where = "rendezvous port " + std::to_string(s.port);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    a.sin_port = htons((unsigned short)s.port);
    if (fd < 0 || bind(fd, (sockaddr*)&a, sizeof(a)) != 0 || listen(fd, 64) != 0) {
        *err = where + ": cannot listen (" + strerror(errno) + "; set PARALLAX_RDZV_PORT to a free port)";
        if (fd >= 0) close(fd);
        return false;
    }
    double deadline = rdzv_now() + s.timeout_s;
    bool ok = true;
    for (int served = 0; served < s.world - 1 && ok;) {
        pollfd p = {fd, POLLIN, 0};
        int left_ms = (int)((deadline - rdzv_now()) * 1000);
        if (left_ms <= 0 || poll(&p, 1, left_ms) <= 0) {
            *err = where + ": " + std::to_string(served) + " of " + std::to_string(s.world - 1) +
                   " ranks connected before the timeout (PARALLAX_RDZV_TIMEOUT)";
            ok = false;
            break;
        }
        int c = accept(fd, NULL, NULL);
        if (c < 0) continue;
        RdzvMessage hello;
        if (!read_all(c, &hello, sizeof(hello)) || hello.magic != RDZV_MAGIC) { close(c); continue; }   // a stray client
        if (hello.world != s.world) {
            *err = where + ": a rank says the world size is " + std::to_string(hello.world) + ", rank 0 has " +
                   std::to_string(s.world) + " (inconsistent launch)";
            ok = false;
        }
        ok = ok && write_all(c, &msg, sizeof(msg));
        close(c);
        served++;
    }
    close(fd);
    return ok;
}

// one connection attempt to rank 0; -1 when not (yet) reachable
static int rdzv_connect(const RdzvSpec& s) {
    addrinfo hints = {}, *res = NULL;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    std::string port = std::to_string(s.port);
    if (getaddrinfo(s.master_addr.c_str(), port.c_str(), &hints, &res) != 0) return -1;
    int fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
    if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) != 0) { close(fd); fd = -1; }
    freeaddrinfo(res);
    return fd;
}

// ranks > 0: connect (retrying), say our world size, receive the id
static bool rdzv_join_tcp(const RdzvSpec& s, RdzvMessage* msg, std::string* err) {
    std::string where = "rendezvous with rank 0 at " + s.master_addr + ":" + std::to_string(s.port);
    double deadline = rdzv_now() + s.timeout_s;
    int fd = -1;
    while ((fd = rdzv_connect(s)) < 0) {
        if (rdzv_now() > deadline) { *err = where + ": no answer before the timeout (PARALLAX_RDZV_TIMEOUT)"; return false; }
        usleep(100000);
    }
    RdzvMessage hello = {};
    hello.magic = RDZV_MAGIC;
    hello.world = s.world;
    bool ok = write_all(fd, &hello, sizeof(hello)) && read_all(fd, msg, sizeof(*msg));
    close(fd);
    if (!ok) { *err = where + ": the connection closed early (rank 0 failed or has another world size)"; return false; }
    return true;
}

static bool rdzv_write_file(const RdzvSpec& s, const RdzvMessage& msg, std::string* err) {
    struct stat st;
    if (stat(s.id_file.c_str(), &st) == 0) {
        *err = "PARALLAX_NCCL_ID_FILE " + s.id_file + " exists already (left by an earlier job? use a fresh path per job)";
        return false;
    }
    std::string tmp = s.id_file + ".tmp" + std::to_string(getpid());
    FILE* f = fopen(tmp.c_str(), "wb");
    bool ok = f && fwrite(&msg, sizeof(msg), 1, f) == 1;
    if (f) ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp.c_str(), s.id_file.c_str()) != 0) {
        *err = "PARALLAX_NCCL_ID_FILE " + s.id_file + ": cannot write (" + strerror(errno) + ")";
        return false;
    }
    return true;
}

static bool rdzv_read_file(const RdzvSpec& s, RdzvMessage* msg, std::string* err) {
    double deadline = rdzv_now() + s.timeout_s;
    for (;;) {
        FILE* f = fopen(s.id_file.c_str(), "rb");
        bool ok = f && fread(msg, sizeof(*msg), 1, f) == 1;
        if (f) fclose(f);
        if (ok) return true;
        if (rdzv_now() > deadline) {
            *err = "PARALLAX_NCCL_ID_FILE " + s.id_file + ": rank 0 did not write it before the timeout (PARALLAX_RDZV_TIMEOUT)";
            return false;
        }
        usleep(100000);
    }
}

// id: rank 0's id on rank 0 (in), the same bytes on every other rank (out).
static bool rendezvous(const RdzvSpec& s, unsigned char id[128], std::string* err) {
    RdzvMessage msg = {};
    msg.magic = RDZV_MAGIC;
    msg.world = s.world;
    if (s.world == 1) return true;
    bool file = !s.id_file.empty();
    if (s.rank == 0) {
        memcpy(msg.id, id, 128);
        return file ? rdzv_write_file(s, msg, err) : rdzv_serve_tcp(s, msg, err);
    }
    if (!(file ? rdzv_read_file(s, &msg, err) : rdzv_join_tcp(s, &msg, err))) return false;
    if (msg.magic != RDZV_MAGIC || msg.world != s.world) {
        *err = (file ? "PARALLAX_NCCL_ID_FILE " + s.id_file : "rank 0") + " has world size " + std::to_string(msg.world) +
               ", this rank " + std::to_string(s.world) + " (inconsistent launch, or a stale file)";
        return false;
    }
    memcpy(id, msg.id, 128);
    return true;
}
