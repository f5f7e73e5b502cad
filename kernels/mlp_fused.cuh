// The whole forward of a small MLP in one kernel launch (float32 with FMA here; float16/bfloat16 on
// tensor cores below, when gemm_wmma.cuh is included first): a chain of Dense layers
// whose widths are all at most 128, y_{i+1} = act_i(y_i @ W_i + b_i), y_0 = x, in the manner of
// tiny-cuda-nn's fully fused MLP. Needs common.cuh, activations.cuh and gemm.cuh (its FC_GEMM_SHARED
// and FC_GEMM_DEV) before it; fcgpu/backends/cupy/fused_mlp.py generates, for each chain of widths
// and activations, a kernel that calls the templates below once per layer, and launches it.
//
// A block of 256 threads takes 32 rows of the batch. The rows' activations stay in shared memory
// between layers: two buffers of 32 rows x 129 floats (a row padded to an odd pitch, so reads of
// different rows at one k fall in different banks) ping-pong, 33 KB in all (under the 48 KB of
// static shared memory). The first step copies x's rows into one buffer (coalesced, rows past the
// batch as 0); each layer reads its input buffer and writes act(x @ W + b) into the other, one
// barrier a layer (the barrier also ends the reads of the buffer the next layer overwrites). The
// weights are read from global memory (small, cached in L1/L2), along the contiguous output index.
//
// A layer of OUT outputs gives thread t the column c = t % OUT and the row group g = t / OUT of
// RG = min(256 / OUT, 32) groups: rows g, g + RG, g + 2 RG, ... (RPT of them, in registers). A warp's
// reads of the input buffer are then broadcasts (one row) or two or so rows in distinct banks, and
// its weight reads consecutive words. Each output's sum runs over k in order 0, 1, ..., IN-1 with
// fmaf from 0, then adds the bias: exactly the own GEMM's (kernels/gemm.cuh) order and rounding (the
// tests find the fused forward equal to the chain of own-GEMM forwards bit for bit on the emulator).
//
// The last layer writes straight to out, rows past the batch not stored. A softmax last layer
// (a row activation) writes its logits z + b to shared memory instead, and after a barrier one
// thread a row runs fc_act_softmax::row_forward over the row there. Each layer may also keep its
// output y and its pre-activation z + b in global buffers (what a backward reads: the activation's
// backward_from), chosen per layer by runtime flags.
#ifndef FCGPU_MLP_FUSED_CUH
#define FCGPU_MLP_FUSED_CUH

#define FC_MLP_THREADS 256                 // threads a block
#define FC_MLP_ROWS 32                     // batch rows a block
#define FC_MLP_MAX_WIDTH 128               // the widest layer (input or output)
#define FC_MLP_LD (FC_MLP_MAX_WIDTH + 1)   // a shared row's padded pitch
#define FC_MLP_BUFFER (FC_MLP_ROWS * FC_MLP_LD)

// A layer's flags (one int a layer): it has a bias, keeps its output y, keeps z = x @ W + b.
#define FC_MLP_BIAS 1
#define FC_MLP_KEEP_Y 2
#define FC_MLP_KEEP_Z 4

// The two activation buffers of a block, declared in the generated kernel.
#define FC_MLP_BUFFERS()                                   \
    FC_GEMM_SHARED(float, fc_mlp_a, FC_MLP_BUFFER);        \
    FC_GEMM_SHARED(float, fc_mlp_b, FC_MLP_BUFFER)

// buf[r][k] = x[row0 + r][k] for the block's rows (0 past the batch), IN columns; then a barrier.
template <int IN, typename Buf>
FC_GEMM_DEV void fc_mlp_load(Buf& buf, const float* x, int row0, int B) {
    for (int e = threadIdx.x; e < FC_MLP_ROWS * IN; e += FC_MLP_THREADS) {
        int r = e / IN, k = e % IN;
        buf[r * FC_MLP_LD + k] = row0 + r < B ? x[(long long)(row0 + r) * IN + k] : 0.0f;
    }
    __syncthreads();
}

// The row groups of a layer of OUT outputs (see the header's comment).
template <int OUT> struct fc_mlp_split {
    static constexpr int RG = FC_MLP_THREADS / OUT < FC_MLP_ROWS ? FC_MLP_THREADS / OUT : FC_MLP_ROWS;
    static constexpr int RPT = (FC_MLP_ROWS + RG - 1) / RG;  // rows a thread
};

