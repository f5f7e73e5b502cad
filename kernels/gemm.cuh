// fcgpu's own GEMMs for Dense layers (float32, FMA), launched as a CuPy RawModule, not through cuBLAS
// (whose CuPy wrappers refuse to run while a stream is captured into a CUDA graph). Three kernels:
//   forward      y = act(x @ W + b), optionally also z = x @ W + b (an activation whose backward reads z)
//   input grad   dx = dz @ W.T, optionally times the previous layer's act'(kept) (then dx is its dz)
//   weight grad  dW = x.T @ dz and db = dz.sum(0) in the same launch (block-reduced, no atomics)
// x (B, M), W (M, N), dz (B, N), all C-contiguous; fcgpu/backends/cupy/gemm.py launches them.
//
// Tiling: a block of 256 threads computes a 64 x 64 tile of C, stepping over the inner dimension 16
// at a time; each step stages a 64 x 16 slice of each operand in shared memory (coalesced global
// reads along whichever index is contiguous), and each thread keeps a 4 x 4 micro-tile of C in
// registers: rows ty + 16 i, columns tx + 16 j (tx = t % 16, ty = t / 16), so a warp's shared reads
// are 16 consecutive words (no bank conflict) or a broadcast, and its global stores are 64-byte
// runs. 64 x 64 suits the sizes here (widths <= 1024, batch <= 4096): a 4096 x 1024 output is 1024
// blocks, a 128 x 128 one still 4 (a larger tile would leave an H100's 132 SMs idler on small
// layers). Shared rows are padded to 65 words: the stores of an operand staged across its rows
// (x, dz, W.T: read along k) then conflict at most 2-way instead of 16-way.
// Out-of-range elements load as 0 and are not stored: any sizes work. Each output's sum runs over
// the inner index in order 0, 1, ..., K-1 with fmaf: the same rounding on the host and the GPU.
//
// FC_BLOCK_EMULATOR: tests/support/block_emulator.h + gemm_emulator.h run these kernels on the host,
// every thread a fiber, each __syncthreads a phase, every shared read and write checked for races.
#ifndef FCGPU_GEMM_CUH
#define FCGPU_GEMM_CUH

#ifndef __CUDACC__
#define __global__
#define __launch_bounds__(n)
#endif

#ifdef FC_BLOCK_EMULATOR
#define FC_GEMM_SHARED(type, name, n) static fc_emu::tile_array<type, n> name(#name)
#define FC_GEMM_DEV inline
#else
#define FC_GEMM_SHARED(type, name, n) __shared__ type name[n]
#define FC_GEMM_DEV __device__ __forceinline__
#endif

#define FC_GEMM_TILE 64                    // rows and columns of C a block computes
#define FC_GEMM_BK 16                      // inner-dimension step
#define FC_GEMM_THREADS 256                // threads a block: 16 x 16, each 4 x 4 outputs
#define FC_GEMM_LD (FC_GEMM_TILE + 1)      // a shared tile's padded row
#define FC_GEMM_SMEM (FC_GEMM_BK * FC_GEMM_LD)

// Stage the slice [outer0, outer0 + 64) x [k0, k0 + 16) of an operand in tile[k * LD + outer].
// KCONTIG: element (o, k) is src[o * ld + k] (read along k), else src[k * ld + o] (read along o).
// With SUM (only for the read-along-o layout) the thread also adds the values it loaded to *sum:
// its column is t % 64 in every step, so this is a partial column sum of the operand.
template <bool KCONTIG, bool SUM, typename Tile>
FC_GEMM_DEV void fc_gemm_stage(Tile& tile, const float* src, long long ld, int outer0, int outer_n, int k0, int K,
                               int t, float& sum) {
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        int o, k;
        if (KCONTIG) {
            o = t / FC_GEMM_BK + 16 * r;
            k = t % FC_GEMM_BK;
        } else {
            o = t % FC_GEMM_TILE;
            k = t / FC_GEMM_TILE + 4 * r;
        }
        int go = outer0 + o, gk = k0 + k;
        float v = 0.0f;
        if (go < outer_n && gk < K) {
            v = KCONTIG ? src[(long long)go * ld + gk] : src[(long long)gk * ld + go];
        }
        if (SUM) {
            sum += v;
        }
        tile[k * FC_GEMM_LD + o] = v;
    }
}

