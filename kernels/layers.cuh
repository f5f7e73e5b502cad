// The layers beyond Dense: Keras's ReLU/LeakyReLU/ELU/PReLU with their arguments, GaussianNoise
// (Philox, as dropout), Normalization, and BatchNormalization / LayerNormalization, whose
// statistics are reductions shaped for a GPU:
// - column sums over the batch (BatchNormalization's statistics, its and LayerNormalization's
//   parameter gradients): a block of FC_COL_BLOCK threads takes FC_WARP adjacent columns, lane l
//   column l (coalesced reads of a row), warp w rows w, w + 8, ...; the warps' partial sums meet in
//   shared memory and warp 0 adds them in warp order (deterministic). Launched with
//   size = ceil(N / 32) x FC_COL_BLOCK and block_size = FC_COL_BLOCK;
// - row statistics (LayerNormalization): one warp a row, as the softmax rows of blocks.cuh.
// Without FC_BLOCKS (the stand-in's sequential host loop) each runs its sequential equivalent.
// Statistics are biased (divided by the count) and formed in two passes (mean, then squared
// deviations from it), as PyTorch's; every sum is in double.
#ifndef FCGPU_LAYERS_CUH
#define FCGPU_LAYERS_CUH

#define FC_COL_BLOCK 256
#define FC_COL_WARPS (FC_COL_BLOCK / FC_WARP)

// -- ReLU(max_value, negative_slope, threshold) as keras.activations.relu: ---------------------------
// y = x for threshold < x (clipped to [0, max_value] when a max is given), else 0; minus
// negative_slope * (threshold - x) where x < threshold. Backward from x, as torch's autograd of
// that expression: 1 where threshold < x (and inside [0, max_value]), negative_slope below.
template <typename A> FC_FN A fc_relu_param_forward(A x, A max_value, bool has_max, A slope, A threshold) {
    A t = x > threshold ? x : A(0);
    if (has_max) {
        t = t < A(0) ? A(0) : (t > max_value ? max_value : t);
    }
    A below = threshold - x;
    return below > A(0) ? t - slope * below : t;
}
template <typename A> FC_FN A fc_relu_param_backward(A x, A dy, A max_value, bool has_max, A slope, A threshold) {
    A g = x > threshold ? A(1) : A(0);
    if (has_max && (x < A(0) || x > max_value)) {
        g = A(0);
    }
    if (threshold - x > A(0)) {
        g += slope;
    }
    return dy * g;
}

// ELU(alpha) as torch.nn.functional.elu: x > 0 ? x : alpha * expm1(x); backward from x.
template <typename A> FC_FN A fc_elu_alpha_forward(A x, A alpha) { return x > A(0) ? x : alpha * fc_expm1(x); }
template <typename A> FC_FN A fc_elu_alpha_backward(A x, A dy, A alpha) {
    return x > A(0) ? dy : dy * alpha * fc_exp(x);
}

// The same on a kernel's element type T (computed in its arithmetic type, rounded once).
template <typename T> FC_FN T fc_relu_param(T x, double max_value, bool has_max, double slope, double threshold) {
    typedef typename fc_acc<T>::type A;
    return T(fc_relu_param_forward(A(x), A(max_value), has_max, A(slope), A(threshold)));
}
template <typename T>
FC_FN T fc_relu_param_grad(T x, T dy, double max_value, bool has_max, double slope, double threshold) {
    typedef typename fc_acc<T>::type A;
    return T(fc_relu_param_backward(A(x), A(dy), A(max_value), has_max, A(slope), A(threshold)));
}
template <typename T> FC_FN T fc_elu_alpha(T x, double alpha) {
    typedef typename fc_acc<T>::type A;
    return T(fc_elu_alpha_forward(A(x), A(alpha)));
}
template <typename T> FC_FN T fc_elu_alpha_grad(T x, T dy, double alpha) {
    typedef typename fc_acc<T>::type A;
    return T(fc_elu_alpha_backward(A(x), A(dy), A(alpha)));
}

