// A CUDA block on the host: one OS thread per CUDA thread, barriers and warp shuffles emulated, and
// every read and write of a block-shared array (FC_SHARED in kernels/blocks.cuh) recorded with the
// barrier phase it happened in. Two threads touching one shared element in one phase, at least one
// of them writing, is a race; a barrier that not every thread of the block (or a shuffle that not
// every lane of the warp) reaches is a divergence. Blocks run one after another on the same team of
// threads, in block order. Included before the kernel headers, with FC_BLOCK_EMULATOR defined.
#ifndef FCGPU_BLOCK_EMULATOR_H
#define FCGPU_BLOCK_EMULATOR_H

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

struct fc_dim3 {
    unsigned int x, y, z;
};

namespace fc_emu {

struct Failure {};  // thrown in a thread to leave the kernel once the run has failed

inline std::string& error() {
    static std::string e;
    return e;
}
inline std::mutex& error_mutex() {
    static std::mutex m;
    return m;
}
inline std::atomic<bool>& failed() {
    static std::atomic<bool> f(false);
    return f;
}
inline void fail(const std::string& why) {
    std::lock_guard<std::mutex> lock(error_mutex());
    if (!failed().exchange(true)) {
        error() = why;
    }
    throw Failure();
}

inline thread_local fc_dim3 tid = {0, 0, 0};
inline thread_local fc_dim3 bid = {0, 0, 0};
inline fc_dim3 bdim = {1, 1, 1};
inline fc_dim3 gdim = {1, 1, 1};
inline long long phase = 0;         // barrier phases completed in the current block
inline long long barriers = 0;      // __syncthreads completed, all blocks
inline long long shuffles = 0;      // warp shuffles completed, all blocks

// A reusable barrier for n threads; the last to arrive runs `done` before releasing the others.
// Waiting longer than the timeout means some thread never arrives: a divergence.
struct Barrier {
    int n = 0, count = 0;
    long long generation = 0;
    std::mutex m;
    std::condition_variable cv;
    void wait(const char* what, const std::function<void()>& done = {}) {
        std::unique_lock<std::mutex> lock(m);
        long long g = generation;
        if (++count == n) {
            count = 0;
            if (done) {
                done();
            }
            ++generation;
            cv.notify_all();
            return;
        }
        while (generation == g) {
            if (failed()) {
                throw Failure();
            }
            if (cv.wait_for(lock, std::chrono::milliseconds(3000)) == std::cv_status::timeout && generation == g) {
                lock.unlock();
                fail(std::string(what) + ": not every thread reached it (divergence) in block " +
                     std::to_string(bid.x));
            }
        }
    }
};

inline Barrier& block_barrier() {
    static Barrier b;
    return b;
}
inline std::vector<Barrier>& warp_barriers() {
    static std::vector<Barrier> b(1);
    return b;
}
inline std::vector<unsigned long long>& lanes() {  // each lane's shuffle value, as 8 raw bytes
    static std::vector<unsigned long long> v;
    return v;
}

// Shared-memory accesses of the current block: (array, element) -> (phase, thread, wrote) list.
struct Access {
    long long phase;
    unsigned int thread;
    bool wrote;
};
inline std::mutex& log_mutex() {
    static std::mutex m;
    return m;
}
inline std::map<std::pair<const void*, long long>, std::vector<Access>>& accesses() {
    static std::map<std::pair<const void*, long long>, std::vector<Access>> a;
    return a;
}
inline std::map<const void*, std::string>& array_names() {
    static std::map<const void*, std::string> n;
    return n;
}
inline long long& access_count() {
    static long long n = 0;
    return n;
}

inline void record(const void* array, long long index, bool wrote) {
    std::lock_guard<std::mutex> lock(log_mutex());
    accesses()[{array, index}].push_back({phase, tid.x, wrote});
    ++access_count();
}

// A race: in one phase, two threads on one element and one of them writing.
inline void check_block_races() {
    for (auto& [key, list] : accesses()) {
        for (size_t a = 0; a < list.size(); ++a) {
            for (size_t b = a + 1; b < list.size(); ++b) {
                const Access &x = list[a], &y = list[b];
                if (x.phase == y.phase && x.thread != y.thread && (x.wrote || y.wrote)) {
                    std::lock_guard<std::mutex> lock(error_mutex());
                    if (!failed().exchange(true)) {
                        error() = "shared-memory race on " + array_names()[key.first] + "[" +
                                  std::to_string(key.second) + "] in block " + std::to_string(bid.x) + ", phase " +
                                  std::to_string(x.phase) + ": threads " + std::to_string(x.thread) + " (" +
                                  (x.wrote ? "write" : "read") + ") and " + std::to_string(y.thread) + " (" +
                                  (y.wrote ? "write" : "read") + ")";
                    }
                    return;
                }
            }
        }
    }
    accesses().clear();
}

template <typename T, int N> struct shared_array {
    T data[N];
    explicit shared_array(const char* name) {
        std::lock_guard<std::mutex> lock(log_mutex());
        array_names()[this] = name;
    }
    struct ref {
        shared_array* a;
        long long k;
        operator T() const {
            record(a, k, false);
            return a->data[k];
        }
        ref& operator=(const T& v) {
            record(a, k, true);
            a->data[k] = v;
            return *this;
        }
    };
    ref operator[](long long k) {
        if (k < 0 || k >= N) {
            fail("shared array index " + std::to_string(k) + " out of [0, " + std::to_string(N) + ")");
        }
        return ref{this, k};
    }
};

inline std::mutex& atomic_mutex() {
    static std::mutex m;
    return m;
}

}  // namespace fc_emu