// acc[i][j] = sum over k of A(m0 + ty + 16 i, k) * B(k, n0 + tx + 16 j); A is (M, K), B is (K, N).
// A_KC: A(m, k) = a[m * lda + k], else a[k * lda + m]. B_KC: B(k, n) = b[n * ldb + k], else b[k * ldb + n].
// With SUM_B, colsum is this thread's partial sum of B's column n0 + t % 64 (rows t / 64 mod 4).
template <bool A_KC, bool B_KC, bool SUM_B>
FC_GEMM_DEV void fc_gemm_mainloop(const float* a, long long lda, const float* b, long long ldb, int M, int N, int K,
                                  int m0, int n0, float (&acc)[4][4], float& colsum) {
    FC_GEMM_SHARED(float, fc_gemm_as, FC_GEMM_SMEM);
    FC_GEMM_SHARED(float, fc_gemm_bs, FC_GEMM_SMEM);
    int t = threadIdx.x, tx = t % 16, ty = t / 16;
    float unused = 0.0f;
    for (int k0 = 0; k0 < K; k0 += FC_GEMM_BK) {
        fc_gemm_stage<A_KC, false>(fc_gemm_as, a, lda, m0, M, k0, K, t, unused);
        fc_gemm_stage<B_KC, SUM_B>(fc_gemm_bs, b, ldb, n0, N, k0, K, t, colsum);
        __syncthreads();
#pragma unroll
        for (int k = 0; k < FC_GEMM_BK; ++k) {
            float av[4], bv[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                av[i] = fc_gemm_as[k * FC_GEMM_LD + ty + 16 * i];
                bv[i] = fc_gemm_bs[k * FC_GEMM_LD + tx + 16 * i];
            }
#pragma unroll
            for (int i = 0; i < 4; ++i) {
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
                }
            }
        }
        __syncthreads();  // the next step overwrites the tiles
    }
}

// The block's tile of C: blocks are numbered row-major over ceil(M / 64) x ceil(N / 64) tiles.
FC_GEMM_DEV void fc_gemm_block_origin(int N, int& m0, int& n0) {
    int tiles_n = (N + FC_GEMM_TILE - 1) / FC_GEMM_TILE;
    m0 = (int)(blockIdx.x / tiles_n) * FC_GEMM_TILE;
    n0 = (int)(blockIdx.x % tiles_n) * FC_GEMM_TILE;
}

// y (M, N) = act(x (M, K) @ w (K, N) + b); z = x @ w + b too when keep_z. Without a bias b is not read.
template <typename Act>
FC_GEMM_DEV void fc_gemm_forward(const float* x, const float* w, const float* b, float* y, float* z, int M, int K,
                                 int N, int has_bias, int keep_z) {
    int m0, n0;
    fc_gemm_block_origin(N, m0, n0);
    float acc[4][4] = {{0.0f}}, unused = 0.0f;
    fc_gemm_mainloop<true, false, false>(x, K, w, N, M, N, K, m0, n0, acc, unused);
    int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        int m = m0 + ty + 16 * i;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            int n = n0 + tx + 16 * j;
            if (m < M && n < N) {
                float s = has_bias ? acc[i][j] + b[n] : acc[i][j];
                long long at = (long long)m * N + n;
                if (keep_z) {
                    z[at] = s;
                }
                y[at] = Act::forward(s);
            }
        }
    }
}

