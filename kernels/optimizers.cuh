// Parameter updates with PyTorch's semantics (SGD, Adam, AdamW) or Keras 3's (RMSprop, Adagrad), and the
// gradient of Keras's L1/L2 penalties; each reads p, g and its state once and writes once.
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

// Keras 3's RMSprop (keras/src/optimizers/rmsprop.py), each term as Keras writes it:
// v = rho*v + (1-rho)*g^2; centered: mg = rho*mg + (1-rho)*g and the denominator is v - mg^2 + eps,
// else v + eps; increment = lr*g / sqrt(denominator); with momentum: mom = momentum*mom + increment
// and p -= mom, else p -= increment. decay = 1 - lr*wd is Keras's decoupled weight decay
// (p - p*wd*lr before the update), 1 when there is none. mg and mom are read and written only when
// centered / use_momentum; a kernel without them passes a local.
template <typename T, typename S>
FC_FN void fc_rmsprop_update(T& p, S& v, S& mg, S& mom, T grad, double lr, double rho, double one_minus_rho,
                             double momentum, double eps, double decay, bool centered, bool use_momentum) {
    typedef typename fc_acc<T>::type A;
    A w = A(p) * A(decay);
    A g = A(grad);
    A v1 = A(rho) * A(v) + A(one_minus_rho) * (g * g);
    v = S(v1);
    A denominator = v1;
    if (centered) {
        A mg1 = A(rho) * A(mg) + A(one_minus_rho) * g;
        mg = S(mg1);
        denominator = v1 - mg1 * mg1;
    }
    A increment = A(lr) * g / fc_sqrt(denominator + A(eps));
    if (use_momentum) {
        A m1 = A(momentum) * A(mom) + increment;
        mom = S(m1);
        increment = m1;
    }
    p = T(w - increment);
}

// Keras 3's Adagrad (keras/src/optimizers/adagrad.py): acc += g^2; p -= lr*g / sqrt(acc + eps), the
// accumulator starting at initial_accumulator_value; decay as in fc_rmsprop_update.
template <typename T, typename S>
FC_FN void fc_adagrad_update(T& p, S& acc, T grad, double lr, double eps, double decay) {
    typedef typename fc_acc<T>::type A;
    A w = A(p) * A(decay);
    A g = A(grad);
    A a1 = A(acc) + g * g;
    acc = S(a1);
    p = T(w - A(lr) * g / fc_sqrt(a1 + A(eps)));
}

// A loss-scaled gradient unscaled inside the update (LossScaleOptimizer): g * (1/scale) in the
// arithmetic type; the scale is a power of two, so this is exact unless it underflows.
template <typename T>
FC_FN T fc_unscaled(T grad, double unscale) {
    typedef typename fc_acc<T>::type A;
    return T(A(grad) * A(unscale));
}

// Dynamic loss scaling's state, one small float64 device array owned by LossScaleOptimizer:
// the loss scale (the loss kernels multiply their gradient scale by it), the finite steps in a
// row, whether this step's gradients overflowed (the guarded updates then leave everything as
// it was), 1/scale of this step (the guarded updates unscale by it), the steps skipped so far,
// the inner optimizer's applied steps t, and Adam's bias corrections for t (lr / (1 - beta1^t),
// sqrt(1 - beta2^t)), all decided on the device: the host reads them only when asked.
#define FC_LS_SCALE 0
#define FC_LS_GOOD 1
#define FC_LS_SKIP 2
#define FC_LS_UNSCALE 3
#define FC_LS_SKIPPED 4
#define FC_LS_T 5
#define FC_LS_STEP_SIZE 6
#define FC_LS_BC2_SQRT 7
#define FC_LS_SIZE 8

