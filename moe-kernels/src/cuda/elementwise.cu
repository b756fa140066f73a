// elementwise.cu: unary ops (forward on any view, backward on contiguous
// buffers) and broadcasting binary ops, f32. Launch with launch::elementwise(n).
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

#define SQRT_2_OVER_PI 0.7978845608028654f
#define GELU_C 0.044715f
#define FRAC_1_SQRT_2 0.7071067811865476f
#define INV_SQRT_2PI 0.3989422804014327f

// Split by sign so expf never overflows (as the CPU does).
__device__ __forceinline__ float sigmoid_f(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

// x^p with the common integer exponents by multiplication, as on the CPU.
__device__ __forceinline__ float pow_f(float x, float p) {
    if (p == 2.0f) return x * x;
    if (p == 1.0f) return x;
    if (p == 3.0f) return x * x * x;
    if (p == 0.5f) return sqrtf(x);
    if (p == -1.0f) return 1.0f / x;
    return powf(x, p);
}

// p0, p1: the op's constants (Powf: p0 = exponent; Affine: p0 = mul, p1 = add).
__device__ __forceinline__ float unary_f(int op, float x, float p0, float p1) {
    switch (op) {
        case UOP_NEG: return -x;
        case UOP_EXP: return expf(x);
        case UOP_LOG: return logf(x);
        case UOP_SQRT: return sqrtf(x);
        case UOP_RECIP: return 1.0f / x;
        case UOP_ABS: return fabsf(x);
        case UOP_SIGMOID: return sigmoid_f(x);
        case UOP_SILU: return x * sigmoid_f(x);
        case UOP_GELU_TANH: {
            float u = SQRT_2_OVER_PI * (x + GELU_C * x * x * x);
            return 0.5f * x * (1.0f + tanhf(u));
        }
        case UOP_GELU_ERF: return 0.5f * x * (1.0f + erff(x * FRAC_1_SQRT_2));
        case UOP_RELU: return fmaxf(x, 0.0f);
        case UOP_TANH: return tanhf(x);
        case UOP_POWF: return pow_f(x, p0);
        case UOP_AFFINE: return x * p0 + p1;
        default: return NAN_F;  // unknown op: NaN, never silent
    }
}

// dy/dx from x and y = f(x); same formulas as UnaryOp::df on the CPU.
__device__ __forceinline__ float unary_df(int op, float x, float y, float p0) {
    switch (op) {
        case UOP_NEG: return -1.0f;
        case UOP_EXP: return y;
        case UOP_LOG: return 1.0f / x;
        case UOP_SQRT: return 0.5f / y;
        case UOP_RECIP: return -y * y;
        case UOP_ABS: return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f);
        case UOP_SIGMOID: return y * (1.0f - y);
        case UOP_SILU: {
            float s = sigmoid_f(x);
            return s * (1.0f + x * (1.0f - s));
        }
        case UOP_GELU_TANH: {
            float t = tanhf(SQRT_2_OVER_PI * (x + GELU_C * x * x * x));
            float du = SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_C * x * x);
            return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
        }
        case UOP_GELU_ERF: {
            float cdf = 0.5f * (1.0f + erff(x * FRAC_1_SQRT_2));
            float pdf = expf(-0.5f * x * x) * INV_SQRT_2PI;
            return cdf + x * pdf;
        }
        case UOP_RELU: return x > 0.0f ? 1.0f : 0.0f;
        case UOP_TANH: return 1.0f - y * y;
        case UOP_POWF: return p0 * pow_f(x, p0 - 1.0f);
        case UOP_AFFINE: return p0;
        default: return NAN_F;
    }
}

// y[i] = f(x[view(i)]), y row-major [n].
extern "C" __global__ void unary_fwd_f32(long long n, int op, float p0, float p1, Strided sx,
                                         const float* x, float* y) {
    GRID_STRIDE_LOOP(i, n) { y[i] = unary_f(op, x[strided_offset(sx, i)], p0, p1); }
}

// dx[i] = g[i] * f'(x[i], y[i]); all four contiguous [n].
extern "C" __global__ void unary_bwd_f32(long long n, int op, float p0, const float* g,
                                         const float* x, const float* y, float* dx) {
    GRID_STRIDE_LOOP(i, n) { dx[i] = g[i] * unary_df(op, x[i], y[i], p0); }
}

__device__ __forceinline__ float binary_f(int op, float a, float b) {
    switch (op) {
        case BOP_ADD: return a + b;
        case BOP_SUB: return a - b;
        case BOP_MUL: return a * b;
        case BOP_DIV: return a / b;
        // Ties and a NaN in `a` pick `a`, as on the CPU.
        case BOP_MAXIMUM: return (a >= b || a != a) ? a : b;
        case BOP_MINIMUM: return (a <= b || a != a) ? a : b;
        default: return NAN_F;
    }
}

// out[i] = a[view_a(i)] op b[view_b(i)]; both views are already broadcast to
// the output shape (stride 0 on broadcast dims), out row-major [n].
extern "C" __global__ void binary_f32(long long n, int op, Strided sa, const float* a, Strided sb,
                                      const float* b, float* out) {
    GRID_STRIDE_LOOP(i, n) { out[i] = binary_f(op, a[strided_offset(sa, i)], b[strided_offset(sb, i)]); }
}

__device__ __forceinline__ bool compare_f(int op, float x, float z) {
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
extern "C" __global__ void compare_f32(long long n, int op, Strided sa, const float* a, Strided sb,
                                       const float* b, unsigned char* mask) {
    GRID_STRIDE_LOOP(i, n) {
        mask[i] = (unsigned char)compare_f(op, a[strided_offset(sa, i)], b[strided_offset(sb, i)]);
    }
}
