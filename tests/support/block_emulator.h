// A CUDA block on the host: one fiber (ucontext) per CUDA thread, switched at every barrier and
// warp shuffle, which are emulated, and every read and write of a block-shared array (FC_SHARED in kernels/blocks.cuh) recorded with the
// barrier phase it happened in. Two threads touching one shared element in one phase, at least one
// of them writing, is a race; a barrier that not every thread of the block (or a shuffle that not
// every lane of the warp) reaches is a divergence: the block stalls with some threads waiting and no
// other able to run. Blocks run one after another, in block order. Included before the kernel headers, with FC_BLOCK_EMULATOR defined.
#ifndef FCGPU_BLOCK_EMULATOR_H
#define FCGPU_BLOCK_EMULATOR_H

#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <ucontext.h>
#include <vector>

struct fc_dim3 {
    unsigned int x, y, z;
};

namespace fc_emu {

struct Failure {};  // thrown in a fiber to leave the kernel once the run has failed

inline std::string& error() {
    static std::string e;
    return e;
}
inline bool& failed() {
    static bool f = false;
    return f;
}
inline void fail(const std::string& why) {
    if (!failed()) {
        failed() = true;
        error() = why;
    }
    throw Failure();
}

inline fc_dim3 tid = {0, 0, 0};
inline fc_dim3 bid = {0, 0, 0};
inline fc_dim3 bdim = {1, 1, 1};
inline fc_dim3 gdim = {1, 1, 1};
inline long long phase = 0;     // barrier phases completed in the current block
inline long long barriers = 0;  // __syncthreads completed, all blocks
inline long long shuffles = 0;  // warp-wide waits completed (two a shuffle), all blocks

// The block's threads as fibers: each runs until it waits (at a barrier or a shuffle) or ends, then
// the scheduler runs the next. A barrier opens when every thread it names waits at it.
enum State { RUNNABLE, AT_SYNCTHREADS, AT_SHUFFLE, DONE };
struct Fiber {
    ucontext_t context;
    std::vector<char> stack;
    State state = RUNNABLE;
};
inline ucontext_t scheduler;
inline std::vector<Fiber> fibers;
inline unsigned int current = 0;
inline const std::function<void(long long)>* body = nullptr;
inline long long loop_size = 0;

inline void wait_as(State state) {
    fibers[current].state = state;
    swapcontext(&fibers[current].context, &scheduler);
    if (failed()) {
        throw Failure();
    }
}

inline void fiber_main() {
    long long block = bdim.x, grid = gdim.x;
    try {
        for (long long i = (long long)bid.x * block + tid.x; i < loop_size; i += block * grid) {
            (*body)(i);
        }
    } catch (const Failure&) {
    }
    fibers[current].state = DONE;
}

// Shared-memory accesses of the current block: (array, element) -> (phase, thread, wrote) list.
struct Access {
    long long phase;
    unsigned int thread;
    bool wrote;
};
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
                    if (!failed()) {
                        failed() = true;
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
    explicit shared_array(const char* name) { array_names()[this] = name; }
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

inline std::vector<unsigned long long>& lanes() {  // each lane's shuffle value, as 8 raw bytes
    static std::vector<unsigned long long> v;
    return v;
}

}  // namespace fc_emu

#define threadIdx fc_emu::tid
#define blockIdx fc_emu::bid
#define blockDim fc_emu::bdim
#define gridDim fc_emu::gdim

inline void __syncthreads() { fc_emu::wait_as(fc_emu::AT_SYNCTHREADS); }

inline void __threadfence() {}

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
    fc_emu::wait_as(fc_emu::AT_SHUFFLE);  // every lane has written
    unsigned long long theirs = slots[warp * 32 + (lane ^ (unsigned int)lane_mask)];
    fc_emu::wait_as(fc_emu::AT_SHUFFLE);  // every lane has read
    T out;
    std::memcpy(&out, &theirs, sizeof(T));
    return out;
}