// dx (M, Kin) = dz (M, Nout) @ w (Kin, Nout).T; with PREV, dx = Act::backward(kept, dz @ w.T), the
// previous layer's dz from what its forward kept (its y, or its z for a backward from z).
template <typename Act, bool PREV>
FC_GEMM_DEV void fc_gemm_input_grad(const float* dz, const float* w, const float* kept, float* dx, int M, int Nout,
                                    int Kin) {
    int m0, n0;
    fc_gemm_block_origin(Kin, m0, n0);
    float acc[4][4] = {{0.0f}}, unused = 0.0f;
    fc_gemm_mainloop<true, true, false>(dz, Nout, w, Nout, M, Kin, Nout, m0, n0, acc, unused);
    int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        int m = m0 + ty + 16 * i;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            int c = n0 + tx + 16 * j;
            if (m < M && c < Kin) {
                long long at = (long long)m * Kin + c;
                dx[at] = PREV ? Act::backward(kept[at], acc[i][j]) : acc[i][j];
            }
        }
    }
}

// dw (Kin, Nout) = x (B, Kin).T @ dz (B, Nout); db (Nout) = dz.sum(0) when has_db, written by the
// blocks of the first tile row: each thread's partial column sum (collected while staging dz), the
// four partials of a column added in shared memory in a fixed order (deterministic, no atomics).
FC_GEMM_DEV void fc_gemm_weight_grad(const float* x, const float* dz, float* dw, float* db, int B, int Kin, int Nout,
                                     int has_db) {
    FC_GEMM_SHARED(float, fc_gemm_colsums, FC_GEMM_THREADS);
    int m0, n0;
    fc_gemm_block_origin(Nout, m0, n0);
    float acc[4][4] = {{0.0f}}, colsum = 0.0f;
    fc_gemm_mainloop<false, false, true>(x, Kin, dz, Nout, Kin, Nout, B, m0, n0, acc, colsum);
    int t = threadIdx.x, tx = t % 16, ty = t / 16;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        int r = m0 + ty + 16 * i;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            int n = n0 + tx + 16 * j;
            if (r < Kin && n < Nout) {
                dw[(long long)r * Nout + n] = acc[i][j];
            }
        }
    }
    if (has_db && m0 == 0) {  // the same for every thread of the block: the barrier is reached by all
        fc_gemm_colsums[t] = colsum;
        __syncthreads();
        if (t < FC_GEMM_TILE && n0 + t < Nout) {
            db[n0 + t] = ((fc_gemm_colsums[t] + fc_gemm_colsums[t + 64]) + fc_gemm_colsums[t + 128]) +
                         fc_gemm_colsums[t + 192];
        }
    }
}

// The kernels of one activation functor (NAME the activation's table name, ACT its functor):
// fcgpu_gemm_fwd_NAME and fcgpu_gemm_dx_NAME (the input gradient times that activation's derivative).
#define FC_GEMM_ACTIVATION_KERNELS(NAME, ACT)                                                                    \
    extern "C" __global__ void __launch_bounds__(FC_GEMM_THREADS)                                                \
        fcgpu_gemm_fwd_##NAME(const float* x, const float* w, const float* b, float* y, float* z, int M, int K, \
                              int N, int has_bias, int keep_z) {                                                 \
        fc_gemm_forward<ACT>(x, w, b, y, z, M, K, N, has_bias, keep_z);                                          \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(FC_GEMM_THREADS)                                                \
        fcgpu_gemm_dx_##NAME(const float* dz, const float* w, const float* kept, float* dx, int M, int Nout,    \
                             int Kin) {                                                                          \
        fc_gemm_input_grad<ACT, true>(dz, w, kept, dx, M, Nout, Kin);                                            \
    }

// The plain input gradient (no derivative: the first layer, or a previous layer without
// activation) and the weight gradient, float32.
#define FC_GEMM_F32_KERNELS()                                                                                    \
    extern "C" __global__ void __launch_bounds__(FC_GEMM_THREADS)                                                \
        fcgpu_gemm_dx(const float* dz, const float* w, float* dx, int M, int Nout, int Kin) {                   \
        fc_gemm_input_grad<fc_act_linear, false>(dz, w, dx, dx, M, Nout, Kin);                                   \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(FC_GEMM_THREADS) fcgpu_gemm_dw(                                 \
        const float* x, const float* dz, float* dw, float* db, int B, int Kin, int Nout, int has_db) {          \
        fc_gemm_weight_grad(x, dz, dw, db, B, Kin, Nout, has_db);                                                \
    }

#endif  // FCGPU_GEMM_CUH
