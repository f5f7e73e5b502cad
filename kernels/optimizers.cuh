// Parameter updates with PyTorch's semantics; each reads p, g and its state once and writes once.
#ifndef FCGPU_OPTIMIZERS_CUH
#define FCGPU_OPTIMIZERS_CUH

// torch.optim.SGD (dampening 0): g += wd*p; buf = mu*buf + g; g = nesterov ? g + mu*buf : buf; p -= lr*g.
// A zero buffer on the first step gives buf = g, as PyTorch's clone does.
// Weight decay is skipped when zero, as PyTorch does: 0 * inf would turn an infinite weight into NaN.
template <typename T> FC_FN void fc_sgd_update(T& p, T& buf, T grad, T lr, T mu, T wd, bool nesterov) {
    typedef typename fc_acc<T>::type A;
    A g = A(grad);
    if (A(wd) != A(0)) {
        g = g + A(wd) * A(p);
    }
    if (A(mu) != A(0)) {
        A b = A(mu) * A(buf) + g;
        buf = T(b);
        g = nesterov ? g + A(mu) * b : b;
    }
    p = T(A(p) - A(lr) * g);
}

// torch.optim.Adam / AdamW. Scalars computed on the host in double, as PyTorch computes them in
// Python: step_size = lr / (1 - beta1^t), bc2_sqrt = sqrt(1 - beta2^t), one_minus_beta1/2 = 1 - beta
// (1 - a rounded beta2 = 0.999f would be off by 1e-5 relative) and decay = 1 - lr*wd (AdamW's
// p *= decay, selected by decoupled; Adam adds wd*p to the gradient instead, skipped when zero).
template <typename T>
FC_FN void fc_adam_update(T& p, T& m, T& v, T grad, T beta1, T beta2, T one_minus_beta1, T one_minus_beta2, T eps,
                          T wd, T decay, T step_size, T bc2_sqrt, bool decoupled) {
    typedef typename fc_acc<T>::type A;
    A w = A(p);
    A g = A(grad);
    if (decoupled) {
        w = w * A(decay);
    } else if (A(wd) != A(0)) {
        g = g + A(wd) * w;
    }
    A m1 = A(beta1) * A(m) + g * A(one_minus_beta1);
    A v1 = A(beta2) * A(v) + g * g * A(one_minus_beta2);
    m = T(m1);
    v = T(v1);
    p = T(w - A(step_size) * (m1 / (fc_sqrt(v1) / A(bc2_sqrt) + A(eps))));
}

#endif  // FCGPU_OPTIMIZERS_CUH