// acc[i] = sum over k of src[r_i][k] * w[k][c] (k in order, fmaf), r_i = g + RG i, for the calling
// thread's column c and group g. Only called by the threads with t < OUT * RG.
template <int IN, int OUT, typename Src>
FC_GEMM_DEV void fc_mlp_dot(Src& src, const float* w, int c, int g, float (&acc)[fc_mlp_split<OUT>::RPT]) {
    typedef fc_mlp_split<OUT> S;
#pragma unroll
    for (int i = 0; i < S::RPT; ++i) {
        acc[i] = 0.0f;
    }
    for (int k = 0; k < IN; ++k) {
        float wk = w[k * OUT + c];
#pragma unroll
        for (int i = 0; i < S::RPT; ++i) {
            int r = g + S::RG * i;
            if (S::RPT * S::RG == FC_MLP_ROWS || r < FC_MLP_ROWS) {
                acc[i] = fmaf(src[r * FC_MLP_LD + k], wk, acc[i]);
            }
        }
    }
}

// One layer: IN inputs from src, OUT outputs, activation Act (elementwise). Not LAST: act(s) into
// dst; LAST: into out (B, OUT). With the flags, y and z (B, OUT) keep act(s) and s. Ends with a
// barrier when not LAST (dst is the next layer's input).
template <int IN, int OUT, typename Act, bool LAST, typename Src, typename Dst>
FC_GEMM_DEV void fc_mlp_layer(Src& src, Dst& dst, const float* w, const float* b, float* y, float* z, float* out,
                              int row0, int B, int flags) {
    typedef fc_mlp_split<OUT> S;
    int t = threadIdx.x;
    if (t < OUT * S::RG) {
        int c = t % OUT, g = t / OUT;
        float acc[S::RPT];
        fc_mlp_dot<IN, OUT>(src, w, c, g, acc);
        float bias = (flags & FC_MLP_BIAS) ? b[c] : 0.0f;
#pragma unroll
        for (int i = 0; i < S::RPT; ++i) {
            int r = g + S::RG * i;
            if (r >= FC_MLP_ROWS) {
                continue;
            }
            float s = (flags & FC_MLP_BIAS) ? acc[i] + bias : acc[i];
            float v = Act::forward(s);
            bool live = row0 + r < B;
            long long at = (long long)(row0 + r) * OUT + c;
            if (LAST) {
                if (live) {
                    out[at] = v;
                }
            } else {
                dst[r * FC_MLP_LD + c] = v;
            }
            if (live && (flags & FC_MLP_KEEP_Y)) {
                y[at] = v;
            }
            if (live && (flags & FC_MLP_KEEP_Z)) {
                z[at] = s;
            }
        }
    }
    if (!LAST) {
        __syncthreads();
    }
}

// A shared buffer seen as a (rows, N) C-order array, for fc_act_softmax::row_forward's flat indices.
template <int N, typename Buf> struct fc_mlp_rows_view {
    Buf& buf;
    FC_GEMM_DEV float operator[](long long i) const { return buf[(int)(i / N) * FC_MLP_LD + (int)(i % N)]; }
};

// The last layer with a softmax: z = x @ W + b (kept when asked) into dst, a barrier, then thread
// r < 32 writes softmax of row r to out.
template <int IN, int OUT, typename Src, typename Dst>
FC_GEMM_DEV void fc_mlp_layer_softmax(Src& src, Dst& dst, const float* w, const float* b, float* z, float* out,
                                      int row0, int B, int flags) {
    typedef fc_mlp_split<OUT> S;
    int t = threadIdx.x;
    if (t < OUT * S::RG) {
        int c = t % OUT, g = t / OUT;
        float acc[S::RPT];
        fc_mlp_dot<IN, OUT>(src, w, c, g, acc);
        float bias = (flags & FC_MLP_BIAS) ? b[c] : 0.0f;
#pragma unroll
        for (int i = 0; i < S::RPT; ++i) {
            int r = g + S::RG * i;
            if (r >= FC_MLP_ROWS) {
                continue;
            }
            float s = (flags & FC_MLP_BIAS) ? acc[i] + bias : acc[i];
            dst[r * FC_MLP_LD + c] = s;
            if (row0 + r < B && (flags & FC_MLP_KEEP_Z)) {
                z[(long long)(row0 + r) * OUT + c] = s;
            }
        }
    }
    __syncthreads();
    if (t < FC_MLP_ROWS && row0 + t < B) {
        fc_mlp_rows_view<OUT, Dst> logits{dst};
        float* rows = out + (long long)row0 * OUT;
        fc_act_softmax::row_forward<float>(logits, logits, false, rows, (long long)t, (long long)OUT);
    }
}

