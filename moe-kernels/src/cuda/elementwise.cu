// elementwise.cu: unary ops (forward on any view, backward on contiguous
// buffers), broadcasting binary ops and comparisons, and gated activations
// act(gate) * up (separate views, or one packed [.., 2F] buffer), forward
// and backward; f32 and f64. Launch with launch::elementwise(n).
//
// The activation math is written once as templates over the element type
// (float calls the f-suffixed CUDA functions, double the plain ones).
//
// Op codes: mirror moe_kernels::cuda::ops (a unit test checks the numbers).
#define UOP_NEG 0
#define UOP_EXP 1
#define UOP_LOG 2
#define UOP_SQRT 3
#define UOP_RECIP 4
#define UOP_ABS 5
#define UOP_SIGMOID 6
#define UOP_SILU 7
#define UOP_GELU_TANH 8
#define UOP_GELU_ERF 9
#define UOP_RELU 10
#define UOP_TANH 11
#define UOP_POWF 12
#define UOP_AFFINE 13

#define BOP_ADD 0
#define BOP_SUB 1
#define BOP_MUL 2
#define BOP_DIV 3
#define BOP_MAXIMUM 4
#define BOP_MINIMUM 5

#define CMP_EQ 0
#define CMP_NE 1
#define CMP_LT 2
#define CMP_LE 3
#define CMP_GT 4
#define CMP_GE 5

#define SQRT_2_OVER_PI 0.7978845608028654
#define GELU_C 0.044715
#define FRAC_1_SQRT_2 0.7071067811865476
#define INV_SQRT_2PI 0.3989422804014327

// The math functions by element type (exp_t and log_t: common.cuh).
__device__ __forceinline__ float sqrt_t(float x) { return sqrtf(x); }
__device__ __forceinline__ double sqrt_t(double x) { return sqrt(x); }
__device__ __forceinline__ float tanh_t(float x) { return tanhf(x); }
__device__ __forceinline__ double tanh_t(double x) { return tanh(x); }
__device__ __forceinline__ float erf_t(float x) { return erff(x); }
__device__ __forceinline__ double erf_t(double x) { return erf(x); }
__device__ __forceinline__ float abs_t(float x) { return fabsf(x); }
__device__ __forceinline__ double abs_t(double x) { return fabs(x); }
__device__ __forceinline__ float max_t(float x, float y) { return fmaxf(x, y); }
__device__ __forceinline__ double max_t(double x, double y) { return fmax(x, y); }
__device__ __forceinline__ float pow_t(float x, float p) { return powf(x, p); }
__device__ __forceinline__ double pow_t(double x, double p) { return pow(x, p); }

// Split by sign so exp never overflows (as the CPU does).
template <typename T>
__device__ __forceinline__ T sigmoid_f(T x) {
    if (x >= T(0)) return T(1) / (T(1) + exp_t(-x));
    T e = exp_t(x);
    return e / (T(1) + e);
}

// x^p with the common integer exponents by multiplication, as on the CPU.
template <typename T>
__device__ __forceinline__ T pow_f(T x, T p) {
    if (p == T(2)) return x * x;
    if (p == T(1)) return x;
    if (p == T(3)) return x * x * x;
    if (p == T(0.5)) return sqrt_t(x);
    if (p == T(-1)) return T(1) / x;
    return pow_t(x, p);
}

// p0, p1: the op's constants (Powf: p0 = exponent; Affine: p0 = mul, p1 = add).
template <typename T>
__device__ __forceinline__ T unary_f(int op, T x, T p0, T p1) {
    switch (op) {
        case UOP_NEG: return -x;
        case UOP_EXP: return exp_t(x);
        case UOP_LOG: return log_t(x);
        case UOP_SQRT: return sqrt_t(x);
        case UOP_RECIP: return T(1) / x;
        case UOP_ABS: return abs_t(x);
        case UOP_SIGMOID: return sigmoid_f(x);
        case UOP_SILU: return x * sigmoid_f(x);
        case UOP_GELU_TANH: {
            T u = T(SQRT_2_OVER_PI) * (x + T(GELU_C) * x * x * x);
            return T(0.5) * x * (T(1) + tanh_t(u));
        }
        case UOP_GELU_ERF: return T(0.5) * x * (T(1) + erf_t(x * T(FRAC_1_SQRT_2)));
        case UOP_RELU: return max_t(x, T(0));
        case UOP_TANH: return tanh_t(x);
        case UOP_POWF: return pow_f(x, p0);
        case UOP_AFFINE: return x * p0 + p1;
        default: return T(NAN_F);  // unknown op: NaN, never silent
    }
}

