// fcgpu's own GEMMs for Dense layers (float32, FMA), launched as a CuPy RawModule, not through cuBLAS
// (whose CuPy wrappers refuse to run while a stream is captured into a CUDA graph). Three kernels:
//   forward      y = act(x @ W + b), optionally also z = x @ W + b (an activation whose backward reads z)
//   input grad   dx = dz @ W.T, optionally times the previous layer's act'(kept) (then dx is its dz)
//   weight grad  dW = x.T @ dz and db = dz.sum(0) in the same launch (block-reduced, no atomics)
// with two variants: the forward and the input gradient with a Dropout in the epilogue (the Dropout
// after this Dense: yd = dropout(y) written beside y; the previous layer's Dropout: its backward mask
// applied to dz @ W.T before act'), the mask drawn by fc_dropout (kernels/random.cuh) exactly as the
// elementwise kernels draw it; and a split-K weight gradient (the batch cut into S slices, partial dW
// and db per slice into a float workspace, then a reduce kernel summing the slices in order).
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

// Tile `tile` of C: tiles are numbered row-major over ceil(M / 64) x ceil(N / 64).
FC_GEMM_DEV void fc_gemm_tile_origin(int tile, int N, int& m0, int& n0) {
    int tiles_n = (N + FC_GEMM_TILE - 1) / FC_GEMM_TILE;
    m0 = (tile / tiles_n) * FC_GEMM_TILE;
    n0 = (tile % tiles_n) * FC_GEMM_TILE;
}

// The block's tile of C: block b computes tile b.
FC_GEMM_DEV void fc_gemm_block_origin(int N, int& m0, int& n0) { fc_gemm_tile_origin((int)blockIdx.x, N, m0, n0); }

// The Dropout of an epilogue: element (m, n) of a (rows, cols) output, flat index at = m * cols + n,
// keeps or drops by word offset + at of the Philox stream of (seed, step), step = the step given plus
// ctr[0] when ctr (a device int64 array: a captured step's counter) is not null. As the elementwise
// kernels (fc_dropout, index offset + i; their _dev variants' step + ctr[0]): the same mask, bit for bit.
struct fc_gemm_dropout {
    unsigned long long seed, step;
    long long offset;
    unsigned int threshold;
    double scale;
};

FC_GEMM_DEV fc_gemm_dropout fc_gemm_dropout_args(unsigned long long seed, unsigned long long step, const long long* ctr,
                                                 long long offset, unsigned int threshold, double scale) {
    fc_gemm_dropout d = {seed, ctr ? step + (unsigned long long)ctr[0] : step, offset, threshold, scale};
    return d;
}

// fc_dropout<float> of v, element `at`: 0 where dropped, else v * scale rounded once to float.
FC_GEMM_DEV float fc_gemm_drop(const fc_gemm_dropout& d, float v, long long at) {
    return fc_dropout(v, d.seed, d.step, (unsigned long long)(d.offset + at), d.threshold, d.scale);
}

// y (M, N) = act(x (M, K) @ w (K, N) + b); z = x @ w + b too when keep_z. Without a bias b is not read.
// With DROP also yd (M, N) = dropout(y) (fc_bias_act_dropout_forward's yd); y stays for the Dense's backward.
template <typename Act, bool DROP>
FC_GEMM_DEV void fc_gemm_forward(const float* x, const float* w, const float* b, float* y, float* z, float* yd, int M,
                                 int K, int N, int has_bias, int keep_z, fc_gemm_dropout drop) {
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
                float v = Act::forward(s);
                y[at] = v;
                if (DROP) {
                    yd[at] = fc_gemm_drop(drop, v, at);
                }
            }
        }
    }
}

// dx (M, Kin) = dz (M, Nout) @ w (Kin, Nout).T; with PREV, dx = Act::backward(kept, dz @ w.T), the
// previous layer's dz from what its forward kept (its y, or its z for a backward from z). With DROP
// (and PREV) the previous layer's Dropout backward comes first: dx = Act::backward(kept, dropout(dz @ w.T)),
// fc_act_dropout_backward of the product.
template <typename Act, bool PREV, bool DROP>
FC_GEMM_DEV void fc_gemm_input_grad(const float* dz, const float* w, const float* kept, float* dx, int M, int Nout,
                                    int Kin, fc_gemm_dropout drop) {
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
                float g = DROP ? fc_gemm_drop(drop, acc[i][j], at) : acc[i][j];
                dx[at] = PREV ? Act::backward(kept[at], g) : g;
            }
        }
    }
}

