// Activations: forward with the bias add fused, backward from what the forward pass kept.
// Each activation is a struct fc_act_<name> with forward(s) and backward(kept, dy) on the arithmetic
// type, named by its entry in fcgpu/activations.py (which also holds its NumPy reference). The entry's
// backward_from says what `kept` is: the output y = act(s) ("y"), or the pre-activation s itself
// ("z") where act' cannot be recovered from y (silu, gelu: not invertible). A row activation
// (softmax) has row functions instead, fc_act_<name>_row_forward / _row_backward, one thread a row.
#ifndef FCGPU_ACTIVATIONS_CUH
#define FCGPU_ACTIVATIONS_CUH

// Math these functors need beyond common.cuh, with explicit float and double overloads.
FC_FN float fc_expm1(float x) { return expm1f(x); }
FC_FN double fc_expm1(double x) { return expm1(x); }
FC_FN float fc_erfc(float x) { return erfcf(x); }
FC_FN double fc_erfc(double x) { return erfc(x); }

struct fc_act_linear {
    template <typename A> static FC_FN A forward(A s) { return s; }
    template <typename A> static FC_FN A backward(A, A dy) { return dy; }
};

// relu(NaN) = NaN and relu(-0.0) = +0.0, as np.maximum(s, 0); relu'(0) = 0 as in PyTorch.
struct fc_act_relu {
    template <typename A> static FC_FN A forward(A s) { return s <= A(0) ? A(0) : s; }
    template <typename A> static FC_FN A backward(A y, A dy) { return y > A(0) ? dy : A(0); }
};

struct fc_act_sigmoid {
    template <typename A> static FC_FN A forward(A s) { return fc_sigmoid(s); }
    template <typename A> static FC_FN A backward(A y, A dy) { return dy * y * (A(1) - y); }
};

struct fc_act_tanh {
    template <typename A> static FC_FN A forward(A s) { return fc_tanh(s); }
    template <typename A> static FC_FN A backward(A y, A dy) { return dy * (A(1) - y * y); }
};

// Keras 3's negative_slope = 0.2. y > 0 exactly where s > 0; a NaN takes the slope, as PyTorch.
struct fc_act_leaky_relu {
    template <typename A> static FC_FN A forward(A s) { return s > A(0) ? s : s * A(0.2); }
    template <typename A> static FC_FN A backward(A y, A dy) { return y > A(0) ? dy : dy * A(0.2); }
};

// scale * (s > 0 ? s : alpha * expm1(s)), the form of PyTorch's elu kernel; elu is scale 1, alpha 1.
// Backward from y: scale where y > 0, else y + scale * alpha (= scale * alpha * exp(s)); a NaN y
// takes the scale branch, as PyTorch's s <= 0 test does for a NaN s.
template <typename A> FC_FN A fc_elu_forward(A s, A scale, A negcoef) {
    return s > A(0) ? s * scale : fc_expm1(s) * negcoef;
}
template <typename A> FC_FN A fc_elu_backward(A y, A dy, A scale, A negcoef) {
    return y <= A(0) ? dy * (y + negcoef) : dy * scale;
}

struct fc_act_elu {
    template <typename A> static FC_FN A forward(A s) { return fc_elu_forward(s, A(1), A(1)); }
    template <typename A> static FC_FN A backward(A y, A dy) { return fc_elu_backward(y, dy, A(1), A(1)); }
};

// Keras's (and PyTorch's) constants; scale * alpha rounded once to the arithmetic type.
#define FC_SELU_SCALE 1.0507009873554804934193349852946
#define FC_SELU_ALPHA 1.6732632423543772848170429916717
struct fc_act_selu {
    template <typename A> static FC_FN A forward(A s) {
        return fc_elu_forward(s, A(FC_SELU_SCALE), A(FC_SELU_SCALE * FC_SELU_ALPHA));
    }
    template <typename A> static FC_FN A backward(A y, A dy) {
        return fc_elu_backward(y, dy, A(FC_SELU_SCALE), A(FC_SELU_SCALE * FC_SELU_ALPHA));
    }
};

// PyTorch's beta = 1, threshold = 20: s itself above 20. softplus' = sigmoid(s) = -expm1(-y), exact
// to rounding also where y is tiny (1 - exp(-y) would cancel).
struct fc_act_softplus {
    template <typename A> static FC_FN A forward(A s) { return s > A(20) ? s : fc_log1p(fc_exp(s)); }
    template <typename A> static FC_FN A backward(A y, A dy) { return y > A(20) ? dy : dy * -fc_expm1(-y); }
};

// softsign' = 1 / (1 + |s|)^2 = (1 - |y|)^2: exact to eps * |dy| (1 - |y| cancels as |s| grows).
struct fc_act_softsign {
    template <typename A> static FC_FN A forward(A s) { return s / (A(1) + fc_abs(s)); }
    template <typename A> static FC_FN A backward(A y, A dy) {
        A t = A(1) - fc_abs(y);
        return dy * (t * t);
    }
};

// silu(s) = s * sigmoid(s), PyTorch's s / (1 + exp(-s)). Backward from s (kept by the layer):
// sigmoid(s) * (1 + s * (1 - sigmoid(s))), as PyTorch forms it.
struct fc_act_silu {
    template <typename A> static FC_FN A forward(A s) { return s / (A(1) + fc_exp(-s)); }
    template <typename A> static FC_FN A backward(A s, A dy) {
        A sig = A(1) / (A(1) + fc_exp(-s));
        return dy * sig * (A(1) + s * (A(1) - sig));
    }
};

