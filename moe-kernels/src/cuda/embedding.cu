// embedding.cu: row gather from a [vocab, dim] f32 table by i64 ids, and
// its backward (scatter-add into the table's gradient).

// y[k, d] = w[ids[k], d], y: [n_ids, dim]. An id outside [0, vocab) sets
// bad[0] = 1 and bad[1] = that id (one of them if several; checked by the
// host) and writes 0. Launch::elementwise(n_ids * dim).
extern "C" __global__ void embedding_fwd_f32(long long n_ids, int dim, long long vocab, const long long* ids,
                                             const float* w, float* y, long long* bad) {
    long long n = n_ids * dim;
    GRID_STRIDE_LOOP(i, n) {
        long long k = i / dim, d = i % dim;
        long long id = ids[k];
        if (id < 0 || id >= vocab) {
            bad[0] = 1;
            bad[1] = id;
            y[i] = 0.0f;
        } else {
            y[i] = w[id * dim + d];
        }
    }
}

// dw[ids[k], d] += g[k, d], dw zeroed by the host first. atomicAdd: the
// order of additions into a repeated id is not fixed, so the result can
// differ in the last bits from run to run (the CPU sums in id order).
// Ids were validated by the forward; invalid ones are skipped here.
// Launch::elementwise(n_ids * dim).
extern "C" __global__ void embedding_bwd_f32(long long n_ids, int dim, long long vocab, const long long* ids,
                                             const float* g, float* dw) {
    long long n = n_ids * dim;
    GRID_STRIDE_LOOP(i, n) {
        long long k = i / dim, d = i % dim;
        long long id = ids[k];
        if (id >= 0 && id < vocab) atomicAdd(&dw[id * dim + d], g[i]);
    }
}