#define threadIdx fc_emu::tid
#define blockIdx fc_emu::bid
#define blockDim fc_emu::bdim
#define gridDim fc_emu::gdim

inline void __syncthreads() {
    fc_emu::block_barrier().wait("__syncthreads", [] {
        ++fc_emu::phase;
        ++fc_emu::barriers;
    });
}

inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }

template <typename T> T __shfl_xor_sync(unsigned int mask, T v, int lane_mask) {
    static_assert(sizeof(T) <= 8, "a shuffle moves at most 8 bytes");
    unsigned int t = fc_emu::tid.x, warp = t / 32, lane = t % 32;
    if (mask != 0xffffffffu || fc_emu::bdim.x % 32 != 0) {
        fc_emu::fail("__shfl_xor_sync: the emulator takes full warps and the full mask only");
    }
    auto& slots = fc_emu::lanes();
    unsigned long long bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    slots[t] = bits;
    auto& barrier = fc_emu::warp_barriers()[warp];
    barrier.wait("__shfl_xor_sync");
    unsigned long long theirs = slots[warp * 32 + (lane ^ (unsigned int)lane_mask)];
    barrier.wait("__shfl_xor_sync", [] { ++fc_emu::shuffles; });
    T out;
    std::memcpy(&out, &theirs, sizeof(T));
    return out;
}

inline double atomicAdd(double* p, double v) {
    std::lock_guard<std::mutex> lock(fc_emu::atomic_mutex());
    double old = *p;
    *p = old + v;
    return old;
}

inline unsigned int atomicAdd(unsigned int* p, unsigned int v) {
    std::lock_guard<std::mutex> lock(fc_emu::atomic_mutex());
    unsigned int old = *p;
    *p = old + v;
    return old;
}

namespace fc_emu {

struct Indexer {
    long long n;
    long long size() const { return n; }
};

// CuPy's launch of an ElementwiseKernel (cupy/cuda/function.pyx, linear_launch): block =
// min(block_size, size), grid = ceil(size / block); each thread runs CUPY_FOR's grid-stride loop.
inline int launch(long long size, long long block_size, const std::function<void(long long)>& body, char* report,
                  int report_len) {
    failed() = false;
    error().clear();
    accesses().clear();
    barriers = shuffles = access_count() = 0;
    long long block = size < block_size ? size : block_size;
    long long grid = (size + block - 1) / block;
    bdim = {(unsigned int)block, 1, 1};
    gdim = {(unsigned int)grid, 1, 1};
    block_barrier().n = (int)block;
    block_barrier().count = 0;
    warp_barriers() = std::vector<Barrier>((block + 31) / 32);
    for (size_t w = 0; w < warp_barriers().size(); ++w) {
        warp_barriers()[w].n = (int)((long long)(w + 1) * 32 <= block ? 32 : block - (long long)w * 32);
    }
    lanes().assign(block, 0);
    Barrier boundary;
    boundary.n = (int)block;
    std::vector<std::thread> team;
    for (long long t = 0; t < block; ++t) {
        team.emplace_back([&, t] {
            tid = {(unsigned int)t, 0, 0};
            try {
                for (long long b = 0; b < grid; ++b) {
                    bid = {(unsigned int)b, 0, 0};
                    for (long long i = b * block + t; i < size; i += block * grid) {
                        body(i);
                    }
                    boundary.wait("the end of a block", [] {
                        check_block_races();
                        phase = 0;
                    });
                    if (failed()) {
                        return;
                    }
                }
            } catch (const Failure&) {
            }
        });
    }
    for (auto& th : team) {
        th.join();
    }
    std::snprintf(report, report_len, "%s|blocks=%lld threads=%lld barriers=%lld shuffles=%lld shared_accesses=%lld",
                  error().c_str(), grid, block, barriers, shuffles, access_count());
    return failed() ? 1 : 0;
}

}  // namespace fc_emu

#endif  // FCGPU_BLOCK_EMULATOR_H
