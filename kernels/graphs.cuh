// The kernels of a training step captured as a CUDA graph (fcgpu/training/graph_step.py): every
// launch of the step is identical, so what changes from step to step is read from the device: the
// step counter ctr, the learning-rate table, the shuffled row order. Also the GEMMs of the captured
// step (cuBLAS refuses stream capture in CuPy): one thread an output element, a loop over k.
#ifndef FCGPU_GRAPHS_CUH
#define FCGPU_GRAPHS_CUH

// The step scalars gs: the loss scaler's layout (FC_LS_*, optimizers.cuh; scale 1, never skipped),
// which the guarded updates read, then the learning rate of this step.
#define FC_GS_LR 8
#define FC_GS_SIZE 9

// ctr[0]: steps taken since the graph's scalars were captured; ctr[1]: this step's batch in the epoch.
#define FC_CTR_STEPS 0
#define FC_CTR_BATCH 1

// c[r, col] = sum_j a[r, j] b[j, col] over C-contiguous operands addressed by element strides from
// their first element (a transposed operand is its base array with the strides swapped), summed in
// order j = 0 .. k-1 in A (float for float and half types, double for double).
template <typename A, typename T>
FC_FN A fc_gemm_element(const T* a, const T* b, long long row, long long col, long long k, long long sa0,
                        long long sa1, long long sb0, long long sb1) {
    A s = A(0);
    for (long long j = 0; j < k; ++j) {
        s += A(a[row * sa0 + j * sa1]) * A(b[j * sb0 + col * sb1]);
    }
    return s;
}

// Element i of the batch (batch rows of cols elements) gathered from the epoch's source rows in the
// order perm, from batch ctr[FC_CTR_BATCH] on.
FC_FN long long fc_gather_index(const long long* perm, const long long* ctr, long long batch, long long cols,
                                long long i) {
    long long row = perm[ctr[FC_CTR_BATCH] * batch + i / cols];
    return row * cols + i % cols;
}

// The step's scalars into gs from the counter: the learning rate of iteration it_base + ctr[0] (the
// table holds iterations it_fit, it_fit + 1, ...; clamped to its ends) and Adam's bias corrections
// for step t = t_base + ctr[0] + 1, as the host computes them (lr / (1 - beta1^t), (1 - beta2^t)^0.5).
FC_FN void fc_graph_step_begin(const long long* ctr, const double* lrs, long long nlr, long long it_base,
                               long long it_fit, long long t_base, double beta1, double beta2, double* gs) {
    long long j = it_base - it_fit + ctr[FC_CTR_STEPS];
    j = j < 0 ? 0 : (j >= nlr ? nlr - 1 : j);
    double lr = lrs[j];
    double t = double(t_base + ctr[FC_CTR_STEPS] + 1);
    gs[0] = 1.0;  // FC_LS_SCALE
    gs[1] = 0.0;  // FC_LS_GOOD
    gs[2] = 0.0;  // FC_LS_SKIP: never skipped
    gs[3] = 1.0;  // FC_LS_UNSCALE
    gs[4] = 0.0;  // FC_LS_SKIPPED
    gs[5] = t;    // FC_LS_T
    gs[6] = lr / (1.0 - fc_pow(beta1, t));      // FC_LS_STEP_SIZE
    gs[7] = fc_pow(1.0 - fc_pow(beta2, t), 0.5);  // FC_LS_BC2_SQRT
    gs[FC_GS_LR] = lr;
}

// The step's sums (acc: loss x rows, correct rows) into its row of the epoch's sums, acc zeroed for
// the next step, and the counters advanced (the batch wraps at the epoch's full batches).
FC_FN void fc_graph_step_end(double* acc, long long steps, double* sums, long long* ctr) {
    long long k = ctr[FC_CTR_BATCH];
    sums[2 * k] = acc[0];
    sums[2 * k + 1] = acc[1];
    acc[0] = 0.0;
    acc[1] = 0.0;
    ctr[FC_CTR_STEPS] += 1;
    ctr[FC_CTR_BATCH] = (k + 1) % steps;
}

#endif  // FCGPU_GRAPHS_CUH