// PReLU: y = x > 0 ? x : alpha * x (alpha one per feature, broadcast over rows); backward gives dx
// and the element's term of dalpha (x * dy where x < 0), summed over rows afterwards.
template <typename T> FC_FN T fc_prelu_forward(T x, T alpha) {
    typedef typename fc_acc<T>::type A;
    return A(x) > A(0) ? x : T(A(alpha) * A(x));
}
template <typename T> FC_FN void fc_prelu_backward(T x, T dy, T alpha, T& dx, T& dalpha) {
    typedef typename fc_acc<T>::type A;
    bool positive = A(x) > A(0);
    dx = positive ? dy : T(A(alpha) * A(dy));
    dalpha = positive ? T(A(0)) : T(A(x) * A(dy));
}

// -- GaussianNoise: y = x + stddev * z, z standard normal from words 2e and 2e + 1 of the Philox
// stream of (seed, step) by Box-Muller in double: u1 = (w0 + 1) / 2^32 in (0, 1], u2 = w1 / 2^32,
// z = sqrt(-2 log u1) cos(2 pi u2). The NumPy backend forms the same z from its own Philox.
#define FC_TWO_PI 6.283185307179586476925286766559
FC_FN double fc_philox_normal(unsigned long long seed, unsigned long long step, unsigned long long index) {
    double w0 = (double)fc_philox_word(seed, step, 2 * index);
    double w1 = (double)fc_philox_word(seed, step, 2 * index + 1);
    double u1 = (w0 + 1.0) * 2.3283064365386962890625e-10;  // 2^-32
    double u2 = w1 * 2.3283064365386962890625e-10;
    return sqrt(-2.0 * log(u1)) * cos(FC_TWO_PI * u2);
}
template <typename T>
FC_FN T fc_gaussian_noise(T x, unsigned long long seed, unsigned long long step, unsigned long long index,
                          double stddev) {
    typedef typename fc_acc<T>::type A;
    return T(A(x) + A(stddev * fc_philox_normal(seed, step, index)));
}

// -- Normalization (Keras's preprocessing layer): y = (x - mean) / denom, or x * denom + mean with
// invert; denom = max(sqrt(variance), 1e-7), one per feature.
template <typename T> FC_FN T fc_normalize(T x, T mean, T denom, bool invert) {
    typedef typename fc_acc<T>::type A;
    return invert ? T(A(mean) + A(x) * A(denom)) : T((A(x) - A(mean)) / A(denom));
}
template <typename T> FC_FN T fc_normalize_backward(T dy, T denom, bool invert) {
    typedef typename fc_acc<T>::type A;
    return invert ? T(A(dy) * A(denom)) : T(A(dy) / A(denom));
}

// -- BatchNormalization, elementwise parts: y = (x - mean) / sqrt(var + eps) * gamma + beta with the
// batch's or the moving statistics (one per feature); dx from the column sums sdy = sum(dy) and
// sdyx = sum(dy * xhat): with batch statistics dx = gamma rstd / B (B dy - sdy - xhat sdyx), with
// fixed ones dx = gamma rstd dy.
template <typename A> FC_FN A fc_rstd(A var, double eps) { return A(1) / fc_sqrt(var + A(eps)); }

template <typename T>
FC_FN T fc_bn_apply(T x, T mean, T var, T gamma, T beta, double eps, bool has_gamma, bool has_beta) {
    typedef typename fc_acc<T>::type A;
    A xhat = (A(x) - A(mean)) * fc_rstd(A(var), eps);
    A y = has_gamma ? xhat * A(gamma) : xhat;
    return T(has_beta ? y + A(beta) : y);
}

template <typename T>
FC_FN T fc_bn_dx(T x, T dy, T mean, T var, T gamma, T sdy, T sdyx, double eps, double rows, bool has_gamma,
                 bool batch_stats) {
    typedef typename fc_acc<T>::type A;
    A rstd = fc_rstd(A(var), eps);
    A g = has_gamma ? A(gamma) * rstd : rstd;
    if (!batch_stats) {
        return T(A(dy) * g);
    }
    A xhat = (A(x) - A(mean)) * rstd;
    return T(g / A(rows) * (A(rows) * A(dy) - A(sdy) - xhat * A(sdyx)));
}