// dw (Kin, Nout) = x (B, Kin).T @ dz (B, Nout) over tile `tile` of dw; db (Nout) = dz.sum(0) when has_db,
// written by the blocks of the first tile row: each thread's partial column sum (collected while
// staging dz), the four partials of a column added in shared memory in a fixed order (deterministic,
// no atomics).
FC_GEMM_DEV void fc_gemm_weight_grad(const float* x, const float* dz, float* dw, float* db, int B, int Kin, int Nout,
                                     int has_db, int tile) {
    FC_GEMM_SHARED(float, fc_gemm_colsums, FC_GEMM_THREADS);
    int m0, n0;
    fc_gemm_tile_origin(tile, Nout, m0, n0);
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

// Split-K: the batch (B rows) cut into slices of R rows (the last one shorter), S = ceil(B / R). Block
// b computes tile b % tiles of slice s = b / tiles (tiles = ceil(Kin / 64) ceil(Nout / 64)) over the
// rows [s R, min(B, (s + 1) R)): its partial dw into ws[s] (Kin, Nout) of the workspace's first
// S Kin Nout floats, its partial db into row s of the (S, Nout) floats after them.
struct fc_gemm_slice {
    long long row0, dw_at, db_at;
    int rows, tile;
};

FC_GEMM_DEV fc_gemm_slice fc_gemm_splitk_slice(int B, int Kin, int Nout, int R) {
    int tiles = ((Kin + FC_GEMM_TILE - 1) / FC_GEMM_TILE) * ((Nout + FC_GEMM_TILE - 1) / FC_GEMM_TILE);
    int s = (int)blockIdx.x / tiles, slices = (B + R - 1) / R;
    long long kn = (long long)Kin * Nout;
    fc_gemm_slice r;
    r.row0 = (long long)s * R;
    r.rows = (int)(B - r.row0 < R ? B - r.row0 : R);
    r.tile = (int)blockIdx.x % tiles;
    r.dw_at = s * kn;
    r.db_at = slices * kn + (long long)s * Nout;
    return r;
}

// The reduce of split-K: element e of the outputs (e < Kin Nout: dw's flat element e; then db's
// element e - Kin Nout when has_db) is the sum of its S partials in slice order 0, 1, ..., S - 1 in
// float (deterministic, no atomics), converted once by Cvt::cvt to the output type O. One thread an element.
template <typename O, typename Cvt>
FC_GEMM_DEV void fc_gemm_splitk_reduce(const float* ws, O* dw, O* db, int S, int Kin, int Nout, int has_db) {
    long long kn = (long long)Kin * Nout;
    long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= kn + (has_db ? Nout : 0)) {
        return;
    }
    const float* p = e < kn ? ws + e : ws + (long long)S * kn + (e - kn);
    long long stride = e < kn ? kn : (long long)Nout;
    float sum = p[0];
    for (int s = 1; s < S; ++s) {
        sum += p[s * stride];
    }
    if (e < kn) {
        dw[e] = Cvt::cvt(sum);
    } else {
        db[e - kn] = Cvt::cvt(sum);
    }
}

struct fc_gemm_to_float {
    static FC_GEMM_DEV float cvt(float v) { return v; }
};

#define FC_GEMM_REDUCE_THREADS 256  // the reduce kernel's block

// The dropout arguments of a kernel: the Philox key, step and device counter (null: none), the
// output's first element's index in the stream, threshold and scale (fcgpu.backends.philox).
#define FC_GEMM_DROPOUT_PARAMS \
    unsigned long long seed, unsigned long long step, const long long *ctr, long long offset, unsigned int threshold, \
        double scale
#define FC_GEMM_DROPOUT_ARGS fc_gemm_dropout_args(seed, step, ctr, offset, threshold, scale)

