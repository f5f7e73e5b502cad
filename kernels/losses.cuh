// Elementwise parts of the losses; the reductions (row max, sums) are done by the array library.
// Scalars (scale = 1/B, eps) arrive in double and are rounded once to the arithmetic type.
#ifndef FCGPU_LOSSES_CUH
#define FCGPU_LOSSES_CUH

// d/dz of mean softmax cross-entropy: (softmax(z) - target) * scale, with lse = logsumexp of z's row.
template <typename T> FC_FN T fc_softmax_xent_grad(T z, T lse, T target, double scale) {
    typedef typename fc_acc<T>::type A;
    return T((fc_exp(A(z) - A(lse)) - A(target)) * A(scale));
}

// Binary cross-entropy from a logit: softplus(z) - y*z, written so exp never overflows.
template <typename T> FC_FN T fc_bce_logits_loss(T z, T y) {
    typedef typename fc_acc<T>::type A;
    A a = A(z);
    A pos = a > A(0) ? a : A(0);
    return T(pos - a * A(y) + fc_log1p(fc_exp(-fc_abs(a))));
}

template <typename T> FC_FN T fc_bce_logits_grad(T z, T y, double scale) {
    typedef typename fc_acc<T>::type A;
    return T((fc_sigmoid(A(z)) - A(y)) * A(scale));
}

// Binary cross-entropy from a probability p, clipped to [eps, 1 - eps] as Keras does.
template <typename A> FC_FN A fc_clip(A p, A eps) {
    return p < eps ? eps : (p > A(1) - eps ? A(1) - eps : p);
}

template <typename T> FC_FN T fc_bce_prob_loss(T p, T y, double eps) {
    typedef typename fc_acc<T>::type A;
    A q = fc_clip(A(p), A(eps));
    return T(-(A(y) * fc_log(q) + (A(1) - A(y)) * fc_log(A(1) - q)));
}

// Zero where p was clipped: the clipped loss is flat there (Keras's gradient through the clip).
template <typename T> FC_FN T fc_bce_prob_grad(T p, T y, double eps, double scale) {
    typedef typename fc_acc<T>::type A;
    A a = A(p);
    if (a < A(eps) || a > A(1) - A(eps)) {
        return T(0);
    }
    return T((a - A(y)) / (a * (A(1) - a)) * A(scale));
}

// (p - y) * (2 * scale), as PyTorch's 2/N factor: 2 * (p - y) first would overflow for |p - y| > max/2.
template <typename T> FC_FN T fc_mse_grad(T p, T y, double scale) {
    typedef typename fc_acc<T>::type A;
    return T((A(p) - A(y)) * (A(2) * A(scale)));
}

#endif  // FCGPU_LOSSES_CUH