#ifdef FC_BLOCKS
// (a, b) summed over the FC_COL_WARPS warps of a column block: every thread gets its column's totals.
FC_BLOCK_FN void fc_column_block_sum2(double& a, double& b) {
    FC_SHARED(double, col_a, FC_COL_BLOCK);
    FC_SHARED(double, col_b, FC_COL_BLOCK);
    FC_SHARED(double, col_ta, FC_WARP);
    FC_SHARED(double, col_tb, FC_WARP);
    int t = threadIdx.x, lane = t % FC_WARP;
    col_a[t] = a;
    col_b[t] = b;
    __syncthreads();
    if (t < FC_WARP) {
        double sa = 0.0, sb = 0.0;
        for (int w = 0; w < FC_COL_WARPS; ++w) {
            sa += col_a[lane + FC_WARP * w];
            sb += col_b[lane + FC_WARP * w];
        }
        col_ta[lane] = sa;
        col_tb[lane] = sb;
    }
    __syncthreads();
    a = col_ta[lane];
    b = col_tb[lane];
    __syncthreads();  // the totals are read before the next call writes them
}
#endif

// A column block's thread: its column c and first row w (see the top of this file).
#define FC_COLUMN_THREAD(i, ncols)                             \
    long long t_ = (i) % FC_COL_BLOCK, lane_ = t_ % FC_WARP;   \
    long long w = t_ / FC_WARP;                                \
    long long c = ((i) / FC_COL_BLOCK) * FC_WARP + lane_;      \
    bool has_col = c < (ncols);

// BatchNormalization's training statistics of x (rows, ncols): mean and biased var per column, and
// with `update` the moving statistics: moving = moving * momentum + batch * (1 - momentum).
template <typename T, typename X, typename S>
FC_BLOCK_FN void fc_bn_stats(const X& x, long long rows, long long ncols, double momentum, bool update, S& mean,
                             S& var, S& moving_mean, S& moving_var, long long i) {
    typedef typename fc_acc<T>::type A;
    FC_COLUMN_THREAD(i, ncols)
#ifdef FC_BLOCKS
    long long first = w, stride = FC_COL_WARPS;
    bool writer = w == 0 && has_col;
#else
    long long first = 0, stride = 1;
    bool writer = w == 0 && has_col;
    if (!writer) {
        return;
    }
#endif
    double s = 0.0, unused = 0.0;
    if (has_col) {
        for (long long r = first; r < rows; r += stride) {
            s += double(A(x[r * ncols + c]));
        }
    }
#ifdef FC_BLOCKS
    fc_column_block_sum2(s, unused);
#endif
    double m = s / double(rows);
    double q = 0.0;
    if (has_col) {
        for (long long r = first; r < rows; r += stride) {
            double d = double(A(x[r * ncols + c])) - m;
            q += d * d;
        }
    }
#ifdef FC_BLOCKS
    fc_column_block_sum2(q, unused);
#endif
    if (writer) {
        double v = q / double(rows);
        mean[c] = T(A(m));
        var[c] = T(A(v));
        if (update) {
            moving_mean[c] = T(A(double(A(moving_mean[c])) * momentum + m * (1.0 - momentum)));
            moving_var[c] = T(A(double(A(moving_var[c])) * momentum + v * (1.0 - momentum)));
        }
    }
    (void)unused;
}

// The column sums sdy = sum_r dy and sdyx = sum_r dy * xhat, xhat from per-column statistics
// (BatchNormalization: mean[c], var[c]) or per-row ones (LayerNormalization: mean[r], rstd[r]).
struct fc_column_stats {
    double eps;
    template <typename A, typename M> FC_FN A xhat(A x, const M& mean, const M& var, long long, long long c) const {
        return (x - A(mean[c])) * fc_rstd(A(var[c]), eps);
    }
};
struct fc_row_stats {
    double eps;
    template <typename A, typename M> FC_FN A xhat(A x, const M& mean, const M& rstd, long long r, long long) const {
        return (x - A(mean[r])) * A(rstd[r]);
    }
};