inline double atomicAdd(double* p, double v) {
    double old = *p;
    *p = old + v;
    return old;
}

inline unsigned int atomicAdd(unsigned int* p, unsigned int v) {
    unsigned int old = *p;
    *p = old + v;
    return old;
}

namespace fc_emu {

struct Indexer {
    long long n;
    long long size() const { return n; }
};

// Run the fibers of one block until all are done; false on a failure or a divergence.
inline bool run_block() {
    size_t n = fibers.size();
    for (size_t t = 0; t < n; ++t) {
        Fiber& f = fibers[t];
        f.state = RUNNABLE;
        getcontext(&f.context);
        f.context.uc_stack.ss_sp = f.stack.data();
        f.context.uc_stack.ss_size = f.stack.size();
        f.context.uc_link = &scheduler;
        makecontext(&f.context, fiber_main, 0);
    }
    while (true) {
        bool ran = false;
        for (size_t t = 0; t < n; ++t) {
            if (fibers[t].state == RUNNABLE) {
                current = (unsigned int)t;
                tid = {(unsigned int)t, 0, 0};
                swapcontext(&scheduler, &fibers[t].context);
                ran = true;
            }
        }
        if (failed()) {
            return false;
        }
        if (ran) {
            continue;
        }
        size_t done = 0, at_sync = 0;
        for (auto& f : fibers) {
            done += f.state == DONE;
            at_sync += f.state == AT_SYNCTHREADS;
        }
        if (done == n) {
            return true;
        }
        if (at_sync == n) {  // every thread at __syncthreads: the next phase
            ++phase;
            ++barriers;
            for (auto& f : fibers) {
                f.state = RUNNABLE;
            }
            continue;
        }
        bool opened = false;  // warps whose 32 lanes all wait at a shuffle
        for (size_t w = 0; w * 32 < n; ++w) {
            bool all = true;
            for (size_t t = w * 32; t < w * 32 + 32 && t < n; ++t) {
                all = all && fibers[t].state == AT_SHUFFLE;
            }
            if (all) {
                for (size_t t = w * 32; t < w * 32 + 32 && t < n; ++t) {
                    fibers[t].state = RUNNABLE;
                }
                ++shuffles;
                opened = true;
            }
        }
        if (opened) {
            continue;
        }
        failed() = true;
        error() = "block " + std::to_string(bid.x) + " stalls: " + std::to_string(at_sync) + " threads wait at " +
                  "__syncthreads, " + std::to_string(done) + " have ended, the rest wait at a shuffle (divergence)";
        return false;
    }
}

// CuPy's launch of an ElementwiseKernel (cupy/cuda/function.pyx, linear_launch): block =
// min(block_size, size), grid = ceil(size / block); each thread runs CUPY_FOR's grid-stride loop.
inline int launch(long long size, long long block_size, const std::function<void(long long)>& loop_body, char* report,
                  int report_len) {
    failed() = false;
    error().clear();
    accesses().clear();
    barriers = shuffles = access_count() = 0;
    long long block = size < block_size ? size : block_size;
    long long grid = (size + block - 1) / block;
    bdim = {(unsigned int)block, 1, 1};
    gdim = {(unsigned int)grid, 1, 1};
    body = &loop_body;
    loop_size = size;
    fibers.resize(block);
    for (auto& f : fibers) {
        f.stack.resize(256 * 1024);
    }
    lanes().assign(block, 0);
    for (long long b = 0; b < grid && !failed(); ++b) {
        bid = {(unsigned int)b, 0, 0};
        phase = 0;
        if (run_block()) {
            check_block_races();
        }
    }
    std::snprintf(report, report_len, "%s|blocks=%lld threads=%lld barriers=%lld warp_syncs=%lld shared_accesses=%lld",
                  error().c_str(), grid, block, barriers, shuffles, access_count());
    return failed() ? 1 : 0;
}

}  // namespace fc_emu

#endif  // FCGPU_BLOCK_EMULATOR_H