// gelu(s) = s * Phi(s), Phi(s) = erfc(-s / sqrt 2) / 2: erfc keeps Phi's relative accuracy for
// negative s, where PyTorch's 1 + erf(s / sqrt 2) cancels. Backward from s: Phi(s) + s * phi(s).
#define FC_SQRT1_2 0.70710678118654752440084436210485
#define FC_INV_SQRT_2PI 0.39894228040143267793994605993438
struct fc_act_gelu {
    template <typename A> static FC_FN A forward(A s) { return A(0.5) * s * fc_erfc(s * A(-FC_SQRT1_2)); }
    template <typename A> static FC_FN A backward(A s, A dy) {
        A cdf = A(0.5) * fc_erfc(s * A(-FC_SQRT1_2));
        A pdf = fc_exp(A(-0.5) * (s * s)) * A(FC_INV_SQRT_2PI);
        return dy * (cdf + s * pdf);
    }
};

// The tanh approximation, 0.5 s (1 + tanh(u)) with u = sqrt(2/pi) (s + 0.044715 s^3), written
// as s * sigmoid(2u) = s / (1 + exp(-2u)) so that it keeps its relative accuracy for negative s.
// With e = exp(-2|u|), r = 1 / (1 + e), q = e * r: sigmoid(2u) is r (u >= 0) or q, and
// sigmoid(2u) (1 - sigmoid(2u)) = q r; backward from s: sigmoid(2u) + 2 (du/ds) s q r, the second
// term 0 once q underflows (so no inf * 0 for a large |s|).
#define FC_SQRT_2_PI 0.79788456080286535587989211986876
#define FC_GELU_KAPPA 0.044715
template <typename A> FC_FN A fc_gelu_tanh_u(A s) { return A(FC_SQRT_2_PI) * (s + A(FC_GELU_KAPPA) * (s * s * s)); }
struct fc_act_gelu_approximate {
    template <typename A> static FC_FN A forward(A s) { return s / (A(1) + fc_exp(A(-2) * fc_gelu_tanh_u(s))); }
    template <typename A> static FC_FN A backward(A s, A dy) {
        A u = fc_gelu_tanh_u(s);
        A e = fc_exp(A(-2) * fc_abs(u));
        A r = A(1) / (A(1) + e);
        A q = e * r;
        A sig = u >= A(0) ? r : q;
        A du = A(2 * FC_SQRT_2_PI) * (A(1) + A(3 * FC_GELU_KAPPA) * (s * s));
        A term = q == A(0) ? A(0) : du * s * q * r;
        return dy * (sig + term);
    }
};

// softmax over a row of z + b: the row's max (the first NaN wins, as a max that propagates NaN)
// subtracted, so no logit overflows exp; a row holding NaN or +inf, or all -inf, is NaN, as the
// NumPy reference gives. z and y are indexed by a flat C-order index; y may be z.
struct fc_act_softmax {
    template <typename T, typename Z, typename B, typename Y>
    static FC_FN void row_forward(const Z& z, const B& b, bool has_bias, Y& y, long long row, long long ncols) {
        typedef typename fc_acc<T>::type A;
        long long base = row * ncols;
        A m = A(z[base]) + (has_bias ? A(b[0]) : A(0));
        for (long long c = 1; c < ncols; ++c) {
            A v = A(z[base + c]) + (has_bias ? A(b[c]) : A(0));
            if (v > m || (v != v && m == m)) {
                m = v;
            }
        }
        A sum = A(0);
        for (long long c = 0; c < ncols; ++c) {
            sum += fc_exp(A(z[base + c]) + (has_bias ? A(b[c]) : A(0)) - m);
        }
        for (long long c = 0; c < ncols; ++c) {
            y[base + c] = T(fc_exp(A(z[base + c]) + (has_bias ? A(b[c]) : A(0)) - m) / sum);
        }
    }

    // dz = y * (dy - sum(dy * y)) over the row; dz may be dy.
    template <typename T, typename Y, typename D, typename G>
    static FC_FN void row_backward(const Y& y, const D& dy, G& dz, long long row, long long ncols) {
        typedef typename fc_acc<T>::type A;
        long long base = row * ncols;
        A dot = A(0);
        for (long long c = 0; c < ncols; ++c) {
            dot += A(dy[base + c]) * A(y[base + c]);
        }
        for (long long c = 0; c < ncols; ++c) {
            dz[base + c] = T(A(y[base + c]) * (A(dy[base + c]) - dot));
        }
    }
};

// y = act(z + b): one read of z and b, one write of y (y may alias z).
template <typename Act, typename T> FC_FN T fc_bias_act_forward(T z, T b) {
    typedef typename fc_acc<T>::type A;
    return T(Act::forward(A(z) + A(b)));
}

// The same, also storing s = z + b for a backward from s (s may alias z): y is act of the unrounded sum.
template <typename Act, typename T> FC_FN void fc_bias_act_forward_keep(T z, T b, T& s, T& y) {
    typedef typename fc_acc<T>::type A;
    A a = A(z) + A(b);
    s = T(a);
    y = T(Act::forward(a));
}

template <typename Act, typename T> FC_FN T fc_act_forward(T z) {
    typedef typename fc_acc<T>::type A;
    return T(Act::forward(A(z)));
}

// dz = dy * act'(z), from what the forward pass kept: y = act(z), or z itself (backward_from "z").
template <typename Act, typename T> FC_FN T fc_act_backward(T kept, T dy) {
    typedef typename fc_acc<T>::type A;
    return T(Act::backward(A(kept), A(dy)));
}

#endif  // FCGPU_ACTIVATIONS_CUH
