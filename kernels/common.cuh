// Shared by every fcgpu kernel header. CuPy passes the concatenated headers as the
// ElementwiseKernel preamble (NVRTC); the host tests compile the very same text with g++.
#ifndef FCGPU_COMMON_CUH
#define FCGPU_COMMON_CUH

#ifndef __CUDACC__
#include <math.h>
#define __host__
#define __device__
#define __forceinline__ inline
#endif

#define FC_FN __host__ __device__ __forceinline__

// Arithmetic type: half types compute in float, so no header names a 16-bit type
// (CuPy's float16 and CUDA's bfloat16 convert to and from float).
template <typename T> struct fc_acc { typedef float type; };
template <> struct fc_acc<double> { typedef double type; };

// Explicit overloads: host <math.h> would promote some float calls to double.
FC_FN float fc_exp(float x) { return expf(x); }
FC_FN double fc_exp(double x) { return exp(x); }
FC_FN float fc_log1p(float x) { return log1pf(x); }
FC_FN double fc_log1p(double x) { return log1p(x); }
FC_FN float fc_log(float x) { return logf(x); }
FC_FN double fc_log(double x) { return log(x); }
FC_FN float fc_sqrt(float x) { return sqrtf(x); }
FC_FN double fc_sqrt(double x) { return sqrt(x); }
FC_FN float fc_tanh(float x) { return tanhf(x); }
FC_FN double fc_tanh(double x) { return tanh(x); }
FC_FN double fc_pow(double x, double y) { return pow(x, y); }
FC_FN float fc_abs(float x) { return fabsf(x); }
FC_FN double fc_abs(double x) { return fabs(x); }

// sign(x) as NumPy's: -1, +1, the zero itself for +-0, NaN for NaN.
template <typename A> FC_FN A fc_sign(A x) { return x > A(0) ? A(1) : (x < A(0) ? A(-1) : x); }

// x - x is 0 for finite x and NaN for inf or NaN: no math library call, same on host and device.
template <typename A> FC_FN bool fc_isfinite(A x) { return x - x == A(0); }

// Add into a double accumulator: one atomic on the device (and in the host block emulator, whose
// threads run concurrently), a plain add on the host (its loop runs one element at a time).
FC_FN void fc_atomic_add(double* p, double v) {
#if defined(__CUDA_ARCH__) || defined(FC_BLOCK_EMULATOR)
    atomicAdd(p, v);
#else
    *p += v;
#endif
}

// Logistic function without overflow for any |s|: exp is only taken of -|s|.
template <typename A> FC_FN A fc_sigmoid(A s) {
    if (s >= A(0)) {
        return A(1) / (A(1) + fc_exp(-s));
    }
    A e = fc_exp(s);  // NaN also lands here and stays NaN
    return e / (A(1) + e);
}

#endif  // FCGPU_COMMON_CUH
