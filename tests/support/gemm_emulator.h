// RawKernel launches on the host block emulator (block_emulator.h, included first): a grid of
// blocks of blockDim.x threads, each thread running the kernel once as a fiber, and tile_array, a
// block-shared array (FC_GEMM_SHARED in kernels/gemm.cuh) whose accesses are checked as they
// happen, in O(1) each: in one barrier phase of one block, an element written by one thread and
// read or written by another is a race; a read of an element no thread of the block has written
// yet is an uninitialised read (a GPU's shared memory holds whatever the last block left).
#ifndef FCGPU_GEMM_EMULATOR_H
#define FCGPU_GEMM_EMULATOR_H

#include <string>

namespace fc_emu {

inline long long launch_serial = 0;  // launches so far: a block is (launch_serial, bid.x)

inline long long block_key() { return (launch_serial << 32) | (long long)bid.x; }

template <typename T, int N> struct tile_array {
    T data[N];
    long long block[N];   // block_key() of the phase below, or -1
    long long epoch[N];   // barriers at that phase
    long long written[N]; // block_key() of the last block that wrote the element, or -1
    int writer[N];        // -1 none, else the thread that wrote in this phase
    int reader[N];        // -1 none, -2 several, else the one thread that read in this phase
    const char* name;

    explicit tile_array(const char* n) : name(n) {
        for (int k = 0; k < N; ++k) {
            block[k] = written[k] = -1;
            epoch[k] = -1;
            writer[k] = reader[k] = -1;
        }
    }

    void refresh(long long k) {
        long long b = block_key();
        if (block[k] != b || epoch[k] != barriers) {
            block[k] = b;
            epoch[k] = barriers;
            writer[k] = reader[k] = -1;
        }
    }

    [[noreturn]] void race(long long k, int other, const char* what) {
        fail(std::string("shared-memory race on ") + name + "[" + std::to_string(k) + "] in block " +
             std::to_string(bid.x) + ", phase " + std::to_string(phase) + ": thread " + std::to_string(tid.x) + " " +
             what + " after thread " + std::to_string(other));
    }

    T read(long long k) {
        refresh(k);
        int t = (int)tid.x;
        if (written[k] != block_key()) {
            fail(std::string("uninitialised shared read of ") + name + "[" + std::to_string(k) + "] in block " +
                 std::to_string(bid.x) + " by thread " + std::to_string(t));
        }
        if (writer[k] != -1 && writer[k] != t) {
            race(k, writer[k], "reads");
        }
        reader[k] = (reader[k] == -1 || reader[k] == t) ? t : -2;
        ++access_count();
        return data[k];
    }

    void write(long long k, const T& v) {
        refresh(k);
        int t = (int)tid.x;
        if (writer[k] != -1 && writer[k] != t) {
            race(k, writer[k], "writes");
        }
        if (reader[k] != -1 && reader[k] != t) {
            race(k, reader[k], "writes");
        }
        writer[k] = t;
        written[k] = block_key();
        ++access_count();
        data[k] = v;
    }

    struct ref {
        tile_array* a;
        long long k;
        operator T() const { return a->read(k); }
        ref& operator=(const T& v) {
            a->write(k, v);
            return *this;
        }
        ref& operator=(const ref& other) { return *this = (T)other; }
    };
    // tile + offset: what a kernel hands to a WMMA fragment load or store (wmma_emulator.h).
    struct ptr {
        tile_array* a;
        long long off;
        ref operator[](long long k) const { return (*a)[off + k]; }
    };
    ptr operator+(long long off) { return ptr{this, off}; }

    ref operator[](long long k) {
        if (k < 0 || k >= N) {
            fail(std::string("shared array ") + name + " index " + std::to_string(k) + " out of [0, " +
                 std::to_string(N) + ")");
        }
        return ref{this, k};
    }
};

// kernel<<<grid, block>>>: every thread of every block runs `body` once (CuPy's RawKernel launch).
inline int launch_raw(long long grid, long long block, const std::function<void()>& body, char* report, int len) {
    ++launch_serial;
    if (grid <= 0 || block <= 0 || block > 1024) {
        std::snprintf(report, len, "bad launch: grid %lld, block %lld|", grid, block);
        return 1;
    }
    return launch(grid * block, block, [&](long long) { body(); }, report, len);
}

}  // namespace fc_emu

#endif  // FCGPU_GEMM_EMULATOR_H