// After the overflow check of every gradient buffer (ls[FC_LS_SKIP] set where one was not
// finite): Keras 3's and PyTorch GradScaler's rules. A skipped step halves the scale (not below 1)
// and restarts the count; growth finite steps in a row double it. This step's updates unscale by
// the scale the loss was multiplied with, read before it changes. Adam's t counts applied steps only.
FC_FN void fc_loss_scale_update(double* ls, double growth, double lr, double beta1, double beta2) {
    double scale = ls[FC_LS_SCALE];
    ls[FC_LS_UNSCALE] = 1.0 / scale;
    if (ls[FC_LS_SKIP] != 0.0) {
        ls[FC_LS_SCALE] = scale / 2.0 < 1.0 ? 1.0 : scale / 2.0;
        ls[FC_LS_GOOD] = 0.0;
        ls[FC_LS_SKIPPED] += 1.0;
        return;
    }
    ls[FC_LS_GOOD] += 1.0;
    if (ls[FC_LS_GOOD] >= growth) {
        ls[FC_LS_SCALE] = scale * 2.0;
        ls[FC_LS_GOOD] = 0.0;
    }
    double t = ls[FC_LS_T] + 1.0;
    ls[FC_LS_T] = t;
    ls[FC_LS_STEP_SIZE] = lr / (1.0 - fc_pow(beta1, t));
    ls[FC_LS_BC2_SQRT] = fc_sqrt(1.0 - fc_pow(beta2, t));
}

// Loss scaling's overflow check of one gradient buffer of n elements, written into the scaler's
// device state ls (FC_LS_* above): the non-finite elements counted as all_finite counts
// them; the launch of the first buffer clears the flag, every launch sets it where it found one,
// and the launch of the last buffer applies fc_loss_scale_update. One launch a buffer, no host read.
template <typename T, typename G>
FC_BLOCK_FN void fc_loss_scale_check_grid(const G& g, long long n, long long i, long long threads, bool first,
                                          bool last, double growth, double lr, double beta1, double beta2,
                                          double* partials, unsigned int* ticket, double* ls) {
    typedef typename fc_acc<T>::type A;
    double bad = 0.0;
    for (long long e = i; e < n; e += threads) {
        bad += fc_isfinite(A(g[e])) ? 0.0 : 1.0;
    }
#ifdef FC_BLOCKS
    double total[2];
    if (fc_grid_reduce2(bad, 0.0, partials, ticket, total)) {
        if (first) {
            ls[FC_LS_SKIP] = 0.0;
        }
        if (total[0] != 0.0) {
            ls[FC_LS_SKIP] = 1.0;
        }
        if (last) {
            fc_loss_scale_update(ls, growth, lr, beta1, beta2);
        }
    }
#else  // the host runs i = 0, 1, ... in order: i = 0 first, threads - 1 last
    if (first && i == 0) {
        ls[FC_LS_SKIP] = 0.0;
    }
    if (bad != 0.0) {
        ls[FC_LS_SKIP] = 1.0;
    }
    if (last && i == threads - 1) {
        fc_loss_scale_update(ls, growth, lr, beta1, beta2);
    }
#endif
}

// Keras 3's gradient clipping (keras/src/optimizers/base_optimizer.py, _clip_gradients), one of:
// clipnorm c, each variable's gradient times c / max(||g||, c) (_clip_by_norm; a NaN norm gives NaN);
// global_clipnorm c, every gradient times c * min(1/n, 1/c) + (n - n) for the norm n of all of them
// together (clip_by_global_norm: NaN where n is not finite); clipvalue v, each element clamped to
// [-v, v] (NaN stays NaN). The norms are of the unscaled gradients (LossScaleOptimizer unscales
// before the inner optimizer clips): sqrt(sum g^2) times 1/scale, a power of two.
FC_FN double fc_clipnorm_factor(double sumsq, double unscale, double c) {
    double n = fc_sqrt(sumsq) * unscale;
    double m = (n != n || n > c) ? n : c;
    return c / m;
}

FC_FN double fc_global_clipnorm_factor(double sumsq, double unscale, double c) {
    double n = fc_sqrt(sumsq) * unscale;
    double r = 1.0 / n;
    double inv_c = 1.0 / c;
    return c * (r < inv_c ? r : inv_c) + (n - n);
}