// ---- float16 / bfloat16 on tensor cores (when gemm_wmma.cuh is included before this header) ----
// The same chain with T = fc_half or fc_bf16 activations, weights and outputs, WMMA 16 x 16 x 16
// fragments with float32 sums. A block is still 256 threads (8 warps) and 32 rows; widths are
// padded to multiples of 16 (PAD), the padding zero in the activation buffers and in the staged
// weights. Shared memory (43,008 bytes): two activation buffers of 32 x 136 T, a stage of 32 rows
// of W (32 x 136 T; W is staged 32 k-rows at a time, zero past IN and OUT), and the float tile of
// sums, 32 x 132 (pitches padded by 8 T / 4 floats: fragment pointers stay 32-byte aligned). Warp w
// owns the 16-row tile w % 2 and the 16-column tiles w / 2 and w / 2 + 4. After the k steps the
// accumulators go through the float tile, where each thread adds the bias, applies the activation
// and rounds once to T (the own WMMA GEMM's epilogue), for the next layer's buffer or for out.
#ifdef FCGPU_GEMM_WMMA_CUH

#define FC_MLP_PAD(n) (((n) + 15) / 16 * 16)
#define FC_MLP_HLD (FC_MLP_MAX_WIDTH + 8)  // an activation or weight row's pitch, in T
#define FC_MLP_CLD (FC_MLP_MAX_WIDTH + 4)  // the float tile's pitch
#define FC_MLP_KC 32                       // k-rows of W staged at a time

#define FC_MLP_WMMA_BUFFERS(T)                                              \
    FC_SHARED_ALIGNED(T, fc_mlp_a, FC_MLP_ROWS * FC_MLP_HLD);               \
    FC_SHARED_ALIGNED(T, fc_mlp_b, FC_MLP_ROWS * FC_MLP_HLD);               \
    FC_SHARED_ALIGNED(T, fc_mlp_ws, FC_MLP_KC * FC_MLP_HLD);                \
    FC_SHARED_ALIGNED(float, fc_mlp_cs, FC_MLP_ROWS * FC_MLP_CLD)

// buf[r][k] = x[row0 + r][k], 0 past the batch and in the padding columns [IN, PAD(IN)); a barrier.
template <typename T, int IN, typename Buf>
FC_GEMM_DEV void fc_mlp_wmma_load(Buf& buf, const T* x, int row0, int B) {
    constexpr int INP = FC_MLP_PAD(IN);
    for (int e = threadIdx.x; e < FC_MLP_ROWS * INP; e += FC_MLP_THREADS) {
        int r = e / INP, k = e % INP;
        buf[r * FC_MLP_HLD + k] = row0 + r < B && k < IN ? x[(long long)(row0 + r) * IN + k] : fc_from_float<T>(0.0f);
    }
    __syncthreads();
}

// cs[r][c] = sum over k of src[r][k] * w[k][c] for the 32 x PAD(OUT) tile; ends with a barrier.
template <typename T, int IN, int OUT, typename Src, typename Ws, typename Cs>
FC_GEMM_DEV void fc_mlp_wmma_dot(Src& src, Ws& ws, Cs& cs, const T* w) {
    using namespace nvcuda;
    constexpr int INP = FC_MLP_PAD(IN), OUTP = FC_MLP_PAD(OUT), NT = OUTP / 16;
    int t = threadIdx.x, warp = t / 32, mt = warp % 2, nt0 = warp / 2;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> af;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> bf;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2];
    wmma::fill_fragment(acc[0], 0.0f);
    wmma::fill_fragment(acc[1], 0.0f);
    for (int k0 = 0; k0 < INP; k0 += FC_MLP_KC) {
        int kn = INP - k0 < FC_MLP_KC ? INP - k0 : FC_MLP_KC;  // a multiple of 16
        for (int e = t; e < kn * OUTP; e += FC_MLP_THREADS) {
            int kk = e / OUTP, n = e % OUTP, k = k0 + kk;
            ws[kk * FC_MLP_HLD + n] = k < IN && n < OUT ? w[k * OUT + n] : fc_from_float<T>(0.0f);
        }
        __syncthreads();
        for (int kk = 0; kk < kn; kk += 16) {
            if (nt0 < NT) {  // uniform over the warp
                wmma::load_matrix_sync(af, src + (mt * 16 * FC_MLP_HLD + k0 + kk), FC_MLP_HLD);
#pragma unroll
                for (int j = 0; j < 2; ++j) {
                    int nt = nt0 + 4 * j;
                    if (nt < NT) {
                        wmma::load_matrix_sync(bf, ws + (kk * FC_MLP_HLD + nt * 16), FC_MLP_HLD);
                        wmma::mma_sync(acc[j], af, bf, acc[j]);
                    }
                }
            }
        }
        __syncthreads();  // the next step overwrites the stage
    }
