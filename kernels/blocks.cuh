// Block- and warp-level kernels: softmax rows one warp a row (warp-shuffle reductions), and the
// loss steps' sums reduced within each block and then over the grid in block order (one partial a
// block, deterministic). CuPy launches an ElementwiseKernel with block = min(block_size, size) and
// grid = ceil(size / block) (cupy/cuda/function.pyx, linear_launch): the backend passes a size that
// is a whole number of warps (rows) or of blocks (losses), so every thread runs its CUPY_FOR loop
// body exactly once or, for rows, every lane of a warp runs the same number of times, and the
// barriers and shuffles below are reached by all the threads they name.
//
// FC_BLOCKS: the device (NVRTC/nvcc) and the host block emulator (tests/support/block_emulator),
// which runs a block's threads with barriers and shuffles emulated. Without it (the stand-in's
// sequential host loop) each function runs a sequential equivalent: lane 0 of a row does the row.
#ifndef FCGPU_BLOCKS_CUH
#define FCGPU_BLOCKS_CUH

#if defined(__CUDACC__) || defined(FC_BLOCK_EMULATOR)
#define FC_BLOCKS 1
#define FC_BLOCK_FN __device__ __forceinline__
#ifdef FC_BLOCK_EMULATOR  // a block-shared array whose reads and writes the emulator records per phase
#define FC_SHARED(type, name, n) static fc_emu::shared_array<type, n> name(#name)
#else
#define FC_SHARED(type, name, n) __shared__ type name[n]
#endif
#else
#define FC_BLOCK_FN FC_FN
#endif

#define FC_WARP 32
#define FC_LOSS_BLOCK 256  // threads a block of the loss-step kernels (the backend's block_size)
#define FC_FULL_MASK 0xffffffffu
#define FC_NO_INDEX 0x7fffffffffffffffLL

#ifdef FC_BLOCKS
// Sum over the 32 lanes of a warp; every lane gets the total (a butterfly: the same order on every lane).
template <typename A> FC_BLOCK_FN A fc_warp_sum(A v) {
    for (int o = FC_WARP / 2; o > 0; o >>= 1) {
        v += __shfl_xor_sync(FC_FULL_MASK, v, o);
    }
    return v;
}

// The first maximum over the warp, NaN first (the first NaN wins, as a max that propagates NaN);
// lanes holding no element carry index FC_NO_INDEX. Every lane gets the same (m, best).
template <typename A> FC_BLOCK_FN void fc_warp_argmax(A& m, long long& best) {
    for (int o = FC_WARP / 2; o > 0; o >>= 1) {
        A om = __shfl_xor_sync(FC_FULL_MASK, m, o);
        long long ob = __shfl_xor_sync(FC_FULL_MASK, best, o);
        bool take;
        if (ob == FC_NO_INDEX) {
            take = false;
        } else if (best == FC_NO_INDEX) {
            take = true;
        } else if (om != om) {
            take = m == m || ob < best;
        } else if (m != m) {
            take = false;
        } else {
            take = om > m || (om == m && ob < best);
        }
        if (take) {
            m = om;
            best = ob;
        }
    }
}

// The lane's first maximum of v over its columns lane, lane + 32, ... (NaN first).
#define FC_LANE_ARGMAX(A, m, best, value_of_c)                     \
    A m = A(0);                                                    \
    long long best = FC_NO_INDEX;                                  \
    for (long long c = lane; c < ncols; c += FC_WARP) {            \
        A v = (value_of_c);                                        \
        if (best == FC_NO_INDEX || v > m || (v != v && m == m)) { \
            m = v;                                                 \
            best = c;                                              \
        }                                                          \
    }

