// Host versions of the CuPy pieces an ElementwiseKernel body sees: CArray, CIndexer, float16.
// fcgpu.testing.fake_cupy (host_source.py) puts this text at the top of every kernel it builds
// for the host; it is C++ for g++, not a CUDA header.
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#define FCGPU_HOST_STAND_IN 1
#define FC_MAXDIM 64  // at least NumPy's limit on dimensions

typedef _Float16 float16;

struct bfloat16 {
    uint16_t bits;
    bfloat16() : bits(0) {}
    bfloat16(float f) {
        uint32_t u; memcpy(&u, &f, 4);
        if ((u & 0x7fffffffu) > 0x7f800000u) { bits = uint16_t((u >> 16) | 0x40u); return; }
        u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
        bits = uint16_t(u >> 16);
    }
    bfloat16(double d) : bfloat16(float(d)) {}
    bfloat16(int v) : bfloat16(float(v)) {}
    operator float() const { uint32_t u = uint32_t(bits) << 16; float f; memcpy(&f, &u, 4); return f; }
};

typedef ptrdiff_t fc_index_t[FC_MAXDIM];

template <typename T> struct CArray {
    char* data_;
    int ndim_;
    ptrdiff_t size_;
    ptrdiff_t shape_[FC_MAXDIM];
    ptrdiff_t strides_[FC_MAXDIM];
    int* oob_;
    T dummy_;

    // Element at the loop's multi-index (non-raw arguments), through the strides.
    T& operator[](const fc_index_t& idx) const {
        char* p = data_;
        for (int d = 0; d < ndim_; ++d) p += idx[d] * strides_[d];
        return *reinterpret_cast<T*>(p);
    }
    // Element at a flat C-order index (raw arguments); out-of-range reads are reported, not performed.
    T& operator[](ptrdiff_t i) const {
        if (i < 0 || i >= size_) { *oob_ = 1; return const_cast<T&>(dummy_); }
        char* p = data_;
        for (int d = ndim_ - 1; d >= 0; --d) {
            p += (i % shape_[d]) * strides_[d];
            i /= shape_[d];
        }
        return *reinterpret_cast<T*>(p);
    }
    ptrdiff_t size() const { return size_; }
    int ndim() const { return ndim_; }
    const ptrdiff_t* shape() const { return shape_; }
    const ptrdiff_t* strides() const { return strides_; }
    T* data() const { return reinterpret_cast<T*>(data_); }
};

struct CIndexer {
    ptrdiff_t size_;
    int ndim_;
    ptrdiff_t shape_[FC_MAXDIM];
    fc_index_t index_;
    void set(ptrdiff_t i) {
        for (int d = ndim_ - 1; d >= 0; --d) {
            index_[d] = i % shape_[d];
            i /= shape_[d];
        }
    }
    const fc_index_t& get() const { return index_; }
    ptrdiff_t size() const { return size_; }
    int ndim() const { return ndim_; }
};

template <typename T> static CArray<T> fc_make_array(void* data, const long long*& m, int* oob) {
    CArray<T> a;
    a.data_ = static_cast<char*>(data);
    a.ndim_ = int(*m++);
    a.size_ = 1;
    for (int d = 0; d < a.ndim_; ++d) { a.shape_[d] = ptrdiff_t(*m++); a.size_ *= a.shape_[d]; }
    for (int d = 0; d < a.ndim_; ++d) a.strides_[d] = ptrdiff_t(*m++);
    a.oob_ = oob;
    a.dummy_ = T();
    return a;
}