// dy/dx from x and y = f(x); same formulas as UnaryOp::df on the CPU.
template <typename T>
__device__ __forceinline__ T unary_df(int op, T x, T y, T p0) {
    switch (op) {
        case UOP_NEG: return T(-1);
        case UOP_EXP: return y;
        case UOP_LOG: return T(1) / x;
        case UOP_SQRT: return T(0.5) / y;
        case UOP_RECIP: return -y * y;
        case UOP_ABS: return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
        case UOP_SIGMOID: return y * (T(1) - y);
        case UOP_SILU: {
            T s = sigmoid_f(x);
            return s * (T(1) + x * (T(1) - s));
        }
        case UOP_GELU_TANH: {
            T t = tanh_t(T(SQRT_2_OVER_PI) * (x + T(GELU_C) * x * x * x));
            T du = T(SQRT_2_OVER_PI) * (T(1) + T(3.0 * GELU_C) * x * x);
            return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * du;
        }
        case UOP_GELU_ERF: {
            T cdf = T(0.5) * (T(1) + erf_t(x * T(FRAC_1_SQRT_2)));
            T pdf = exp_t(-(x * x) * T(0.5)) * T(INV_SQRT_2PI);
            return cdf + x * pdf;
        }
        case UOP_RELU: return x > T(0) ? T(1) : T(0);
        case UOP_TANH: return T(1) - y * y;
        case UOP_POWF: return p0 * pow_f(x, p0 - T(1));
        case UOP_AFFINE: return p0;
        default: return T(NAN_F);
    }
}

// y[i] = f(x[view(i)]), y row-major [n].
#define UNARY_FWD(NAME, T)                                                                         \
    extern "C" __global__ void NAME(long long n, int op, T p0, T p1, Strided sx, const T* x, T* y) { \
        GRID_STRIDE_LOOP(i, n) { y[i] = unary_f(op, x[strided_offset(sx, i)], p0, p1); }          \
    }
UNARY_FWD(unary_fwd_f32, float)
UNARY_FWD(unary_fwd_f64, double)

// dx[i] = g[i] * f'(x[i], y[i]); all four contiguous [n].
#define UNARY_BWD(NAME, T)                                                                         \
    extern "C" __global__ void NAME(long long n, int op, T p0, const T* g, const T* x, const T* y, T* dx) { \
        GRID_STRIDE_LOOP(i, n) { dx[i] = g[i] * unary_df(op, x[i], y[i], p0); }                   \
    }
UNARY_BWD(unary_bwd_f32, float)
UNARY_BWD(unary_bwd_f64, double)

template <typename T>
__device__ __forceinline__ T binary_f(int op, T a, T b) {
    switch (op) {
        case BOP_ADD: return a + b;
        case BOP_SUB: return a - b;
        case BOP_MUL: return a * b;
        case BOP_DIV: return a / b;
        // Ties and a NaN in `a` pick `a`, as on the CPU.
        case BOP_MAXIMUM: return (a >= b || a != a) ? a : b;
        case BOP_MINIMUM: return (a <= b || a != a) ? a : b;
        default: return T(NAN_F);
    }
}

// out[i] = a[view_a(i)] op b[view_b(i)]; both views are already broadcast to
// the output shape (stride 0 on broadcast dims), out row-major [n].
#define BINARY(NAME, T)                                                                             \
    extern "C" __global__ void NAME(long long n, int op, Strided sa, const T* a, Strided sb, const T* b, T* out) { \
        GRID_STRIDE_LOOP(i, n) { out[i] = binary_f(op, a[strided_offset(sa, i)], b[strided_offset(sb, i)]); } \
    }
BINARY(binary_f32, float)
BINARY(binary_f64, double)

template <typename T>
__device__ __forceinline__ bool compare_f(int op, T x, T z) {
    switch (op) {
        case CMP_EQ: return x == z;
        case CMP_NE: return x != z;
        case CMP_LT: return x < z;
        case CMP_LE: return x <= z;
        case CMP_GT: return x > z;
        case CMP_GE: return x >= z;
        default: return false;
    }
}

// mask[i] = a[view_a(i)] <op> b[view_b(i)] as u8 (1 = true), both views
// broadcast to the output shape, mask row-major [n].
#define COMPARE(NAME, T)                                                                            \
    extern "C" __global__ void NAME(long long n, int op, Strided sa, const T* a, Strided sb, const T* b, \
                                    unsigned char* mask) {                                          \
        GRID_STRIDE_LOOP(i, n) {                                                                    \
            mask[i] = (unsigned char)compare_f(op, a[strided_offset(sa, i)], b[strided_offset(sb, i)]); \
        }                                                                                           \
    }
