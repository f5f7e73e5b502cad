// The own GEMMs of kernels/gemm.cuh for float16 and bfloat16 operands on tensor cores (WMMA API,
// nvcuda::wmma, 16 x 16 x 16 fragments, float32 accumulation); included after gemm.cuh.
// Same three kernels, same 64 x 64 tile of C a block, same epilogues (bias, activation, derivative,
// block-reduced bias gradient), computed in float and rounded once to the output type; the same
// Dropout variants (rounded where the elementwise kernels round: y to T before its dropout, and in the
// input gradient dz @ W.T and its dropout each to T before act') and split-K weight gradient (float
// partials, reduced into T or float).
//
// A block is 4 warps (128 threads) in a 2 x 2 layout, each warp a 32 x 32 quarter of the tile as
// 2 x 2 accumulator fragments. Each step stages a 64 x 32 slice of A as As[m][k] and a 32 x 64 slice
// of B as Bs[k][n] (both row-major for the fragments, whatever the operand's layout in global
// memory: the staging loop reads along the contiguous index and zero-fills out of range), then
// each warp runs 2 k-fragments x 2 x 2 mma_sync. The accumulators go through shared memory (Cs,
// float) so the epilogue reads whole rows with bounds checks: any sizes work. Row pitches are
// padded by 8 halves (4 floats), keeping every fragment pointer 32-byte aligned, ldm a multiple of 8.
//
// FC_BLOCK_EMULATOR: tests/support/wmma_emulator.h supplies fc_half, fc_bf16 and nvcuda::wmma, each
// fragment operation a warp-collective computed once on the whole tile.
#ifndef FCGPU_GEMM_WMMA_CUH
#define FCGPU_GEMM_WMMA_CUH

#ifdef __CUDACC__
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <mma.h>
typedef __half fc_half;
typedef __nv_bfloat16 fc_bf16;
FC_GEMM_DEV float fc_to_float(fc_half v) { return __half2float(v); }
FC_GEMM_DEV float fc_to_float(fc_bf16 v) { return __bfloat162float(v); }
FC_GEMM_DEV float fc_to_float(float v) { return v; }
template <typename T> FC_GEMM_DEV T fc_from_float(float v);
template <> FC_GEMM_DEV fc_half fc_from_float<fc_half>(float v) { return __float2half_rn(v); }
template <> FC_GEMM_DEV fc_bf16 fc_from_float<fc_bf16>(float v) { return __float2bfloat16_rn(v); }
template <> FC_GEMM_DEV float fc_from_float<float>(float v) { return v; }
#define FC_SHARED_ALIGNED(type, name, n) __shared__ __align__(32) type name[n]
#else
#define FC_SHARED_ALIGNED(type, name, n) FC_GEMM_SHARED(type, name, n)
#endif

#define FC_WMMA_THREADS 128
#define FC_WMMA_BK 32
#define FC_WMMA_LDA (FC_WMMA_BK + 8)    // As[m][k]
#define FC_WMMA_LDB (FC_GEMM_TILE + 8)  // Bs[k][n]
#define FC_WMMA_LDC (FC_GEMM_TILE + 4)  // Cs[m][n], float

// Stage elements [0, 2048) of a 64 x 32 (A) or 32 x 64 (B) slice: element e of thread t is idx =
// t + 128 e. MAJOR_O: the operand is read along its outer index o (src[k * ld + o]), else along k
// (src[o * ld + k]). The slice goes to tile[o * ld_o + k * ld_k]; with SUM the thread also adds
// what it loaded to sum (its column o = t % 64 is the same in every step: only for MAJOR_O).
template <typename T, bool MAJOR_O, bool SUM, typename Tile>
FC_GEMM_DEV void fc_wmma_stage(Tile& tile, int ld_o, int ld_k, const T* src, long long ld, int o0, int outer_n,
                               int k0, int K, int t, float& sum) {
#pragma unroll 4
    for (int e = 0; e < (FC_GEMM_TILE * FC_WMMA_BK) / FC_WMMA_THREADS; ++e) {
        int idx = t + FC_WMMA_THREADS * e, o, k;
        if (MAJOR_O) {
            o = idx % FC_GEMM_TILE;
            k = idx / FC_GEMM_TILE;
        } else {
            o = idx / FC_WMMA_BK;
            k = idx % FC_WMMA_BK;
        }
        int go = o0 + o, gk = k0 + k;
        T v = fc_from_float<T>(0.0f);
        if (go < outer_n && gk < K) {
            v = MAJOR_O ? src[(long long)gk * ld + go] : src[(long long)go * ld + gk];
        }
        if (SUM) {
            sum += fc_to_float(v);
        }
        tile[o * ld_o + k * ld_k] = v;
    }
}

