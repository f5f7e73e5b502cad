// Parameter updates with PyTorch's semantics; each reads p, g and its state once and writes once.
// Hyperparameters arrive in double and are rounded once to the arithmetic type (float for half
// parameters), so eps = 1e-8 does not vanish in a float16 parameter's update. The state S
// (momentum, moments) has its own type: float32 for half parameters, so Adam's second moment of a
// gradient below ~5e-3 does not underflow.
#ifndef FCGPU_OPTIMIZERS_CUH
#define FCGPU_OPTIMIZERS_CUH

// torch.optim.SGD (dampening 0): g += wd*p; buf = mu*buf + g; g = nesterov ? g + mu*buf : buf; p -= lr*g.
// A zero buffer on the first step gives buf = g, as PyTorch's clone does.
// Weight decay is skipped when zero, as PyTorch does: 0 * inf would turn an infinite weight into NaN.
template <typename T, typename S>
FC_FN void fc_sgd_update(T& p, S& buf, T grad, double lr, double mu, double wd, bool nesterov) {
    typedef typename fc_acc<T>::type A;
    A g = A(grad);
    if (A(wd) != A(0)) {
        g = g + A(wd) * A(p);
    }
    if (A(mu) != A(0)) {
        A b = A(mu) * A(buf) + g;
        buf = S(b);
        g = nesterov ? g + A(mu) * b : b;
    }
    p = T(A(p) - A(lr) * g);
}

// torch.optim.Adam / AdamW. Scalars computed on the host in double, as PyTorch computes them in
// Python: step_size = lr / (1 - beta1^t), bc2_sqrt = sqrt(1 - beta2^t), one_minus_beta1/2 = 1 - beta
// (1 - a rounded beta2 = 0.999f would be off by 1e-5 relative) and decay = 1 - lr*wd (AdamW's
// p *= decay, selected by decoupled; Adam adds wd*p to the gradient instead, skipped when zero).
template <typename T, typename S>
FC_FN void fc_adam_update(T& p, S& m, S& v, T grad, double beta1, double beta2, double one_minus_beta1,
                          double one_minus_beta2, double eps, double wd, double decay, double step_size,
                          double bc2_sqrt, bool decoupled) {
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
    m = S(m1);
    v = S(v1);
    p = T(w - A(step_size) * (m1 / (fc_sqrt(v1) / A(bc2_sqrt) + A(eps))));
}

#endif  // FCGPU_OPTIMIZERS_CUH