COMPARE(compare_f32, float)
COMPARE(compare_f64, double)

// Gated activations: y = act(gate) * up, act a UOP_* code with its constants
// p0, p1 (passed as double, used in the element type). The backward, with
// a = act(gate): dgate = dy * up * act'(gate, a), dup = dy * a (as on the CPU).

// gate, up: views of one shape; y row-major [n].
template <typename T>
__device__ void gated_fwd(long long n, int op, double p0, double p1, const Strided& sg, const T* gate,
                          const Strided& su, const T* up, T* y) {
    T q0 = (T)p0, q1 = (T)p1;
    GRID_STRIDE_LOOP(i, n) { y[i] = unary_f(op, gate[strided_offset(sg, i)], q0, q1) * up[strided_offset(su, i)]; }
}

// dy, gate, up: views of one shape; dgate, dup row-major [n].
template <typename T>
__device__ void gated_bwd(long long n, int op, double p0, double p1, const Strided& sd, const T* dy,
                          const Strided& sg, const T* gate, const Strided& su, const T* up, T* dgate, T* dup) {
    T q0 = (T)p0, q1 = (T)p1;
    GRID_STRIDE_LOOP(i, n) {
        T x = gate[strided_offset(sg, i)], u = up[strided_offset(su, i)], g = dy[strided_offset(sd, i)];
        T a = unary_f(op, x, q0, q1);
        dgate[i] = g * u * unary_df(op, x, a, q0);
        dup[i] = g * a;
    }
}

// Packed: h row-major [rows, 2f], each row's f gate values then its f up
// values; y and dy row-major [rows, f] with n = rows * f elements.
template <typename T>
__device__ void gated_packed_fwd(long long n, int f, int op, double p0, double p1, const T* h, T* y) {
    T q0 = (T)p0, q1 = (T)p1;
    GRID_STRIDE_LOOP(i, n) {
        long long r = i / f, c = i - r * f;
        const T* hr = h + r * 2 * f;
        y[i] = unary_f(op, hr[c], q0, q1) * hr[f + c];
    }
}

// dh row-major [rows, 2f]: both halves written, one thread per (row, c).
template <typename T>
__device__ void gated_packed_bwd(long long n, int f, int op, double p0, double p1, const T* dy, const T* h,
                                 T* dh) {
    T q0 = (T)p0, q1 = (T)p1;
    GRID_STRIDE_LOOP(i, n) {
        long long r = i / f, c = i - r * f;
        const T* hr = h + r * 2 * f;
        T* dr = dh + r * 2 * f;
        T x = hr[c], u = hr[f + c], g = dy[i];
        T a = unary_f(op, x, q0, q1);
        dr[c] = g * u * unary_df(op, x, a, q0);
        dr[f + c] = g * a;
    }
}

#define GATED_FWD(NAME, T)                                                                            \
    extern "C" __global__ void NAME(long long n, int op, double p0, double p1, Strided sg, const T* gate, \
                                    Strided su, const T* up, T* y) {                                   \
        gated_fwd<T>(n, op, p0, p1, sg, gate, su, up, y);                                             \
    }
GATED_FWD(gated_fwd_f32, float)
GATED_FWD(gated_fwd_f64, double)

#define GATED_BWD(NAME, T)                                                                             \
    extern "C" __global__ void NAME(long long n, int op, double p0, double p1, Strided sd, const T* dy, \
                                    Strided sg, const T* gate, Strided su, const T* up, T* dgate,      \
                                    T* dup) {                                                          \
        gated_bwd<T>(n, op, p0, p1, sd, dy, sg, gate, su, up, dgate, dup);                             \
    }
GATED_BWD(gated_bwd_f32, float)
GATED_BWD(gated_bwd_f64, double)

#define GATED_PACKED_FWD(NAME, T)                                                                      \
    extern "C" __global__ void NAME(long long n, int f, int op, double p0, double p1, const T* h, T* y) { \
        gated_packed_fwd<T>(n, f, op, p0, p1, h, y);                                                  \
    }
GATED_PACKED_FWD(gated_packed_fwd_f32, float)
GATED_PACKED_FWD(gated_packed_fwd_f64, double)

#define GATED_PACKED_BWD(NAME, T)                                                                  \
    extern "C" __global__ void NAME(long long n, int f, int op, double p0, double p1, const T* dy, \
                                    const T* h, T* dh) {                                           \
        gated_packed_bwd<T>(n, f, op, p0, p1, dy, h, dh);                                          \
    }
GATED_PACKED_BWD(gated_packed_bwd_f32, float)
GATED_PACKED_BWD(gated_packed_bwd_f64, double)
