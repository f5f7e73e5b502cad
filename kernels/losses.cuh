// The losses. Elementwise parts (fc_*_grad, fc_*_loss) for the array library's reductions, and the
// sequential rows of the fused softmax step (fc_softmax_xent_row_*): the loss, its gradient and the
// correct count of a row in one pass, the sums added into a double accumulator acc[0] (loss x
// weight) and acc[1] (correct x weight). Targets have a type Y of their own: float32 targets of a
// half model are read as they are (losses computed in float32, as Keras), never rounded to half. blocks.cuh runs the fused steps a warp a row (softmax) or
// with block-reduced sums (the elementwise losses). Scalars (scale = 1/B, eps) arrive in double and are
// rounded once to the arithmetic type.
#ifndef FCGPU_LOSSES_CUH
#define FCGPU_LOSSES_CUH

// d/dz of mean softmax cross-entropy: (softmax(z) - target) * scale, with lse = logsumexp of z's row.
template <typename T, typename Y> FC_FN T fc_softmax_xent_grad(T z, T lse, Y target, double scale) {
    typedef typename fc_acc<T>::type A;
    return T((fc_exp(A(z) - A(lse)) - A(target)) * A(scale));
}

// Binary cross-entropy from a logit: softplus(z) - y*z, written so exp never overflows.
template <typename T, typename Y> FC_FN T fc_bce_logits_loss(T z, Y y) {
    typedef typename fc_acc<T>::type A;
    A a = A(z);
    A pos = a > A(0) ? a : A(0);
    return T(pos - a * A(y) + fc_log1p(fc_exp(-fc_abs(a))));
}

template <typename T, typename Y> FC_FN T fc_bce_logits_grad(T z, Y y, double scale) {
    typedef typename fc_acc<T>::type A;
    return T((fc_sigmoid(A(z)) - A(y)) * A(scale));
}

// Binary cross-entropy from a probability p, clipped to [eps, 1 - eps] as Keras does.
template <typename A> FC_FN A fc_clip(A p, A eps) {
    return p < eps ? eps : (p > A(1) - eps ? A(1) - eps : p);
}

template <typename T, typename Y> FC_FN T fc_bce_prob_loss(T p, Y y, double eps) {
    typedef typename fc_acc<T>::type A;
    A q = fc_clip(A(p), A(eps));
    return T(-(A(y) * fc_log(q) + (A(1) - A(y)) * fc_log(A(1) - q)));
}

// Zero where p was clipped: the clipped loss is flat there (Keras's gradient through the clip).
template <typename T, typename Y> FC_FN T fc_bce_prob_grad(T p, Y y, double eps, double scale) {
    typedef typename fc_acc<T>::type A;
    A a = A(p);
    if (a < A(eps) || a > A(1) - A(eps)) {
        return T(0);
    }
    return T((a - A(y)) / (a * (A(1) - a)) * A(scale));
}

// (p - y) * (2 * scale), as PyTorch's 2/N factor: 2 * (p - y) first would overflow for |p - y| > max/2.
template <typename T, typename Y> FC_FN T fc_mse_grad(T p, Y y, double scale) {
    typedef typename fc_acc<T>::type A;
    return T((A(p) - A(y)) * (A(2) * A(scale)));
}

// One row of softmax cross-entropy from logits z[base .. base + ncols) (any array type indexed by a
// flat C-order index): log-sum-exp as the array library forms it (max, shifted exp sum, rounded to
// T), the gradient (softmax(z) - onehot) * scale into dz, the loss lse - z[label] and, with count,
// whether the first argmax is the label. The label is compared as a 64-bit integer.
template <typename T, typename Z> FC_FN T fc_row_lse(const Z& z, long long base, long long ncols, long long* best) {
    typedef typename fc_acc<T>::type A;
    A m = A(z[base]);
    *best = 0;
    for (long long c = 1; c < ncols; ++c) {
        A v = A(z[base + c]);
        if (v > m || (v != v && m == m)) {  // the first NaN wins, as a max that propagates NaN
            m = v;
            *best = c;
        }
    }
    A shift = fc_isfinite(m) ? m : A(0);
    A s = A(0);
    for (long long c = 0; c < ncols; ++c) {
        s += fc_exp(A(z[base + c]) - shift);
    }
    return T(fc_log(s) + shift);
}

// rw: the row's sample weight (1 unweighted): it multiplies the row's gradient and loss, not its
// correct count (Keras weighs the loss, and only weighted_metrics).
template <typename T, typename Z, typename G>
FC_FN void fc_softmax_xent_row_ids(const Z& z, G& dz, long long row, long long ncols, long long label, double scale,
                                   double weight, bool count, double* acc, double rw) {
    typedef typename fc_acc<T>::type A;
    long long base = row * ncols, best = 0;
    T lse = fc_row_lse<T>(z, base, ncols, &best);
    for (long long c = 0; c < ncols; ++c) {
        dz[base + c] = fc_softmax_xent_grad(T(z[base + c]), lse, c == label ? T(1) : T(0), scale * rw);
    }
    A picked = (label >= 0 && label < ncols) ? A(z[base + label]) : A(0);
    fc_atomic_add(&acc[0], double(A(lse) - picked) * (weight * rw));
    if (count && best == label) {
        fc_atomic_add(&acc[1], weight);
    }
}

// The same for probability targets t (B, C): loss sum_c t_c (lse - z_c); correct when the first
// argmax of z is the first argmax of t.
template <typename T, typename Z, typename P, typename G>
FC_FN void fc_softmax_xent_row_probs(const Z& z, const P& t, G& dz, long long row, long long ncols, double scale,
                                     double weight, bool count, double* acc, double rw) {
    typedef typename fc_acc<T>::type A;
    long long base = row * ncols, best = 0, truth = 0;
    T lse = fc_row_lse<T>(z, base, ncols, &best);
    A loss = A(0), top = A(t[base]);
    for (long long c = 0; c < ncols; ++c) {
        A target = A(t[base + c]);
        if (target > top) {
            top = target;
            truth = c;
        }
        loss += target * (A(lse) - A(z[base + c]));
        dz[base + c] = fc_softmax_xent_grad(T(z[base + c]), lse, t[base + c], scale * rw);
    }
    fc_atomic_add(&acc[0], double(loss) * (weight * rw));
    if (count && best == truth) {
        fc_atomic_add(&acc[1], weight);
    }
}

// Mean absolute error: the gradient sign(p - y) * scale, sign(0) = 0 as PyTorch's l1_loss; 0, -0
// and NaN differences are kept as they are.
template <typename T, typename Y> FC_FN T fc_mae_grad(T p, Y y, double scale) {
    typedef typename fc_acc<T>::type A;
    A d = A(p) - A(y);
    return T(fc_sign(d) * A(scale));
}

// Huber loss of d = p - y as PyTorch's huber_loss: 0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta).
template <typename A> FC_FN A fc_huber_value(A d, A delta) {
    A a = fc_abs(d);
    return a < delta ? A(0.5) * d * d : delta * (a - A(0.5) * delta);
}

// The gradient: d clamped to [-delta, delta], times scale (NaN kept).
template <typename T, typename Y> FC_FN T fc_huber_grad(T p, Y y, double delta, double scale) {
    typedef typename fc_acc<T>::type A;
    A d = A(p) - A(y), k = A(delta);
    A g = d < -k ? -k : (d > k ? k : d);
    return T(g * A(scale));
}

#endif  // FCGPU_LOSSES_CUH
