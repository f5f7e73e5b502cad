// Activations: forward with the bias add fused, backward from the layer's output y.
// Each activation is a struct fc_act_<name> with forward(s) and backward(y, dy) on the arithmetic
// type, named by its entry in fcgpu/activations.py (which also holds its NumPy reference).
#ifndef FCGPU_ACTIVATIONS_CUH
#define FCGPU_ACTIVATIONS_CUH

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

// y = act(z + b): one read of z and b, one write of y (y may alias z).
template <typename Act, typename T> FC_FN T fc_bias_act_forward(T z, T b) {
    typedef typename fc_acc<T>::type A;
    return T(Act::forward(A(z) + A(b)));
}

template <typename Act, typename T> FC_FN T fc_act_forward(T z) {
    typedef typename fc_acc<T>::type A;
    return T(Act::forward(A(z)));
}

// dz = dy * act'(z), expressed through y = act(z).
template <typename Act, typename T> FC_FN T fc_act_backward(T y, T dy) {
    typedef typename fc_acc<T>::type A;
    return T(Act::backward(A(y), A(dy)));
}

#endif  // FCGPU_ACTIVATIONS_CUH