// The norm factor of element i of a flat gradient buffer, from the small float64 device array cs
// that fc_clip_norms_grid wrote: nseg = 0, none (1); nseg < 0, one factor for every element (cs[0],
// the global norm's); else the factor of the segment [segs[2k], segs[2k+1]) holding i (cs[k]; 1
// in the zero gaps between parameters), found by bisection over the sorted starts.
FC_FN double fc_clip_factor(const double* cs, const long long* segs, long long nseg, long long i) {
    if (nseg == 0) {
        return 1.0;
    }
    if (nseg < 0) {
        return cs[0];
    }
    long long lo = 0, hi = nseg - 1;
    while (lo < hi) {
        long long mid = (lo + hi + 1) / 2;
        if (segs[2 * mid] <= i) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    return (i >= segs[2 * lo] && i < segs[2 * lo + 1]) ? cs[lo] : 1.0;
}

// A gradient (already unscaled) clipped as it is read by an update: clamped where clipvalue > 0,
// else times its norm factor (skipped where 1).
template <typename T>
FC_FN T fc_clipped(T grad, double factor, double clipvalue) {
    typedef typename fc_acc<T>::type A;
    A g = A(grad);
    if (clipvalue > 0.0) {
        A v = A(clipvalue);
        g = g < -v ? -v : (g > v ? v : g);
    } else if (factor != 1.0) {
        g = g * A(factor);
    }
    return T(g);
}

// The clipping factors of one flat gradient buffer g, one block (FC_LOSS_BLOCK threads) a segment
// [segs[2b], segs[2b+1]): each block sums its segment's squares in double, in thread order then
// warp order. per_variable: the block writes cs[base + b] = fc_clipnorm_factor. Otherwise the
// last block adds the blocks' sums in block order to cs[1] (zeroed by the first buffer's launch)
// and the last buffer's launch writes cs[0] = fc_global_clipnorm_factor of the total. ls: the loss
// scaler's device state, whose 1/scale is read where guarded (else unscale). No host read.
template <typename T, typename G>
FC_BLOCK_FN void fc_clip_norms_grid(const G& g, const long long* segs, long long i, long long threads, long long base,
                                    double clipnorm, bool per_variable, bool first, bool last, double unscale,
                                    const double* ls, bool guarded, double* partials, unsigned int* ticket,
                                    double* cs) {
    typedef typename fc_acc<T>::type A;
    long long b = i / FC_LOSS_BLOCK, t = i % FC_LOSS_BLOCK;
    double u = guarded ? ls[FC_LS_UNSCALE] : unscale;
    double v = 0.0;
    for (long long e = segs[2 * b] + t; e < segs[2 * b + 1]; e += FC_LOSS_BLOCK) {
        double x = double(A(g[e]));
        v += x * x;
    }
#ifdef FC_BLOCKS
    double total[2];
    bool done = fc_grid_reduce2(v, 0.0, partials, ticket, total);
    if (per_variable) {
        if (threadIdx.x == 0) {
            cs[base + b] = fc_clipnorm_factor(partials[2 * b], u, clipnorm);
        }
    } else if (done) {
        double sumsq = (first ? 0.0 : cs[1]) + total[0];
        cs[1] = sumsq;
        if (last) {
            cs[0] = fc_global_clipnorm_factor(sumsq, u, clipnorm);
        }
    }
#else  // the host runs i = 0, 1, ... in order: a block's threads one after another, blocks in order
    if (t == 0) {
        partials[2 * b] = 0.0;
    }
    partials[2 * b] += v;
    if (t == FC_LOSS_BLOCK - 1) {
        if (per_variable) {
            cs[base + b] = fc_clipnorm_factor(partials[2 * b], u, clipnorm);
        } else {
            double sumsq = ((first && b == 0) ? 0.0 : cs[1]) + partials[2 * b];
            cs[1] = sumsq;
            if (last && i == threads - 1) {
                cs[0] = fc_global_clipnorm_factor(sumsq, u, clipnorm);
            }
        }
    }
#endif
}

// The gradient of Keras's L1L2 penalty l1*sum|w| + l2*sum w^2, added to g: g += 2*l2*w + l1*sign(w)
// (two_l2 = 2*l2 in double on the host). A zero factor's term is skipped: 0 * inf would be NaN.
template <typename T>
FC_FN void fc_l1l2_grad(T& g, T w, double l1, double two_l2) {
    typedef typename fc_acc<T>::type A;
    A x = A(w);
    A r = A(two_l2) != A(0) ? A(two_l2) * x : A(0);
    if (A(l1) != A(0)) {
        r = r + A(l1) * fc_sign(x);
    }
    g = T(A(g) + r);
}

// One element's share of the penalty, in double: l1*|w| + l2*w^2 (summed by a reduction).
template <typename T>
FC_FN double fc_l1l2_term(T w, double l1, double l2) {
    typedef typename fc_acc<T>::type A;
    double x = double(A(w));
    double r = l1 != 0.0 ? l1 * fc_abs(x) : 0.0;
    return l2 != 0.0 ? r + l2 * (x * x) : r;
}

#endif  // FCGPU_OPTIMIZERS_CUH
