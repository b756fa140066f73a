// strided.cu: layout copies, dtype casts and fills.
// Every kernel is elementwise over n output elements (grid-stride loop);
// launch with launch::elementwise(n).

// y[i] = x[strided_offset(s, i)]: makes any view row-major. One kernel per
// element size, so it serves every dtype (u8, bf16/f16, f32, i64/f64).
#define COPY_STRIDED(NAME, T)                                                       \
    extern "C" __global__ void NAME(long long n, Strided s, const T* x, T* y) {    \
        GRID_STRIDE_LOOP(i, n) { y[i] = x[strided_offset(s, i)]; }                 \
    }
COPY_STRIDED(copy_strided_b1, unsigned char)
COPY_STRIDED(copy_strided_b2, unsigned short)
COPY_STRIDED(copy_strided_b4, unsigned int)
COPY_STRIDED(copy_strided_b8, unsigned long long)

// y[strided_offset(s, i)] = x[i]: writes a row-major buffer into a view of
// another (the backward of narrow scatters into a zeroed full-size buffer;
// cat writes each part into its slice of the output).
// The view must not overlap itself (a narrowed region never does).
#define SCATTER_STRIDED(NAME, T)                                                    \
    extern "C" __global__ void NAME(long long n, Strided s, const T* x, T* y) {    \
        GRID_STRIDE_LOOP(i, n) { y[strided_offset(s, i)] = x[i]; }                 \
    }
SCATTER_STRIDED(scatter_strided_b1, unsigned char)
SCATTER_STRIDED(scatter_strided_b2, unsigned short)
SCATTER_STRIDED(scatter_strided_b4, unsigned int)
SCATTER_STRIDED(scatter_strided_b8, unsigned long long)

// y[i] = m[view_m(i)] ? a[view_a(i)] : b[view_b(i)] (torch.where); all three
// views broadcast to the output shape, y row-major [n]. By element size, so
// it serves every dtype.
#define WHERE_STRIDED(NAME, T)                                                               \
    extern "C" __global__ void NAME(long long n, Strided sm, const unsigned char* m, Strided sa, \
                                    const T* a, Strided sb, const T* b, T* y) {              \
        GRID_STRIDE_LOOP(i, n) {                                                             \
            y[i] = m[strided_offset(sm, i)] ? a[strided_offset(sa, i)] : b[strided_offset(sb, i)]; \
        }                                                                                    \
    }
WHERE_STRIDED(where_b1, unsigned char)
WHERE_STRIDED(where_b2, unsigned short)
WHERE_STRIDED(where_b4, unsigned int)
WHERE_STRIDED(where_b8, unsigned long long)

// Contiguous casts, x[n] -> y[n].
extern "C" __global__ void cast_f32_bf16(long long n, const float* x, bf16_t* y) {
    GRID_STRIDE_LOOP(i, n) { y[i] = f32_to_bf16(x[i]); }
}
extern "C" __global__ void cast_bf16_f32(long long n, const bf16_t* x, float* y) {
    GRID_STRIDE_LOOP(i, n) { y[i] = bf16_to_f32(x[i]); }
}
extern "C" __global__ void cast_f64_f32(long long n, const double* x, float* y) {
    GRID_STRIDE_LOOP(i, n) { y[i] = (float)x[i]; }
}
extern "C" __global__ void cast_f32_f64(long long n, const float* x, double* y) {
    GRID_STRIDE_LOOP(i, n) { y[i] = (double)x[i]; }
}
// Integer and mask inputs to f32 (masks and indices used as weights).
extern "C" __global__ void cast_i64_f32(long long n, const long long* x, float* y) {
    GRID_STRIDE_LOOP(i, n) { y[i] = (float)x[i]; }
}
extern "C" __global__ void cast_u8_f32(long long n, const unsigned char* x, float* y) {
    GRID_STRIDE_LOOP(i, n) { y[i] = (float)x[i]; }
}
// The same to f64 (f64 training: masks and counts in f64 products).
extern "C" __global__ void cast_i64_f64(long long n, const long long* x, double* y) {
    GRID_STRIDE_LOOP(i, n) { y[i] = (double)x[i]; }
}
extern "C" __global__ void cast_u8_f64(long long n, const unsigned char* x, double* y) {
    GRID_STRIDE_LOOP(i, n) { y[i] = (double)x[i]; }
}

// y[i] = v for i < n.
extern "C" __global__ void fill_f32(long long n, float v, float* y) {
    GRID_STRIDE_LOOP(i, n) { y[i] = v; }
}
