// cublas.cpp: the cuBLAS subset moe-tensor calls, for the emulated device
// (libcublas.so of build.sh). Column-major GEMMs as cuBLAS defines them,
// C = alpha op(A) op(B) + beta C, written as plain loops from that
// definition (independently of moe-tensor's GEMM planning, which is what
// this checks): products summed in double and rounded once to C's type;
// with CUBLAS_COMPUTE_32F_FAST_16BF the f32 operands are rounded to bf16
// first (nearest even), as the tensor cores read them; beta = 0 ignores C.
// Arguments are validated as cuBLAS does (dimensions, leading dimensions),
// and every matrix's extent must lie in one device allocation.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

extern "C" int emuDeviceRangeValid(unsigned long long p, size_t n);

namespace {

enum : int { SUCCESS = 0, NOT_INITIALIZED = 1, INVALID_VALUE = 7, NOT_SUPPORTED = 15 };
enum : int { R_32F = 0, R_64F = 1, R_16BF = 14 };
enum : int { COMPUTE_32F = 68, COMPUTE_32F_PEDANTIC = 69, COMPUTE_64F = 70, COMPUTE_64F_PEDANTIC = 71, COMPUTE_32F_FAST_16BF = 75 };

int fail(int code, const std::string& what) {
    std::fprintf(stderr, "[emulated cuBLAS] %s\n", what.c_str());
    return code;
}

float bf16_round(float x) {
    uint32_t u;
    std::memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return x;  // NaN stays NaN
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    std::memcpy(&x, &u, 4);
    return x;
}

size_t type_size(int t) { return t == R_64F ? 8 : t == R_32F ? 4 : 2; }

double load(const void* p, int type, long long i, bool to_bf16) {
    switch (type) {
        case R_64F: return static_cast<const double*>(p)[i];
        case R_32F: {
            const float v = static_cast<const float*>(p)[i];
            return to_bf16 ? bf16_round(v) : v;
        }
        default: {
            const uint32_t u = uint32_t(static_cast<const uint16_t*>(p)[i]) << 16;
            float f;
            std::memcpy(&f, &u, 4);
            return f;
        }
    }
}

void store(void* p, int type, long long i, double v) {
    switch (type) {
        case R_64F: static_cast<double*>(p)[i] = v; break;
        case R_32F: static_cast<float*>(p)[i] = (float)v; break;
        default: {
            const float f = bf16_round((float)v);
            uint32_t u;
            std::memcpy(&u, &f, 4);
            static_cast<uint16_t*>(p)[i] = uint16_t(u >> 16);
        }
    }
}

struct Gemm {
    int transa, transb;
    long long m, n, k;
    double alpha, beta;
    const void* a;
    int atype;
    long long lda;
    const void* b;
    int btype;
    long long ldb;
    void* c;
    int ctype;
    long long ldc;
    int compute;
};

// Bytes spanned by a column-major rows x cols matrix with leading dim ld.
size_t extent(long long rows, long long cols, long long ld, int type) {
    if (rows == 0 || cols == 0) return 0;
    return size_t((rows - 1) + (cols - 1) * ld + 1) * type_size(type);
}

int check(const Gemm& g, const char* op) {
    const std::string name = op;
    if (g.transa < 0 || g.transa > 1 || g.transb < 0 || g.transb > 1) return fail(INVALID_VALUE, name + ": transpose other than N or T");
    if (g.m < 0 || g.n < 0 || g.k < 0) return fail(INVALID_VALUE, name + ": negative dimension");
    const long long arows = g.transa ? g.k : g.m, brows = g.transb ? g.n : g.k;
    if (g.lda < std::max(1LL, arows)) return fail(INVALID_VALUE, name + ": lda " + std::to_string(g.lda) + " < rows of A " + std::to_string(arows));
    if (g.ldb < std::max(1LL, brows)) return fail(INVALID_VALUE, name + ": ldb " + std::to_string(g.ldb) + " < rows of B " + std::to_string(brows));
    if (g.ldc < std::max(1LL, g.m)) return fail(INVALID_VALUE, name + ": ldc " + std::to_string(g.ldc) + " < m " + std::to_string(g.m));
    const bool f64 = g.compute == COMPUTE_64F || g.compute == COMPUTE_64F_PEDANTIC;
    const bool ok_types = f64 ? (g.atype == R_64F && g.btype == R_64F && g.ctype == R_64F)
                              : (g.atype != R_64F && g.btype != R_64F && g.ctype != R_64F);
    if (!ok_types) return fail(NOT_SUPPORTED, name + ": data types do not match the compute type");
    const long long acols = g.transa ? g.m : g.k, bcols = g.transb ? g.k : g.n;
    if (g.m && g.n && g.k) {
        if (!emuDeviceRangeValid((uintptr_t)g.a, extent(arows, acols, g.lda, g.atype))) return fail(INVALID_VALUE, name + ": A lies outside every device allocation");
        if (!emuDeviceRangeValid((uintptr_t)g.b, extent(brows, bcols, g.ldb, g.btype))) return fail(INVALID_VALUE, name + ": B lies outside every device allocation");
    }
    if (g.m && g.n && !emuDeviceRangeValid((uintptr_t)g.c, extent(g.m, g.n, g.ldc, g.ctype)))
        return fail(INVALID_VALUE, name + ": C lies outside every device allocation");
    return SUCCESS;
}

void run(const Gemm& g) {
    const bool fast = g.compute == COMPUTE_32F_FAST_16BF;
    for (long long j = 0; j < g.n; ++j)
        for (long long i = 0; i < g.m; ++i) {
            double sum = 0.0;
            for (long long l = 0; l < g.k; ++l) {
                const double x = load(g.a, g.atype, g.transa ? l + i * g.lda : i + l * g.lda, fast);
                const double y = load(g.b, g.btype, g.transb ? j + l * g.ldb : l + j * g.ldb, fast);
                sum += x * y;
            }
            const long long ci = i + j * g.ldc;
            const double c = g.beta == 0.0 ? 0.0 : g.beta * load(g.c, g.ctype, ci, false);
            store(g.c, g.ctype, ci, g.alpha * sum + c);
        }
}

double scalar(const void* p, int compute) {
    return (compute == COMPUTE_64F || compute == COMPUTE_64F_PEDANTIC) ? *static_cast<const double*>(p)
                                                                        : *static_cast<const float*>(p);
}

int strided(Gemm g, long long sa, long long sb, long long sc, long long batch, const char* op) {
    if (batch < 0) return fail(INVALID_VALUE, std::string(op) + ": negative batch count");
    for (long long i = 0; i < batch; ++i) {
        Gemm gi = g;
        gi.a = static_cast<const char*>(g.a) + i * sa * (long long)type_size(g.atype);
        gi.b = static_cast<const char*>(g.b) + i * sb * (long long)type_size(g.btype);
        gi.c = static_cast<char*>(g.c) + i * sc * (long long)type_size(g.ctype);
        if (int e = check(gi, op)) return e;
        run(gi);
    }
    return SUCCESS;
}

int handle_tag;

}  // namespace