template <typename T, typename Stats, typename X, typename M, typename S>
FC_BLOCK_FN void fc_param_grads(const Stats& stats, const X& x, const X& dy, const M& mean, const M& spread,
                                long long rows, long long ncols, S& sdy, S& sdyx, long long i) {
    typedef typename fc_acc<T>::type A;
    FC_COLUMN_THREAD(i, ncols)
#ifdef FC_BLOCKS
    long long first = w, stride = FC_COL_WARPS;
#else
    long long first = 0, stride = 1;
    if (w != 0 || !has_col) {
        return;
    }
#endif
    double a = 0.0, b = 0.0;
    if (has_col) {
        for (long long r = first; r < rows; r += stride) {
            A g = A(dy[r * ncols + c]);
            a += double(g);
            b += double(g * stats.template xhat<A>(A(x[r * ncols + c]), mean, spread, r, c));
        }
    }
#ifdef FC_BLOCKS
    fc_column_block_sum2(a, b);
#endif
    if (w == 0 && has_col) {
        sdy[c] = T(A(a));
        sdyx[c] = T(A(b));
    }
}

// -- LayerNormalization: one warp a row, i = row x 32 + lane (size = B x 32) ---------------------------
// Forward: the row's mean and rstd = 1 / sqrt(var + eps) (kept for backward), then
// y = (x - mean) rstd gamma + beta.
template <typename T, typename X, typename P, typename Y, typename S>
FC_BLOCK_FN void fc_ln_forward(const X& x, const P& gamma, const P& beta, bool has_gamma, bool has_beta, double eps,
                               long long ncols, Y& y, S& mean_out, S& rstd_out, long long i) {
    typedef typename fc_acc<T>::type A;
    long long row = i / FC_WARP, lane = i % FC_WARP, base = row * ncols;
#ifdef FC_BLOCKS
    long long first = lane, stride = FC_WARP;
#else
    long long first = 0, stride = 1;
    if (lane != 0) {
        return;
    }
#endif
    double s = 0.0;
    for (long long c = first; c < ncols; c += stride) {
        s += double(A(x[base + c]));
    }
#ifdef FC_BLOCKS
    s = fc_warp_sum(s);
#endif
    double m = s / double(ncols);
    double q = 0.0;
    for (long long c = first; c < ncols; c += stride) {
        double d = double(A(x[base + c])) - m;
        q += d * d;
    }
#ifdef FC_BLOCKS
    q = fc_warp_sum(q);
#endif
    A mean = A(m), rstd = fc_rstd(A(q / double(ncols)), eps);
    for (long long c = first; c < ncols; c += stride) {
        A v = (A(x[base + c]) - mean) * rstd;
        v = has_gamma ? v * A(gamma[c]) : v;
        y[base + c] = T(has_beta ? v + A(beta[c]) : v);
    }
    if (lane == 0) {
        mean_out[row] = T(mean);
        rstd_out[row] = T(rstd);
    }
}

// Backward to x: with g = dy gamma, dx = rstd (g - mean(g) - xhat mean(g xhat)) over the row.
template <typename T, typename X, typename P, typename S, typename G>
FC_BLOCK_FN void fc_ln_dx(const X& x, const X& dy, const S& mean, const S& rstd, const P& gamma, bool has_gamma,
                          long long ncols, G& dx, long long i) {
    typedef typename fc_acc<T>::type A;
    long long row = i / FC_WARP, lane = i % FC_WARP, base = row * ncols;
#ifdef FC_BLOCKS
    long long first = lane, stride = FC_WARP;
#else
    long long first = 0, stride = 1;
    if (lane != 0) {
        return;
    }
#endif
    A m = A(mean[row]), r = A(rstd[row]);
    double sg = 0.0, sgx = 0.0;
    for (long long c = first; c < ncols; c += stride) {
        A g = has_gamma ? A(dy[base + c]) * A(gamma[c]) : A(dy[base + c]);
        sg += double(g);
        sgx += double(g * ((A(x[base + c]) - m) * r));
    }
#ifdef FC_BLOCKS
    sg = fc_warp_sum(sg);
    sgx = fc_warp_sum(sgx);
#endif
    A mg = A(sg / double(ncols)), mgx = A(sgx / double(ncols));
    for (long long c = first; c < ncols; c += stride) {
        A g = has_gamma ? A(dy[base + c]) * A(gamma[c]) : A(dy[base + c]);
        A xhat = (A(x[base + c]) - m) * r;
        dx[base + c] = T(r * (g - mg - xhat * mgx));
    }
}

#endif  // FCGPU_LAYERS_CUH
