// The WMMA API (nvcuda::wmma, 16 x 16 x 16 fragments) and the 16-bit types of kernels/gemm_wmma.cuh
// on the host block emulator (included after block_emulator.h and gemm_emulator.h). No lane layout:
// a fragment holds its whole 16 x 16 tile in every lane, and each fragment operation that the API
// makes warp-collective (load, store, mma) is one: every lane of the warp must reach it (a shuffle-
// style barrier among the warp's lanes; a lane that does not is a divergence), the lanes must pass
// the same pointer and ldm, and the warp's first lane does the whole tile once (so its shared reads
// and writes are checked for races as that thread's) before every lane takes the result.
// mma_sync sums each output's 16 products in order in float (the products of 16-bit values are exact
// in float; a tensor core's order of additions is its own: tests compare with a tolerance).
#ifndef FCGPU_WMMA_EMULATOR_H
#define FCGPU_WMMA_EMULATOR_H

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <cstring>
#include <vector>

typedef _Float16 fc_half;

struct fc_bf16 {  // bfloat16 as CUDA's __nv_bfloat16 stores it, rounded to nearest even
    uint16_t bits;
    fc_bf16() : bits(0) {}
};

inline float fc_to_float(fc_half v) { return (float)v; }
inline float fc_to_float(fc_bf16 v) {
    uint32_t u = uint32_t(v.bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline float fc_to_float(float v) { return v; }
template <typename T> T fc_from_float(float v);
template <> inline fc_half fc_from_float<fc_half>(float v) { return (fc_half)v; }
template <> inline float fc_from_float<float>(float v) { return v; }
template <> inline fc_bf16 fc_from_float<fc_bf16>(float v) {
    uint32_t u;
    std::memcpy(&u, &v, 4);
    fc_bf16 out;
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        out.bits = uint16_t((u >> 16) | 0x40u);  // a quiet NaN
        return out;
    }
    u += 0x7fffu + ((u >> 16) & 1u);
    out.bits = uint16_t(u >> 16);
    return out;
}

namespace fc_emu {

struct WarpSlot {
    const char* op[32];
    const void* key[32];
    long long off[32], ld[32];
    float tile[256];
};
inline std::vector<WarpSlot>& warp_slots() {
    static std::vector<WarpSlot> v;
    return v;
}

template <typename P> const void* pointer_key(const P& p, long long& off) {
    off = p.off;
    return p.a;
}
template <typename T> const void* pointer_key(T* p, long long& off) {
    off = 0;
    return p;
}

// Every lane of the warp arrives with (pointer, ldm); the first lane checks they agree and runs
// `once` on the warp's tile; then every lane may read the tile (until the warp's next collective).
template <typename F> float* warp_collective(const char* what, const void* key, long long off, long long ld, F once) {
    if (bdim.x % 32 != 0) {
        fail(std::string(what) + ": the emulator takes blocks of whole warps");
    }
    unsigned int t = tid.x, warp = t / 32, lane = t % 32;
    auto& slots = warp_slots();
    if (slots.size() < bdim.x / 32) {
        slots.resize(bdim.x / 32);
    }
    WarpSlot& slot = slots[warp];
    slot.op[lane] = what;
    slot.key[lane] = key;
    slot.off[lane] = off;
    slot.ld[lane] = ld;
    wait_as(AT_SHUFFLE);  // every lane has arrived
    if (lane == 0) {
        for (int l = 1; l < 32; ++l) {
            if (slot.op[l] != what) {  // a warp barrier shared by two different operations
                fail(std::string(what) + ": lane " + std::to_string(l) + " of warp " + std::to_string(warp) +
                     " is at " + slot.op[l] + " instead (divergence)");
            }
            if (slot.key[l] != key || slot.off[l] != off || slot.ld[l] != ld) {
                fail(std::string(what) + ": the lanes of warp " + std::to_string(warp) + " pass different pointers");
            }
        }
        once(slot.tile);
    }
    wait_as(AT_SHUFFLE);  // the first lane is done
    return slot.tile;
}

}  // namespace fc_emu

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void> struct fragment {
    static_assert(M == 16 && N == 16 && K == 16, "the emulator has 16 x 16 x 16 fragments");
    float v[256];  // the whole tile, row-major, in every lane
};

template <typename Use, typename T, typename L> constexpr bool transposed_in_memory() {
    return (std::is_same<Use, matrix_a>::value || std::is_same<Use, matrix_b>::value) &&
           std::is_same<L, col_major>::value;
}

template <typename Use, typename T, typename L, typename P>
void load_matrix_sync(fragment<Use, 16, 16, 16, T, L>& f, P p, unsigned int ldm) {
    long long off;
    const void* key = fc_emu::pointer_key(p, off);
    float* tile = fc_emu::warp_collective("load_matrix_sync", key, off, ldm, [&](float* out) {
        for (int r = 0; r < 16; ++r) {
            for (int c = 0; c < 16; ++c) {
                long long at = transposed_in_memory<Use, T, L>() ? (long long)c * ldm + r : (long long)r * ldm + c;
                T value = p[at];
                out[r * 16 + c] = fc_to_float(value);
            }
        }
    });
    std::memcpy(f.v, tile, sizeof f.v);
}

template <typename P>
void store_matrix_sync(P p, const fragment<accumulator, 16, 16, 16, float>& f, unsigned int ldm, layout_t layout) {
    long long off;
    const void* key = fc_emu::pointer_key(p, off);
    fc_emu::warp_collective("store_matrix_sync", key, off, ldm, [&](float*) {
        for (int r = 0; r < 16; ++r) {
            for (int c = 0; c < 16; ++c) {
                long long at = layout == mem_col_major ? (long long)c * ldm + r : (long long)r * ldm + c;
                p[at] = f.v[r * 16 + c];
            }
        }
    });
}

template <typename T, typename LA, typename LB>
void mma_sync(fragment<accumulator, 16, 16, 16, float>& d, const fragment<matrix_a, 16, 16, 16, T, LA>& a,
              const fragment<matrix_b, 16, 16, 16, T, LB>& b, const fragment<accumulator, 16, 16, 16, float>& c) {
    float* tile = fc_emu::warp_collective("mma_sync", nullptr, 0, 0, [&](float* out) {
        for (int r = 0; r < 16; ++r) {
            for (int n = 0; n < 16; ++n) {
                float s = c.v[r * 16 + n];
                for (int k = 0; k < 16; ++k) {
                    s = std::fmaf(a.v[r * 16 + k], b.v[k * 16 + n], s);
                }
                out[r * 16 + n] = s;
            }
        }
    });
    std::memcpy(d.v, tile, sizeof d.v);
}

template <typename Use, typename T, typename L> void fill_fragment(fragment<Use, 16, 16, 16, T, L>& f, float value) {
    for (float& x : f.v) {
        x = value;
    }
}

}  // namespace wmma
}  // namespace nvcuda

#endif  // FCGPU_WMMA_EMULATOR_H