// Cs (64 x 64, float, pitch LDC) = A (M x K) @ B (K x N) over the block's tile; A_KC / B_KC as in
// fc_gemm_mainloop. Ends with a barrier: Cs is readable by every thread.
template <typename T, bool A_KC, bool B_KC, bool SUM_B, typename CTile>
FC_GEMM_DEV void fc_wmma_mainloop(CTile& cs, const T* a, long long lda, const T* b, long long ldb, int M, int N,
                                  int K, int m0, int n0, float& colsum) {
    using namespace nvcuda;
    FC_SHARED_ALIGNED(T, fc_wmma_as, FC_GEMM_TILE * FC_WMMA_LDA);
    FC_SHARED_ALIGNED(T, fc_wmma_bs, FC_WMMA_BK * FC_WMMA_LDB);
    int t = threadIdx.x, warp = t / 32, wm = (warp / 2) * 32, wn = (warp % 2) * 32;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> af[2];
    wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> bf[2];
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
#pragma unroll
        for (int j = 0; j < 2; ++j) {
            wmma::fill_fragment(acc[i][j], 0.0f);
        }
    }
    float unused = 0.0f;
    for (int k0 = 0; k0 < K; k0 += FC_WMMA_BK) {
        // A (m, k) -> As[m * LDA + k]; B (k, n) -> Bs[k * LDB + n].
        fc_wmma_stage<T, !A_KC, false>(fc_wmma_as, FC_WMMA_LDA, 1, a, lda, m0, M, k0, K, t, unused);
        fc_wmma_stage<T, !B_KC, SUM_B>(fc_wmma_bs, 1, FC_WMMA_LDB, b, ldb, n0, N, k0, K, t, colsum);
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < FC_WMMA_BK; kk += 16) {
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                wmma::load_matrix_sync(af[i], fc_wmma_as + ((wm + 16 * i) * FC_WMMA_LDA + kk), FC_WMMA_LDA);
                wmma::load_matrix_sync(bf[i], fc_wmma_bs + (kk * FC_WMMA_LDB + wn + 16 * i), FC_WMMA_LDB);
            }
#pragma unroll
            for (int i = 0; i < 2; ++i) {
#pragma unroll
                for (int j = 0; j < 2; ++j) {
                    wmma::mma_sync(acc[i][j], af[i], bf[j], acc[i][j]);
                }
            }
        }
        __syncthreads();  // the next step overwrites the tiles
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
#pragma unroll
        for (int j = 0; j < 2; ++j) {
            wmma::store_matrix_sync(cs + ((wm + 16 * i) * FC_WMMA_LDC + wn + 16 * j), acc[i][j], FC_WMMA_LDC,
                                    wmma::mem_row_major);
        }
    }
    __syncthreads();
}

// The epilogue's share of a thread: element idx = t + 128 e of the 64 x 64 tile, row idx / 64 and
// column idx % 64 (a warp handles 32 consecutive outputs of a row).
#define FC_WMMA_PER_THREAD ((FC_GEMM_TILE * FC_GEMM_TILE) / FC_WMMA_THREADS)

// With DROP also yd = dropout(y) of y rounded to T: fc_dropout<T> (float arithmetic, one rounding).
template <typename Act, bool DROP, typename T>
FC_GEMM_DEV void fc_wmma_forward(const T* x, const T* w, const T* b, T* y, T* z, T* yd, int M, int K, int N,
                                 int has_bias, int keep_z, fc_gemm_dropout drop) {
    FC_SHARED_ALIGNED(float, fc_wmma_cs, FC_GEMM_TILE * FC_WMMA_LDC);
    int m0, n0;
    fc_gemm_block_origin(N, m0, n0);
    float unused = 0.0f;
    fc_wmma_mainloop<T, true, false, false>(fc_wmma_cs, x, K, w, N, M, N, K, m0, n0, unused);
    for (int e = 0; e < FC_WMMA_PER_THREAD; ++e) {
        int idx = (int)threadIdx.x + FC_WMMA_THREADS * e, r = idx / FC_GEMM_TILE, c = idx % FC_GEMM_TILE;
        int m = m0 + r, n = n0 + c;
        if (m < M && n < N) {
            float s = fc_wmma_cs[r * FC_WMMA_LDC + c];
            s = has_bias ? s + fc_to_float(b[n]) : s;
            long long at = (long long)m * N + n;
            if (keep_z) {
                z[at] = fc_from_float<T>(s);
            }
            T v = fc_from_float<T>(Act::forward(s));
            y[at] = v;
            if (DROP) {
                yd[at] = fc_from_float<T>(fc_gemm_drop(drop, fc_to_float(v), at));
            }
        }
    }
}