#pragma unroll
    for (int j = 0; j < 2; ++j) {
        int nt = nt0 + 4 * j;
        if (nt < NT) {
            wmma::store_matrix_sync(cs + (mt * 16 * FC_MLP_CLD + nt * 16), acc[j], FC_MLP_CLD, wmma::mem_row_major);
        }
    }
    __syncthreads();
}

// One layer (see fc_mlp_layer): act(s) rounded to T into dst (the padding columns 0) or out.
template <typename T, int IN, int OUT, typename Act, bool LAST, typename Src, typename Dst, typename Ws, typename Cs>
FC_GEMM_DEV void fc_mlp_wmma_layer(Src& src, Dst& dst, Ws& ws, Cs& cs, const T* w, const T* b, T* y, T* z, T* out,
                                   int row0, int B, int flags) {
    constexpr int OUTP = FC_MLP_PAD(OUT);
    fc_mlp_wmma_dot<T, IN, OUT>(src, ws, cs, w);
    for (int e = threadIdx.x; e < FC_MLP_ROWS * OUTP; e += FC_MLP_THREADS) {
        int r = e / OUTP, c = e % OUTP;
        if (c >= OUT) {
            if (!LAST) {
                dst[r * FC_MLP_HLD + c] = fc_from_float<T>(0.0f);
            }
            continue;
        }
        float s = cs[r * FC_MLP_CLD + c];
        s = (flags & FC_MLP_BIAS) ? s + fc_to_float(b[c]) : s;
        T v = fc_from_float<T>(Act::forward(s));
        bool live = row0 + r < B;
        long long at = (long long)(row0 + r) * OUT + c;
        if (LAST) {
            if (live) {
                out[at] = v;
            }
        } else {
            dst[r * FC_MLP_HLD + c] = v;
        }
        if (live && (flags & FC_MLP_KEEP_Y)) {
            y[at] = v;
        }
        if (live && (flags & FC_MLP_KEEP_Z)) {
            z[at] = fc_from_float<T>(s);
        }
    }
    if (!LAST) {
        __syncthreads();
    }
}

// out as float rows for fc_act_softmax::row_forward<float>: each value rounded once to T.
template <typename T> struct fc_mlp_rounding_rows {
    T* p;
    struct ref {
        T* q;
        FC_GEMM_DEV void operator=(float v) const { *q = fc_from_float<T>(v); }
    };
    FC_GEMM_DEV ref operator[](long long i) const { return ref{p + i}; }
};

// A float tile seen as a (rows, N) C-order array.
template <int N, typename Buf> struct fc_mlp_float_rows {
    Buf& buf;
    FC_GEMM_DEV float operator[](long long i) const { return buf[(int)(i / N) * FC_MLP_CLD + (int)(i % N)]; }
};

// The last layer with a softmax: s = z + b in the float tile (kept as T when asked), a barrier, then
// thread r < 32 writes softmax of row r (computed in float) to out.
template <typename T, int IN, int OUT, typename Src, typename Dst, typename Ws, typename Cs>
FC_GEMM_DEV void fc_mlp_wmma_layer_softmax(Src& src, Dst&, Ws& ws, Cs& cs, const T* w, const T* b, T* z, T* out,
                                           int row0, int B, int flags) {
    fc_mlp_wmma_dot<T, IN, OUT>(src, ws, cs, w);
    int t = threadIdx.x;
    for (int e = t; e < FC_MLP_ROWS * OUT; e += FC_MLP_THREADS) {
        int r = e / OUT, c = e % OUT;
        float s = cs[r * FC_MLP_CLD + c];
        s = (flags & FC_MLP_BIAS) ? s + fc_to_float(b[c]) : s;
        cs[r * FC_MLP_CLD + c] = s;
        if (row0 + r < B && (flags & FC_MLP_KEEP_Z)) {
            z[(long long)(row0 + r) * OUT + c] = fc_from_float<T>(s);
        }
    }
    __syncthreads();
    if (t < FC_MLP_ROWS && row0 + t < B) {
        fc_mlp_float_rows<OUT, Cs> logits{cs};
        fc_mlp_rounding_rows<T> rows{out + (long long)row0 * OUT};
        fc_act_softmax::row_forward<float>(logits, logits, false, rows, (long long)t, (long long)OUT);
    }
}

#endif  // FCGPU_GEMM_WMMA_CUH

#endif  // FCGPU_MLP_FUSED_CUH
