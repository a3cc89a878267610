// Hamming distances between packed binary codes: all pairs (cdist) and the k nearest (topk).
//
// Codes arrive as rows of `words` 64-bit words: the caller pads each code to a multiple of
// eight bytes with zeros, and zero padding XORs to zero, so it never adds to a distance. The
// CPU twins are thrifty_hamming::binary::{cdist, topk}; tests check that the results are
// identical, ties included: topk keeps the k smallest (distance, index) pairs.

constexpr int kTile = 16;  // cdist: a kTile x kTile block of outputs per thread block
constexpr unsigned kFullMask = 0xffffffffu;

// out[i * nb + j] = popcount(a_i XOR b_j). Each block stages kTile words of kTile rows of a
// and of b in shared memory, so each word is read from global memory once per tile rather
// than once per output. Blocks stride over row tiles, since gridDim.y is capped at 65535.
extern "C" __global__ void hamming_cdist(const unsigned long long* __restrict__ a,
                                         const unsigned long long* __restrict__ b, int na,
                                         int nb, int words, int* __restrict__ out) {
    // One column of padding keeps the transposed reads of sb off a single bank.
    __shared__ unsigned long long sa[kTile][kTile + 1];
    __shared__ unsigned long long sb[kTile][kTile + 1];
    const int tx = threadIdx.x;
    const int ty = threadIdx.y;
    const int col = blockIdx.x * kTile + tx;
    const int row_tiles = (na + kTile - 1) / kTile;
    for (int tile = blockIdx.y; tile < row_tiles; tile += gridDim.y) {
        const int row = tile * kTile + ty;
        const int load_a = tile * kTile + ty;
        const int load_b = blockIdx.x * kTile + ty;
        int acc = 0;
        for (int w0 = 0; w0 < words; w0 += kTile) {
            const int w = w0 + tx;
            sa[ty][tx] = (load_a < na && w < words) ? a[static_cast<size_t>(load_a) * words + w]
                                                    : 0ull;
            sb[ty][tx] = (load_b < nb && w < words) ? b[static_cast<size_t>(load_b) * words + w]
                                                    : 0ull;
            __syncthreads();
            #pragma unroll
            for (int x = 0; x < kTile; ++x) {
                acc += __popcll(sa[ty][x] ^ sb[tx][x]);
            }
            __syncthreads();
        }
        if (row < na && col < nb) {
            out[static_cast<size_t>(row) * nb + col] = acc;
        }
    }
}

__device__ int distance(const unsigned long long* __restrict__ query,
                        const unsigned long long* __restrict__ code, int words) {
    int d = 0;
    for (int w = 0; w < words; ++w) {
        d += __popcll(query[w] ^ code[w]);
    }
    return d;
}

// Exclusive prefix sum of `value` over the block (blockDim.x a multiple of 32, at most 1024);
// `*total` receives the block's sum. Every thread of the block must call it.
__device__ int block_exclusive_scan(int value, int* warp_sums, int* total) {
    const int lane = threadIdx.x % 32;
    const int warp = threadIdx.x / 32;
    const int warps = blockDim.x / 32;
    int inclusive = value;
    for (int offset = 1; offset < 32; offset *= 2) {
        const int up = __shfl_up_sync(kFullMask, inclusive, offset);
        if (lane >= offset) {
            inclusive += up;
        }
    }
    if (lane == 31) {
        warp_sums[warp] = inclusive;
    }
    __syncthreads();
    if (warp == 0) {
        int sum = lane < warps ? warp_sums[lane] : 0;
        for (int offset = 1; offset < 32; offset *= 2) {
            const int up = __shfl_up_sync(kFullMask, sum, offset);
            if (lane >= offset) {
                sum += up;
            }
        }
        warp_sums[lane] = sum;  // inclusive over warps; warp_sums holds 32 entries
    }
    __syncthreads();
    const int before = warp > 0 ? warp_sums[warp - 1] : 0;
    *total = warp_sums[warps - 1];
    __syncthreads();  // the next call may overwrite warp_sums
    return before + inclusive - value;
}