// Sums (v, w) over the block (warps by shuffles, then warp 0's lane 0 over the warps in order) and
// over the grid: each block writes its partial, and the last block to finish sums the partials in
// block order into total[0], total[1] and resets the ticket; true for that one thread (thread 0 of
// the last block), which then finishes the launch. partials: 2 x gridDim.x doubles; ticket: zero
// before the launch, zero after.
FC_BLOCK_FN bool fc_grid_reduce2(double v, double w, double* partials, unsigned int* ticket, double* total) {
    FC_SHARED(double, warp_v, FC_LOSS_BLOCK / FC_WARP);
    FC_SHARED(double, warp_w, FC_LOSS_BLOCK / FC_WARP);
    FC_SHARED(bool, last, 1);
    int lane = threadIdx.x % FC_WARP, warp = threadIdx.x / FC_WARP;
    v = fc_warp_sum(v);
    w = fc_warp_sum(w);
    if (lane == 0) {
        warp_v[warp] = v;
        warp_w[warp] = w;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        double bv = 0.0, bw = 0.0;
        for (int k = 0; k < (int)(blockDim.x / FC_WARP); ++k) {
            bv += warp_v[k];
            bw += warp_w[k];
        }
        partials[2 * blockIdx.x] = bv;
        partials[2 * blockIdx.x + 1] = bw;
        __threadfence();
        last[0] = atomicAdd(ticket, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (last[0] && threadIdx.x == 0) {
        volatile double* vp = partials;
        double tv = 0.0, tw = 0.0;
        for (unsigned int b = 0; b < gridDim.x; ++b) {
            tv += vp[2 * b];
            tw += vp[2 * b + 1];
        }
        total[0] = tv;
        total[1] = tw;
        *ticket = 0u;
        return true;
    }
    return false;
}
// The warp's log-sum-exp of row z[base, base + ncols), formed as the row version forms it (max,
// shifted exp sum, rounded to T), and the row's first argmax into *first: every lane gets both.
template <typename T, typename Z>
FC_BLOCK_FN T fc_warp_row_lse(const Z& z, long long base, long long ncols, long long lane, long long* first) {
    typedef typename fc_acc<T>::type A;
    FC_LANE_ARGMAX(A, m, best, A(z[base + c]))
    fc_warp_argmax(m, best);
    A shift = fc_isfinite(m) ? m : A(0);
    A s = A(0);
    for (long long c = lane; c < ncols; c += FC_WARP) {
        s += fc_exp(A(z[base + c]) - shift);
    }
    *first = best;
    return T(fc_log(fc_warp_sum(s)) + shift);
}
#endif  // FC_BLOCKS

// -- softmax cross-entropy, one warp a row: i = row x 32 + lane (size = B x 32) --------------------
// sw, weighted: the rows' sample weights (read only when weighted), multiplying a row's gradient
// and loss (fc_softmax_xent_row_ids).
template <typename T, typename Z, typename L, typename G, typename W>
FC_BLOCK_FN void fc_softmax_xent_warp_ids(const Z& z, const L& labels, G& dz, long long i, long long ncols,
                                          double scale, double weight, bool count, double* acc, const W& sw,
                                          bool weighted) {
    long long row = i / FC_WARP, lane = i % FC_WARP;
    double rw = weighted ? double(sw[row]) : 1.0;
#ifdef FC_BLOCKS
    typedef typename fc_acc<T>::type A;
    long long base = row * ncols, label = (long long)labels[row], best;
    T lse = fc_warp_row_lse<T>(z, base, ncols, lane, &best);
    for (long long c = lane; c < ncols; c += FC_WARP) {
        dz[base + c] = fc_softmax_xent_grad(T(z[base + c]), lse, c == label ? T(1) : T(0), scale * rw);
    }
    if (lane == 0) {
        A picked = (label >= 0 && label < ncols) ? A(z[base + label]) : A(0);
        fc_atomic_add(&acc[0], double(A(lse) - picked) * (weight * rw));
        if (count && best == label) {
            fc_atomic_add(&acc[1], weight);
        }
    }
#else
    if (lane == 0) {
        fc_softmax_xent_row_ids<T>(z, dz, row, ncols, (long long)labels[row], scale, weight, count, acc, rw);
    }
#endif
}

template <typename T, typename Z, typename P, typename G, typename W>
FC_BLOCK_FN void fc_softmax_xent_warp_probs(const Z& z, const P& t, G& dz, long long i, long long ncols, double scale,
                                            double weight, bool count, double* acc, const W& sw, bool weighted) {
    long long row = i / FC_WARP, lane = i % FC_WARP;
    double rw = weighted ? double(sw[row]) : 1.0;
#ifdef FC_BLOCKS
    typedef typename fc_acc<T>::type A;
    long long base = row * ncols, best;
    T lse = fc_warp_row_lse<T>(z, base, ncols, lane, &best);
    // The targets' first argmax, as the row version takes it: strictly greater than t[0] onwards
    // (NaN never is), so a NaN t[0] keeps class 0.
    A top = A(0), loss = A(0);
    long long truth = FC_NO_INDEX;
    for (long long c = lane; c < ncols; c += FC_WARP) {
        A target = A(t[base + c]);
        if (target == target && (truth == FC_NO_INDEX || target > top)) {
            top = target;
            truth = c;
        }
        loss += target * (A(lse) - A(z[base + c]));
        dz[base + c] = fc_softmax_xent_grad(T(z[base + c]), lse, t[base + c], scale * rw);
    }
    fc_warp_argmax(top, truth);
    loss = fc_warp_sum(loss);
    if (lane == 0) {
        if (A(t[base]) != A(t[base]) || truth == FC_NO_INDEX) {
            truth = 0;
        }
        fc_atomic_add(&acc[0], double(loss) * (weight * rw));
        if (count && best == truth) {
            fc_atomic_add(&acc[1], weight);
        }
    }
#else
    if (lane == 0) {
        fc_softmax_xent_row_probs<T>(z, t, dz, row, ncols, scale, weight, count, acc, rw);
    }
#endif
}

// -- the softmax activation, one warp a row ---------------------------------------------------------
template <typename T, typename Z, typename B, typename Y>
FC_BLOCK_FN void fc_softmax_warp_forward(const Z& z, const B& b, bool has_bias, Y& y, long long i, long long ncols) {
    long long row = i / FC_WARP, lane = i % FC_WARP;
#ifdef FC_BLOCKS
    typedef typename fc_acc<T>::type A;
    long long base = row * ncols;
    FC_LANE_ARGMAX(A, m, best, A(z[base + c]) + (has_bias ? A(b[c]) : A(0)))
    fc_warp_argmax(m, best);
    A s = A(0);
    for (long long c = lane; c < ncols; c += FC_WARP) {
        s += fc_exp(A(z[base + c]) + (has_bias ? A(b[c]) : A(0)) - m);
    }
    s = fc_warp_sum(s);
    for (long long c = lane; c < ncols; c += FC_WARP) {
        y[base + c] = T(fc_exp(A(z[base + c]) + (has_bias ? A(b[c]) : A(0)) - m) / s);
    }
#else
    if (lane == 0) {
        fc_act_softmax::row_forward<T>(z, b, has_bias, y, row, ncols);
    }
#endif
}

template <typename T, typename Y, typename D, typename G>
FC_BLOCK_FN void fc_softmax_warp_backward(const Y& y, const D& dy, G& dz, long long i, long long ncols) {
    long long row = i / FC_WARP, lane = i % FC_WARP;
#ifdef FC_BLOCKS
    typedef typename fc_acc<T>::type A;
    long long base = row * ncols;
    A dot = A(0);
    for (long long c = lane; c < ncols; c += FC_WARP) {
        dot += A(dy[base + c]) * A(y[base + c]);
    }
    dot = fc_warp_sum(dot);
    for (long long c = lane; c < ncols; c += FC_WARP) {
        dz[base + c] = T(A(y[base + c]) * (A(dy[base + c]) - dot));
    }
#else
    if (lane == 0) {
        fc_act_softmax::row_backward<T>(y, dy, dz, row, ncols);
    }
#endif
}

// -- the loss steps over n elements: thread i of `threads` takes elements i, i + threads, ... -------
// Each term returns the gradient of one element, its scale times w (the element's row's sample
// weight, 1 unweighted), and adds its loss times w (and its correct count, unweighted) in double.
struct fc_mse_term {
    double scale;
    FC_FN explicit fc_mse_term(double s) : scale(s) {}
    template <typename T, typename Y> FC_FN T operator()(T p, Y y, double w, double* loss, double*) const {
        typedef typename fc_acc<T>::type A;
        A d = A(p) - A(y);
        *loss += double(d * d) * w;
        return fc_mse_grad(p, y, scale * w);
    }
};

struct fc_mae_term {
    double scale;
    FC_FN explicit fc_mae_term(double s) : scale(s) {}
    template <typename T, typename Y> FC_FN T operator()(T p, Y y, double w, double* loss, double*) const {
        typedef typename fc_acc<T>::type A;
        *loss += double(fc_abs(A(p) - A(y))) * w;
        return fc_mae_grad(p, y, scale * w);
    }
};

struct fc_huber_term {
    double delta, scale;
    FC_FN fc_huber_term(double d, double s) : delta(d), scale(s) {}
    template <typename T, typename Y> FC_FN T operator()(T p, Y y, double w, double* loss, double*) const {
        typedef typename fc_acc<T>::type A;
        *loss += double(fc_huber_value(A(p) - A(y), A(delta))) * w;
        return fc_huber_grad(p, y, delta, scale * w);
    }
};

struct fc_bce_logits_term {
    double scale;
    bool count;
    FC_FN fc_bce_logits_term(double s, bool c) : scale(s), count(c) {}
    template <typename T, typename Y> FC_FN T operator()(T z, Y y, double w, double* loss, double* correct) const {
        typedef typename fc_acc<T>::type A;
        *loss += double(A(fc_bce_logits_loss(z, y))) * w;
        if (count && ((A(z) > A(0)) == (A(y) > A(0.5)))) {
            *correct += 1.0;
        }
        return fc_bce_logits_grad(z, y, scale * w);
    }
};

// sw, weighted, cols: the rows' sample weights (read only when weighted; element e is in row e / cols).
template <typename T, typename Term, typename P, typename Y, typename G, typename W>
FC_BLOCK_FN void fc_loss_grid(const Term& term, const P& p, const Y& y, G& g, long long n, long long i,
                              long long threads, double weight, double* partials, unsigned int* ticket, double* acc,
                              const W& sw, bool weighted, long long cols) {
    double loss = 0.0, correct = 0.0;
    for (long long e = i; e < n; e += threads) {
        g[e] = term(T(p[e]), y[e], weighted ? double(sw[e / cols]) : 1.0, &loss, &correct);
    }
#ifdef FC_BLOCKS
    double total[2];
    if (fc_grid_reduce2(loss * weight, correct * weight, partials, ticket, total)) {
        acc[0] += total[0];
        acc[1] += total[1];
    }
#else
    acc[0] += loss * weight;
    acc[1] += correct * weight;
#endif
}

// Whether every one of n elements is finite, into ok[0] (one launch, the overflow check of loss
// scaling): non-finite elements counted per thread, per block, then over the grid as the loss sums.
template <typename T, typename G>
FC_BLOCK_FN void fc_all_finite_grid(const G& g, long long n, long long i, long long threads, double* partials,
                                    unsigned int* ticket, bool* ok) {
    typedef typename fc_acc<T>::type A;
    double bad = 0.0;
    for (long long e = i; e < n; e += threads) {
        bad += fc_isfinite(A(g[e])) ? 0.0 : 1.0;
    }
#ifdef FC_BLOCKS
    double total[2];
    if (fc_grid_reduce2(bad, 0.0, partials, ticket, total)) {
        ok[0] = total[0] == 0.0;
    }
#else
    if (i == 0) {
        ok[0] = true;
    }
    if (bad != 0.0) {
        ok[0] = false;
    }
#endif
}

#endif  // FCGPU_BLOCKS_CUH
