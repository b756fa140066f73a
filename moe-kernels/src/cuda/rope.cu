// rope.cu: rotary embeddings in the HF rotate_half convention: within each
// head vector of size dh = 2*half, element i < half pairs with i + half.
//   y[i]        = x[i] * cos - x[i+half] * sin
//   y[i + half] = x[i+half] * cos + x[i] * sin
// with cos/sin = table[pos[t], i]. Backward is the same kernel with
// sign = -1 (rotation by the opposite angle), forward uses sign = +1.
//
// x, y: contiguous [outer, t, dh]; pos: [groups, t] positions (checked on
// the host to be in [0, max_pos)), leading row o using position row
// o / rows_per_group (rows_per_group = outer / groups); cos, sin:
// [max_pos, half]. One thread per (o, t, i < half):
// launch::elementwise(outer * t * half).
extern "C" __global__ void rope_f32(long long outer, int t, int half, long long rows_per_group, float sign,
                                    const long long* pos, const float* cos_t, const float* sin_t,
                                    const float* x, float* y) {
    long long n = outer * t * half;
    GRID_STRIDE_LOOP(j, n) {
        long long i = j % half;        // pair index within the head vector
        long long row = j / half;      // (o, tt) flattened
        long long tt = row % t;        // position slot
        long long o = row / t;         // leading row
        long long p = pos[(o / rows_per_group) * t + tt];
        float c = cos_t[p * half + i];
        float s = sign * sin_t[p * half + i];
        long long base = row * 2 * half;
        float a = x[base + i], b = x[base + i + half];
        y[base + i] = a * c - b * s;
        y[base + i + half] = b * c + a * s;
    }
}
