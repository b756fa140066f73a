// route_plan.cu: the MoE dispatch plan on the device, so that routing never
// reads the chosen experts back to the host. A stable counting sort of the
// C = N * K token copies by expert (copies of one expert stay in copy order,
// as moe-router's host `Dispatch::plan` sorts them).
//
// Inputs: ids[C] (i64, row-major [N, K]), capacity and keep: an expert keeps
// its first `capacity` copies in copy order (Megatron-LM's position policy;
// capacity < 0: no limit) among the copies whose keep flag is set (keep may
// be null: every copy; route_keep_by_score sets the flags of the score
// policy). Outputs, i64 unless said:
//   selected[E]      copies choosing each expert (before capacity),
//   counts[E]        kept copies per expert (the segment sizes),
//   bad[1]           copies whose id is not in 0..E (they are left out),
//   rank[C]          a kept copy's position inside its expert's segment,
//   offsets[E + 1]   segment starts, offsets[E] = kept copies,
//   row_of_copy[C]   the sorted row of each copy, -1 when dropped or bad,
//   copy_of_row[C]   the copy placed in each sorted row,
//   token_of_row[C]  its source token (copy / K); rows past offsets[E]
//                    (only when copies were dropped or bad) get copy -1 and
//                    token 0, so a gather by token_of_row stays in bounds,
//   dropped[C]       u8, 1 for a copy in no segment (dropped or bad).
//
// Two launches: route_plan_rank (one block per expert, blockDim.x =
// PLAN_THREADS), then route_plan_place (launch::elementwise(max(C, E + 1))).
// The score policy plans twice: dropless, then route_keep_by_score over the
// dropless segments (launch::elementwise(C)), then again with its flags.

#define PLAN_THREADS 256

// Exclusive prefix sum of one int per thread over a PLAN_THREADS block,
// Hillis-Steele in shared memory; returns this thread's exclusive sum and
// stores the block total in *total.
__device__ int plan_block_scan(int v, int* total) {
    __shared__ int buf[2][PLAN_THREADS];
    int t = threadIdx.x, cur = 0;
    buf[0][t] = v;
    __syncthreads();
    for (int step = 1; step < PLAN_THREADS; step *= 2) {
        int x = buf[cur][t];
        if (t >= step) x += buf[cur][t - step];
        buf[cur ^ 1][t] = x;
        cur ^= 1;
        __syncthreads();
    }
    int inclusive = buf[cur][t];
    *total = buf[cur][PLAN_THREADS - 1];
    __syncthreads();  // buf is reused by the next call
    return inclusive - v;
}

// rank[c] of a copy of expert e: its position among e's kept copies, -1
// when dropped (by its keep flag or by capacity: kept copies are the first
// ones, so a kept copy's position is also its row within e's segment).
extern "C" __global__ void route_plan_rank(long long copies, int num_experts, long long capacity,
                                           const long long* ids, const unsigned char* keep, long long* selected,
                                           long long* counts, long long* bad, long long* rank) {
    const int e = blockIdx.x;
    if (e >= num_experts) return;
    long long chose = 0, eligible = 0, invalid = 0;
    for (long long base = 0; base < copies; base += PLAN_THREADS) {
        long long c = base + threadIdx.x;
        long long id = c < copies ? ids[c] : -1;
        int mine = id == e;
        int flagged = mine && (keep == 0 || keep[c]);
        int total_mine = 0, total_flagged = 0, total_bad = 0;
        long long position = eligible + plan_block_scan(flagged, &total_flagged);
        // keep is uniform over the block, so every thread takes this branch or none.
        if (keep != 0) plan_block_scan(mine, &total_mine);
        else total_mine = total_flagged;
        if (e == 0) plan_block_scan(c < copies && (id < 0 || id >= num_experts), &total_bad);
        if (mine) rank[c] = flagged && (capacity < 0 || position < capacity) ? position : -1;
        chose += total_mine;
        eligible += total_flagged;
        invalid += total_bad;
    }
    if (threadIdx.x == 0) {
        counts[e] = capacity < 0 || eligible < capacity ? eligible : capacity;
        selected[e] = chose;
        if (e == 0) bad[0] = invalid;
    }
}