// With DROP, fc_act_dropout_backward<Act, T> of the product rounded to T: its dropout rounded to T, then act'.
template <typename Act, bool PREV, bool DROP, typename T>
FC_GEMM_DEV void fc_wmma_input_grad(const T* dz, const T* w, const T* kept, T* dx, int M, int Nout, int Kin,
                                    fc_gemm_dropout drop) {
    FC_SHARED_ALIGNED(float, fc_wmma_cs, FC_GEMM_TILE * FC_WMMA_LDC);
    int m0, n0;
    fc_gemm_block_origin(Kin, m0, n0);
    float unused = 0.0f;
    fc_wmma_mainloop<T, true, true, false>(fc_wmma_cs, dz, Nout, w, Nout, M, Kin, Nout, m0, n0, unused);
    for (int e = 0; e < FC_WMMA_PER_THREAD; ++e) {
        int idx = (int)threadIdx.x + FC_WMMA_THREADS * e, r = idx / FC_GEMM_TILE, c = idx % FC_GEMM_TILE;
        int m = m0 + r, n = n0 + c;
        if (m < M && n < Kin) {
            float g = fc_wmma_cs[r * FC_WMMA_LDC + c];
            long long at = (long long)m * Kin + n;
            if (DROP) {
                g = fc_to_float(fc_from_float<T>(fc_gemm_drop(drop, fc_to_float(fc_from_float<T>(g)), at)));
            }
            dx[at] = fc_from_float<T>(PREV ? Act::backward(fc_to_float(kept[at]), g) : g);
        }
    }
}

// dw, db of type O: T, or float for a float32 master gradient (mixed precision), over tile `tile` of dw.
template <typename T, typename O>
FC_GEMM_DEV void fc_wmma_weight_grad(const T* x, const T* dz, O* dw, O* db, int B, int Kin, int Nout, int has_db,
                                     int tile) {
    FC_SHARED_ALIGNED(float, fc_wmma_cs, FC_GEMM_TILE * FC_WMMA_LDC);
    FC_GEMM_SHARED(float, fc_wmma_colsums, FC_WMMA_THREADS);
    int m0, n0;
    fc_gemm_tile_origin(tile, Nout, m0, n0);
    float colsum = 0.0f;
    fc_wmma_mainloop<T, false, false, true>(fc_wmma_cs, x, Kin, dz, Nout, Kin, Nout, B, m0, n0, colsum);
    for (int e = 0; e < FC_WMMA_PER_THREAD; ++e) {
        int idx = (int)threadIdx.x + FC_WMMA_THREADS * e, r = idx / FC_GEMM_TILE, c = idx % FC_GEMM_TILE;
        int i = m0 + r, n = n0 + c;
        if (i < Kin && n < Nout) {
            dw[(long long)i * Nout + n] = fc_from_float<O>(fc_wmma_cs[r * FC_WMMA_LDC + c]);
        }
    }
    int t = threadIdx.x;
    if (has_db && m0 == 0) {  // uniform over the block
        fc_wmma_colsums[t] = colsum;
        __syncthreads();
        if (t < FC_GEMM_TILE && n0 + t < Nout) {
            db[n0 + t] = fc_from_float<O>(fc_wmma_colsums[t] + fc_wmma_colsums[t + 64]);
        }
    }
}

// The split-K reduce's conversion to O (T or float).
template <typename O>
struct fc_wmma_to {
    static FC_GEMM_DEV O cvt(float v) { return fc_from_float<O>(v); }
};

