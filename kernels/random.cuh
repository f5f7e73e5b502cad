// Counter-based random numbers: Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random
// numbers: as easy as 1, 2, 3", SC 2011; the Random123 library's constants), and the dropout
// mask drawn from it. A draw is a pure function of (key, counter), so every element of every
// step can be computed anywhere, in any order: forward and backward regenerate the same mask,
// and the NumPy backend (fcgpu/backends/philox.py, written independently) gives the same bits.
//
// The stream of a (seed, step): element e is word (e & 3) of the block for
// counter (e >> 2 low word, e >> 2 high word, step low word, step high word) and
// key (seed low word, seed high word); four consecutive elements share one block.
#ifndef FCGPU_RANDOM_CUH
#define FCGPU_RANDOM_CUH

struct fc_u32x4 {
    unsigned int x, y, z, w;
};

// The full 64-bit product of two 32-bit words: low word returned, high word in *hi.
FC_FN unsigned int fc_mulhilo32(unsigned int a, unsigned int b, unsigned int* hi) {
    unsigned long long p = (unsigned long long)a * (unsigned long long)b;
    *hi = (unsigned int)(p >> 32);
    return (unsigned int)p;
}

// One Philox round (Random123's philox4x32round).
FC_FN fc_u32x4 fc_philox4x32_round(fc_u32x4 c, unsigned int k0, unsigned int k1) {
    unsigned int hi0, hi1;
    unsigned int lo0 = fc_mulhilo32(0xD2511F53u, c.x, &hi0);
    unsigned int lo1 = fc_mulhilo32(0xCD9E8D57u, c.z, &hi1);
    fc_u32x4 r = {hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0};
    return r;
}

// Philox4x32-10: ten rounds, the key bumped by the Weyl constants before each round after the first.
FC_FN fc_u32x4 fc_philox4x32_10(fc_u32x4 counter, unsigned int k0, unsigned int k1) {
    fc_u32x4 c = fc_philox4x32_round(counter, k0, k1);
    for (int r = 1; r < 10; ++r) {
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
        c = fc_philox4x32_round(c, k0, k1);
    }
    return c;
}

// Word `index` of the stream of (seed, step) (see the top of this file).
FC_FN unsigned int fc_philox_word(unsigned long long seed, unsigned long long step, unsigned long long index) {
    unsigned long long block = index >> 2;
    fc_u32x4 counter = {(unsigned int)block, (unsigned int)(block >> 32), (unsigned int)step, (unsigned int)(step >> 32)};
    fc_u32x4 r = fc_philox4x32_10(counter, (unsigned int)seed, (unsigned int)(seed >> 32));
    switch ((unsigned int)(index & 3u)) {
        case 0: return r.x;
        case 1: return r.y;
        case 2: return r.z;
        default: return r.w;
    }
}

// Inverted dropout of element `index`: dropped (0, whatever x is, inf and NaN included) where its
// word is below `threshold` = floor(rate * 2^32), so P(drop) = threshold / 2^32; kept elements are
// x * scale, scale = 1 / (1 - rate), one rounding in the arithmetic type. Forward applies it to x,
// backward to dy with the same (seed, step, index): the mask is never stored.
template <typename T>
FC_FN T fc_dropout(T x, unsigned long long seed, unsigned long long step, unsigned long long index,
                   unsigned int threshold, double scale) {
    typedef typename fc_acc<T>::type A;
    if (fc_philox_word(seed, step, index) < threshold) {
        return T(A(0));
    }
    return T(A(x) * A(scale));
}

// A Dense's bias + activation with the Dropout after it, in one pass: y = act(z + b) (kept for the
// Dense's backward) and yd = dropout(y), each rounded as the two separate kernels round them.
template <typename Act, typename T>
FC_FN void fc_bias_act_dropout_forward(T z, T b, bool has_bias, T& y, T& yd, unsigned long long seed,
                                       unsigned long long step, unsigned long long index, unsigned int threshold,
                                       double scale) {
    y = has_bias ? fc_bias_act_forward<Act>(z, b) : fc_act_forward<Act>(z);
    yd = fc_dropout(y, seed, step, index, threshold, scale);
}

// Its backward: dz = act'(.) from y, applied to the Dropout's backward of dyd (the same mask).
template <typename Act, typename T>
FC_FN T fc_act_dropout_backward(T y, T dyd, unsigned long long seed, unsigned long long step,
                                unsigned long long index, unsigned int threshold, double scale) {
    return fc_act_backward<Act>(y, fc_dropout(dyd, seed, step, index, threshold, scale));
}

#endif  // FCGPU_RANDOM_CUH