// Kept copies of the experts before `e`: the start of e's segment.
__device__ __forceinline__ long long plan_segment_start(const long long* counts, long long e) {
    long long start = 0;
    for (long long j = 0; j < e; ++j) start += counts[j];
    return start;
}

extern "C" __global__ void route_plan_place(long long copies, int top_k, int num_experts, const long long* ids,
                                            const long long* counts, const long long* rank, long long* offsets,
                                            long long* row_of_copy, long long* copy_of_row, long long* token_of_row,
                                            unsigned char* dropped) {
    long long n = copies > num_experts + 1 ? copies : num_experts + 1;
    GRID_STRIDE_LOOP(i, n) {
        if (i <= num_experts) offsets[i] = plan_segment_start(counts, i);
        if (i < copies) {
            long long id = ids[i];
            bool placed = id >= 0 && id < num_experts && rank[i] >= 0;
            long long row = placed ? plan_segment_start(counts, id) + rank[i] : -1;
            row_of_copy[i] = row;
            dropped[i] = placed ? 0 : 1;
            if (placed) {
                copy_of_row[row] = i;
                token_of_row[row] = i / top_k;
            }
            // Row i is past every segment: no copy writes it.
            if (i >= plan_segment_start(counts, num_experts)) {
                copy_of_row[i] = -1;
                token_of_row[i] = 0;
            }
        }
    }
}

// Rust's f32/f64 total_cmp order as a signed integer key: flipping the
// magnitude bits of negatives makes integer order equal float order
// (-NaN < -inf < ... < -0 < +0 < ... < +inf < +NaN).
__device__ __forceinline__ long long plan_score_key(float x) {
    int b = __float_as_int(x);
    return (long long)(b ^ (int)(((unsigned)(b >> 31)) >> 1));
}
__device__ __forceinline__ long long plan_score_key(double x) {
    long long b = __double_as_longlong(x);
    return b ^ (long long)(((unsigned long long)(b >> 63)) >> 1);
}

// keep[c] for dropping by score: expert e keeps the `capacity` copies with
// the highest scores, equal scores to the earlier copy (a stable sort by
// score, descending, in total_cmp order, as moe-router's host rule). Reads
// a dropless plan's segments (offsets, copy_of_row: e's copies in copy
// order) so each copy compares itself with its own expert's copies only:
// O(C * load) work, no sort. Copies with an id outside 0..E get 0.
template <typename T>
__device__ void keep_by_score(long long copies, int num_experts, long long capacity, const long long* ids,
                              const T* scores, const long long* offsets, const long long* copy_of_row,
                              unsigned char* keep) {
    GRID_STRIDE_LOOP(c, copies) {
        long long id = ids[c];
        if (id < 0 || id >= num_experts) {
            keep[c] = 0;
            continue;
        }
        const long long start = offsets[id], end = offsets[id + 1];
        if (end - start <= capacity) {
            keep[c] = 1;
            continue;
        }
        const long long key = plan_score_key(scores[c]);
        long long ahead = 0;
        for (long long r = start; r < end && ahead < capacity; ++r) {
            const long long other = copy_of_row[r];
            const long long k = plan_score_key(scores[other]);
            ahead += k > key || (k == key && other < c);
        }
        keep[c] = ahead < capacity ? 1 : 0;
    }
}

extern "C" __global__ void route_keep_by_score_f32(long long copies, int num_experts, long long capacity,
                                                   const long long* ids, const float* scores,
                                                   const long long* offsets, const long long* copy_of_row,
                                                   unsigned char* keep) {
    keep_by_score(copies, num_experts, capacity, ids, scores, offsets, copy_of_row, keep);
}

extern "C" __global__ void route_keep_by_score_f64(long long copies, int num_experts, long long capacity,
                                                   const long long* ids, const double* scores,
                                                   const long long* offsets, const long long* copy_of_row,
                                                   unsigned char* keep) {
    keep_by_score(copies, num_experts, capacity, ids, scores, offsets, copy_of_row, keep);
}