// The kernels of one activation for operand type T (fc_half or fc_bf16), names ending in SUFFIX.
#define FC_GEMM_WMMA_ACTIVATION_KERNELS(NAME, ACT, T, SUFFIX)                                                   \
    extern "C" __global__ void __launch_bounds__(FC_WMMA_THREADS)                                               \
        fcgpu_gemm_fwd_##NAME##_##SUFFIX(const T* x, const T* w, const T* b, T* y, T* z, int M, int K, int N,   \
                                         int has_bias, int keep_z) {                                            \
        fc_wmma_forward<ACT, false, T>(x, w, b, y, z, y, M, K, N, has_bias, keep_z, fc_gemm_dropout());         \
    }                                                                                                           \
    extern "C" __global__ void __launch_bounds__(FC_WMMA_THREADS)                                               \
        fcgpu_gemm_dx_##NAME##_##SUFFIX(const T* dz, const T* w, const T* kept, T* dx, int M, int Nout,         \
                                        int Kin) {                                                              \
        fc_wmma_input_grad<ACT, true, false, T>(dz, w, kept, dx, M, Nout, Kin, fc_gemm_dropout());              \
    }                                                                                                           \
    extern "C" __global__ void __launch_bounds__(FC_WMMA_THREADS) fcgpu_gemm_fwd_drop_##NAME##_##SUFFIX(        \
        const T* x, const T* w, const T* b, T* y, T* z, T* yd, int M, int K, int N, int has_bias, int keep_z,   \
        FC_GEMM_DROPOUT_PARAMS) {                                                                               \
        fc_wmma_forward<ACT, true, T>(x, w, b, y, z, yd, M, K, N, has_bias, keep_z, FC_GEMM_DROPOUT_ARGS);      \
    }                                                                                                           \
    extern "C" __global__ void __launch_bounds__(FC_WMMA_THREADS) fcgpu_gemm_dx_drop_##NAME##_##SUFFIX(         \
        const T* dz, const T* w, const T* kept, T* dx, int M, int Nout, int Kin, FC_GEMM_DROPOUT_PARAMS) {      \
        fc_wmma_input_grad<ACT, true, true, T>(dz, w, kept, dx, M, Nout, Kin, FC_GEMM_DROPOUT_ARGS);            \
    }

// The plain input gradient and the weight gradients (into T, and into float32) for T; split-K's
// partials (float, into the workspace) and its reduces into T and into float32.
#define FC_GEMM_WMMA_KERNELS(T, SUFFIX)                                                                          \
    extern "C" __global__ void __launch_bounds__(FC_WMMA_THREADS)                                               \
        fcgpu_gemm_dx_##SUFFIX(const T* dz, const T* w, T* dx, int M, int Nout, int Kin) {                      \
        fc_wmma_input_grad<fc_act_linear, false, false, T>(dz, w, dx, dx, M, Nout, Kin, fc_gemm_dropout());     \
    }                                                                                                           \
    extern "C" __global__ void __launch_bounds__(FC_WMMA_THREADS)                                               \
        fcgpu_gemm_dw_##SUFFIX(const T* x, const T* dz, T* dw, T* db, int B, int Kin, int Nout, int has_db) {   \
        fc_wmma_weight_grad<T, T>(x, dz, dw, db, B, Kin, Nout, has_db, (int)blockIdx.x);                        \
    }                                                                                                           \
    extern "C" __global__ void __launch_bounds__(FC_WMMA_THREADS)                                               \
        fcgpu_gemm_dw_##SUFFIX##_f32(const T* x, const T* dz, float* dw, float* db, int B, int Kin, int Nout,   \
                                     int has_db) {                                                              \
        fc_wmma_weight_grad<T, float>(x, dz, dw, db, B, Kin, Nout, has_db, (int)blockIdx.x);                    \
    }                                                                                                           \
    extern "C" __global__ void __launch_bounds__(FC_WMMA_THREADS) fcgpu_gemm_dw_splitk_##SUFFIX(                \
        const T* x, const T* dz, float* ws, int B, int Kin, int Nout, int has_db, int rows_per_slice) {         \
        fc_gemm_slice sl = fc_gemm_splitk_slice(B, Kin, Nout, rows_per_slice);                                  \
        fc_wmma_weight_grad<T, float>(x + sl.row0 * Kin, dz + sl.row0 * Nout, ws + sl.dw_at, ws + sl.db_at,     \
                                      sl.rows, Kin, Nout, has_db, sl.tile);                                     \
    }                                                                                                           \
    extern "C" __global__ void __launch_bounds__(FC_GEMM_REDUCE_THREADS) fcgpu_gemm_dw_reduce_##SUFFIX(         \
        const float* ws, T* dw, T* db, int S, int Kin, int Nout, int has_db) {                                  \
        fc_gemm_splitk_reduce<T, fc_wmma_to<T> >(ws, dw, db, S, Kin, Nout, has_db);                             \
    }                                                                                                           \
    extern "C" __global__ void __launch_bounds__(FC_GEMM_REDUCE_THREADS) fcgpu_gemm_dw_reduce_##SUFFIX##_f32(   \
        const float* ws, float* dw, float* db, int S, int Kin, int Nout, int has_db) {                          \
        fc_gemm_splitk_reduce<float, fc_gemm_to_float>(ws, dw, db, S, Kin, Nout, has_db);                       \
    }

#endif  // FCGPU_GEMM_WMMA_CUH
