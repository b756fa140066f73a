// scan.cu: inclusive prefix sums along one dim (cumsum) and suffix sums
// (reverse != 0: cumsum's backward), f32, f64, i64, and u8 summed into i64.
//
// x is any view of [outer, dim, inner]; element (o, d, i) lives at
// strided_offset(sx, (o * dim) * inner + i) + d * sd, sd being the view's
// stride along dim. y is row-major [outer, dim, inner]. One thread per
// (o, i) column (n = outer * inner) runs the column's sum in ascending d
// (descending when reverse): the CPU's additions in the CPU's order, so
// results are deterministic and equal to the CPU's. The first element is
// copied, not added to zero (0 + -0 would be +0). launch::elementwise(n).
template <typename S, typename D>
__device__ void scan_cols(long long n, long long dim, long long inner, long long sd, int reverse, const Strided& sx,
                          const S* x, D* y) {
    GRID_STRIDE_LOOP(c, n) {
        long long o = c / inner, i = c - o * inner;
        long long base = strided_offset(sx, o * dim * inner + i);
        D* yc = y + o * dim * inner + i;
        D acc = D(0);
        for (long long j = 0; j < dim; ++j) {
            long long d = reverse ? dim - 1 - j : j;
            D v = (D)x[base + d * sd];
            acc = j == 0 ? v : v + acc;
            yc[d * inner] = acc;
        }
    }
}

#define SCAN(NAME, S, D)                                                                           \
    extern "C" __global__ void NAME(long long n, long long dim, long long inner, long long sd, int reverse, \
                                    Strided sx, const S* x, D* y) {                                \
        scan_cols<S, D>(n, dim, inner, sd, reverse, sx, x, y);                                     \
    }
SCAN(cumsum_f32, float, float)
SCAN(cumsum_f64, double, double)
SCAN(cumsum_i64, long long, long long)
SCAN(cumsum_u8_i64, unsigned char, long long)
