// The whole forward of a small MLP in one kernel launch (float32, FMA): a chain of Dense layers
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
// fmaf from 0, then adds the bias: exactly the own GEMM's (kernels/gemm.cuh) order and rounding, so
// a fused forward equals the chain of own-GEMM forwards bit for bit.
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

#endif  // FCGPU_MLP_FUSED_CUH