extern "C" {

int cublasCreate_v2(void** handle) {
    *handle = &handle_tag;
    return SUCCESS;
}
int cublasDestroy_v2(void*) { return SUCCESS; }
int cublasSetStream_v2(void*, void*) { return SUCCESS; }
int cublasSetMathMode(void*, int) { return SUCCESS; }
int cublasSetWorkspace_v2(void*, void*, size_t) { return SUCCESS; }
int cublasSetPointerMode_v2(void*, int mode) { return mode == 0 ? SUCCESS : fail(NOT_SUPPORTED, "device pointer mode"); }
int cublasGetVersion_v2(void*, int* v) {
    *v = 130000;
    return SUCCESS;
}

int cublasSgemm_v2(void*, int ta, int tb, int m, int n, int k, const float* alpha, const float* a, int lda, const float* b,
                   int ldb, const float* beta, float* c, int ldc) {
    Gemm g{ta, tb, m, n, k, *alpha, *beta, a, R_32F, lda, b, R_32F, ldb, c, R_32F, ldc, COMPUTE_32F};
    if (int e = check(g, "cublasSgemm")) return e;
    run(g);
    return SUCCESS;
}
int cublasDgemm_v2(void*, int ta, int tb, int m, int n, int k, const double* alpha, const double* a, int lda,
                   const double* b, int ldb, const double* beta, double* c, int ldc) {
    Gemm g{ta, tb, m, n, k, *alpha, *beta, a, R_64F, lda, b, R_64F, ldb, c, R_64F, ldc, COMPUTE_64F};
    if (int e = check(g, "cublasDgemm")) return e;
    run(g);
    return SUCCESS;
}
int cublasSgemmStridedBatched(void*, int ta, int tb, int m, int n, int k, const float* alpha, const float* a, int lda,
                              long long sa, const float* b, int ldb, long long sb, const float* beta, float* c, int ldc,
                              long long sc, int batch) {
    Gemm g{ta, tb, m, n, k, *alpha, *beta, a, R_32F, lda, b, R_32F, ldb, c, R_32F, ldc, COMPUTE_32F};
    return strided(g, sa, sb, sc, batch, "cublasSgemmStridedBatched");
}
int cublasDgemmStridedBatched(void*, int ta, int tb, int m, int n, int k, const double* alpha, const double* a, int lda,
                              long long sa, const double* b, int ldb, long long sb, const double* beta, double* c,
                              int ldc, long long sc, int batch) {
    Gemm g{ta, tb, m, n, k, *alpha, *beta, a, R_64F, lda, b, R_64F, ldb, c, R_64F, ldc, COMPUTE_64F};
    return strided(g, sa, sb, sc, batch, "cublasDgemmStridedBatched");
}
int cublasGemmEx(void*, int ta, int tb, int m, int n, int k, const void* alpha, const void* a, int atype, int lda,
                 const void* b, int btype, int ldb, const void* beta, void* c, int ctype, int ldc, int compute, int) {
    Gemm g{ta, tb, m, n, k, scalar(alpha, compute), scalar(beta, compute), a, atype, lda, b, btype, ldb, c, ctype, ldc, compute};
    if (int e = check(g, "cublasGemmEx")) return e;
    run(g);
    return SUCCESS;
}
int cublasGemmStridedBatchedEx(void*, int ta, int tb, int m, int n, int k, const void* alpha, const void* a, int atype,
                               int lda, long long sa, const void* b, int btype, int ldb, long long sb, const void* beta,
                               void* c, int ctype, int ldc, long long sc, int batch, int compute, int) {
    Gemm g{ta, tb, m, n, k, scalar(alpha, compute), scalar(beta, compute), a, atype, lda, b, btype, ldb, c, ctype, ldc, compute};
    return strided(g, sa, sb, sc, batch, "cublasGemmStridedBatchedEx");
}
// Groups of problems; problem p of group i reads the i-th entry of every
// per-group array and the p-th pointers of A, B and C in order.
int cublasGemmGroupedBatchedEx(void*, const int* ta, const int* tb, const int* m, const int* n, const int* k,
                               const void* alpha, const void* const* a, int atype, const int* lda,
                               const void* const* b, int btype, const int* ldb, const void* beta, void* const* c,
                               int ctype, const int* ldc, int groups, const int* group_size, int compute) {
    const size_t scalar_bytes = (compute == COMPUTE_64F || compute == COMPUTE_64F_PEDANTIC) ? 8 : 4;
    long long problems = 0;
    for (int i = 0; i < groups; ++i) problems += group_size[i];
    // The pointer arrays are read by the device, so they must be device memory.
    const size_t pointer_bytes = size_t(problems) * sizeof(void*);
    if (problems && (!emuDeviceRangeValid((uintptr_t)a, pointer_bytes) || !emuDeviceRangeValid((uintptr_t)b, pointer_bytes) ||
                     !emuDeviceRangeValid((uintptr_t)c, pointer_bytes)))
        return fail(INVALID_VALUE, "cublasGemmGroupedBatchedEx: the A, B and C pointer arrays must be device memory");
    long long p = 0;
    for (int i = 0; i < groups; ++i) {
        const double al = scalar(static_cast<const char*>(alpha) + i * scalar_bytes, compute);
        const double be = scalar(static_cast<const char*>(beta) + i * scalar_bytes, compute);
        for (int s = 0; s < group_size[i]; ++s, ++p) {
            Gemm g{ta[i], tb[i], m[i], n[i], k[i], al, be, a[p], atype, lda[i], b[p], btype, ldb[i], c[p], ctype, ldc[i], compute};
            if (int e = check(g, "cublasGemmGroupedBatchedEx")) return e;
            run(g);
        }
    }
    return SUCCESS;
}

const char* cublasGetStatusString(int s) { return s == 0 ? "CUBLAS_STATUS_SUCCESS" : "CUBLAS_STATUS_ERROR"; }
const char* cublasGetStatusName(int s) { return cublasGetStatusString(s); }

}  // extern "C"