// The k nearest codes of each query, one block per query, in two passes over the database:
//
// 1. a shared-memory histogram of the distances (max_distance + 1 bins) gives the k-th
//    smallest distance t, the count `below` of codes closer than t, and so the number
//    k - below of codes at exactly t to keep;
// 2. a scan of the database in index order, tile by tile, keeps every code with d < t and,
//    through a block-wide prefix sum over the ties, the lowest-indexed k - below codes with
//    d == t, so the choice among ties does not depend on thread scheduling.
//
// The kept pairs are written unsorted: codes with d < t in index order, then the ties in
// index order. The caller sorts each row by (distance, index). k must be in 1..=nb.
//
// Dynamic shared memory: words * 8 bytes for the query, then (max_distance + 1) ints.
extern "C" __global__ void hamming_topk(const unsigned long long* __restrict__ queries,
                                        const unsigned long long* __restrict__ db, int nq,
                                        int nb, int words, int max_distance, int k,
                                        int* __restrict__ out_distances,
                                        long long* __restrict__ out_indices) {
    extern __shared__ unsigned long long shared[];
    unsigned long long* query = shared;
    int* histogram = reinterpret_cast<int*>(shared + words);
    __shared__ int warp_sums[32];
    __shared__ int threshold;
    __shared__ int below;
    const int bins = max_distance + 1;
    const int tid = threadIdx.x;

    for (int q = blockIdx.x; q < nq; q += gridDim.x) {
        for (int w = tid; w < words; w += blockDim.x) {
            query[w] = queries[static_cast<size_t>(q) * words + w];
        }
        for (int b = tid; b < bins; b += blockDim.x) {
            histogram[b] = 0;
        }
        __syncthreads();
        for (int j = tid; j < nb; j += blockDim.x) {
            const int d = distance(query, db + static_cast<size_t>(j) * words, words);
            atomicAdd(&histogram[d], 1);
        }
        __syncthreads();

        // The k-th smallest distance: each thread sums a run of bins, a block scan places
        // the runs, and the one thread whose run crosses k walks it.
        const int per_thread = (bins + blockDim.x - 1) / blockDim.x;
        const int lo = min(tid * per_thread, bins);
        const int hi = min(lo + per_thread, bins);
        int run = 0;
        for (int b = lo; b < hi; ++b) {
            run += histogram[b];
        }
        int total = 0;
        int before = block_exclusive_scan(run, warp_sums, &total);
        if (before < k && k <= before + run) {
            for (int b = lo; b < hi; ++b) {
                if (before + histogram[b] >= k) {
                    threshold = b;
                    below = before;
                    break;
                }
                before += histogram[b];
            }
        }
        __syncthreads();
        const int t = threshold;
        const int closer = below;
        const int ties_wanted = k - closer;

        int closer_taken = 0;
        int ties_taken = 0;
        int* distances = out_distances + static_cast<size_t>(q) * k;
        long long* indices = out_indices + static_cast<size_t>(q) * k;
        for (int base = 0; base < nb; base += blockDim.x) {
            const int j = base + tid;
            const int d = j < nb ? distance(query, db + static_cast<size_t>(j) * words, words)
                                 : max_distance + 1;
            const int is_closer = d < t ? 1 : 0;
            const int is_tie = d == t ? 1 : 0;
            int closer_total = 0;
            int ties_total = 0;
            const int closer_rank = block_exclusive_scan(is_closer, warp_sums, &closer_total);
            const int tie_rank = block_exclusive_scan(is_tie, warp_sums, &ties_total);
            if (is_closer) {
                const int slot = closer_taken + closer_rank;
                distances[slot] = d;
                indices[slot] = j;
            } else if (is_tie && ties_taken + tie_rank < ties_wanted) {
                const int slot = closer + ties_taken + tie_rank;
                distances[slot] = d;
                indices[slot] = j;
            }
            closer_taken += closer_total;
            ties_taken += ties_total;
            if (closer_taken == closer && ties_taken >= ties_wanted) {
                break;  // uniform across the block: every thread saw the same totals
            }
        }
        __syncthreads();  // the next query reuses query[] and histogram[]
    }
}