// The kernels of one activation functor (NAME the activation's table name, ACT its functor):
// fcgpu_gemm_fwd_NAME and fcgpu_gemm_dx_NAME (the input gradient times that activation's derivative),
// and their Dropout variants fcgpu_gemm_fwd_drop_NAME (also yd = dropout(y)) and fcgpu_gemm_dx_drop_NAME
// (the previous Dropout's backward, then the derivative).
#define FC_GEMM_ACTIVATION_KERNELS(NAME, ACT)                                                                    \
    extern "C" __global__ void __launch_bounds__(FC_GEMM_THREADS)                                                \
        fcgpu_gemm_fwd_##NAME(const float* x, const float* w, const float* b, float* y, float* z, int M, int K, \
                              int N, int has_bias, int keep_z) {                                                 \
        fc_gemm_forward<ACT, false>(x, w, b, y, z, y, M, K, N, has_bias, keep_z, fc_gemm_dropout());             \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(FC_GEMM_THREADS)                                                \
        fcgpu_gemm_dx_##NAME(const float* dz, const float* w, const float* kept, float* dx, int M, int Nout,    \
                             int Kin) {                                                                          \
        fc_gemm_input_grad<ACT, true, false>(dz, w, kept, dx, M, Nout, Kin, fc_gemm_dropout());                  \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(FC_GEMM_THREADS) fcgpu_gemm_fwd_drop_##NAME(                    \
        const float* x, const float* w, const float* b, float* y, float* z, float* yd, int M, int K, int N,     \
        int has_bias, int keep_z, FC_GEMM_DROPOUT_PARAMS) {                                                      \
        fc_gemm_forward<ACT, true>(x, w, b, y, z, yd, M, K, N, has_bias, keep_z, FC_GEMM_DROPOUT_ARGS);         \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(FC_GEMM_THREADS) fcgpu_gemm_dx_drop_##NAME(                     \
        const float* dz, const float* w, const float* kept, float* dx, int M, int Nout, int Kin,                \
        FC_GEMM_DROPOUT_PARAMS) {                                                                                \
        fc_gemm_input_grad<ACT, true, true>(dz, w, kept, dx, M, Nout, Kin, FC_GEMM_DROPOUT_ARGS);               \
    }

// The plain input gradient (no derivative: the first layer, or a previous layer without
// activation) and the weight gradient, float32; the split-K weight gradient's two kernels (partials
// into the workspace ws, rows_per_slice R; then their reduce into dw and db).
#define FC_GEMM_F32_KERNELS()                                                                                    \
    extern "C" __global__ void __launch_bounds__(FC_GEMM_THREADS)                                                \
        fcgpu_gemm_dx(const float* dz, const float* w, float* dx, int M, int Nout, int Kin) {                   \
        fc_gemm_input_grad<fc_act_linear, false, false>(dz, w, dx, dx, M, Nout, Kin, fc_gemm_dropout());         \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(FC_GEMM_THREADS) fcgpu_gemm_dw(                                 \
        const float* x, const float* dz, float* dw, float* db, int B, int Kin, int Nout, int has_db) {          \
        fc_gemm_weight_grad(x, dz, dw, db, B, Kin, Nout, has_db, (int)blockIdx.x);                               \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(FC_GEMM_THREADS) fcgpu_gemm_dw_splitk(                          \
        const float* x, const float* dz, float* ws, int B, int Kin, int Nout, int has_db, int rows_per_slice) { \
        fc_gemm_slice sl = fc_gemm_splitk_slice(B, Kin, Nout, rows_per_slice);                                   \
        fc_gemm_weight_grad(x + sl.row0 * Kin, dz + sl.row0 * Nout, ws + sl.dw_at, ws + sl.db_at, sl.rows, Kin,  \
                            Nout, has_db, sl.tile);                                                              \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(FC_GEMM_REDUCE_THREADS) fcgpu_gemm_dw_reduce(                   \
        const float* ws, float* dw, float* db, int S, int Kin, int Nout, int has_db) {                          \
        fc_gemm_splitk_reduce<float, fc_gemm_to_float>(ws, dw, db, S, Kin, Nout, has_db);                        \
    }

#endif  // FCGPU_GEMM_CUH
