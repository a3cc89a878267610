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

// ---------------------------------------------------------------------------------------------
// Query-tiled top-k: hamming_topk_tiled_w<W> and hamming_topk_merge.
//
// The one-block-per-query kernel above reads the whole database once per query. Here a block
// holds kTiledQueries queries in registers and walks one slice of the database in tiles of
// kTiledCodes codes staged in shared memory, so each code word read from shared memory feeds
// kTiledQueriesPerWarp popcounts and each tile is read from global memory once per query
// tile instead of once per query. The grid is (query tiles, database slices); a second kernel
// merges the per-slice lists.
//
// A candidate is one 32-bit key, distance << kTiledIndexBits | index within the slice. Keys
// of one slice are distinct, so "the k smallest (distance, index) pairs" is "the k smallest
// keys", and comparing keys against the current k-th key rejects almost every code with one
// compare once the list has filled. Lists start as k distinct sentinels above every real key
// (a slice may hold fewer than k codes); codes past the slice's end get the key 0xffffffff,
// which no threshold admits.
//
// Each warp owns kTiledQueriesPerWarp queries: their sorted lists of k keys, their candidate
// buffers of kTiledBuffer keys and their thresholds (list[k - 1], held in registers). Lanes
// that beat the threshold append through a ballot; a full buffer is merged into the list by
// ranks, which needs no sort because keys are distinct. Thresholds only fall, so a code
// rejected against an older threshold would also be rejected by the final list: the list at
// the end of the slice is exactly the slice's k smallest keys, whatever order lanes ran in.
//
// tests/hamming/test_hamming_tiled.py repeats this algorithm step by step in NumPy against
// the CPU top-k; python/thrifty/hamming/_gpu.py mirrors the constants below and picks the
// slicing.

constexpr int kTiledWarps = 8;
constexpr int kTiledThreads = kTiledWarps * 32;
constexpr int kTiledQueriesPerWarp = 4;
constexpr int kTiledQueries = kTiledWarps * kTiledQueriesPerWarp;
constexpr int kTiledCodes = 256;  // as many as threads: each stages W words per tile
constexpr int kTiledCodesPerLane = 2;  // codes a lane scores per step, for independent chains
constexpr int kTiledBuffer = 64;  // candidate slots per query, at least one ballot's 32
constexpr int kTiledMaxK = 128;
constexpr int kTiledMaxWords = 8;
constexpr int kTiledIndexBits = 22;  // a slice holds at most 2^22 codes
constexpr unsigned kTiledNoKey = 0xffffffffu;
// The largest key a real code can have: the widest code's largest distance, the last index.
constexpr unsigned kTiledLargestKey =
    (static_cast<unsigned>(kTiledMaxWords * 64) << kTiledIndexBits) |
    ((1u << kTiledIndexBits) - 1u);
// Sentinels are kTiledNoKey - (k - 1) .. kTiledNoKey, all above kTiledLargestKey.
static_assert(kTiledNoKey - (kTiledMaxK - 1) > kTiledLargestKey, "sentinels must sort last");
static_assert(kTiledCodes == kTiledThreads, "each thread stages W words of a tile");
static_assert(kTiledCodes % (32 * kTiledCodesPerLane) == 0, "steps must cover a tile");
static_assert(kTiledBuffer >= 32, "a buffer must take a whole ballot after a merge");
static_assert((kTiledMaxK + kTiledBuffer) % 32 == 0, "merge slots per lane");

// Number of keys in the sorted list[0..n) that are smaller than x (32-bit slice keys, and
// the 64-bit keys of the cross-slice merge).
template <typename Key>
__device__ int count_below(const Key* list, int n, Key x) {
    int lo = 0;
    int hi = n;
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (list[mid] < x) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

// Merge the m buffered keys into the sorted list of k keys, keeping the k smallest. Every key
// is distinct, so each one's rank in the union is its position in the result; keys ranked k
// or later drop out. Called by a whole warp; returns the new threshold, list[k - 1].
// Not inlined: it runs rarely, and eight inlined copies would crowd the scoring loop.
__device__ __noinline__ unsigned merge_buffer(unsigned* list, const unsigned* buffer, int k,
                                              int m, int lane) {
    constexpr int kSlots = (kTiledMaxK + kTiledBuffer) / 32;
    unsigned keys[kSlots];
    int ranks[kSlots];
    __syncwarp();  // the buffer's last appends come from other lanes
    #pragma unroll
    for (int s = 0; s < kSlots; ++s) {
        const int e = lane + 32 * s;
        ranks[s] = k;
        keys[s] = kTiledNoKey;
        if (e < k + m) {
            const unsigned x = e < k ? list[e] : buffer[e - k];
            int rank = e < k ? e : count_below(list, k, x);
            // Most buffered keys lose: stop counting once a key is out of the k.
            for (int b = 0; b < m && rank < k; ++b) {
                rank += buffer[b] < x ? 1 : 0;
            }
            keys[s] = x;
            ranks[s] = rank;
        }
    }
    __syncwarp();  // every lane has read the old list before any lane overwrites it
    #pragma unroll
    for (int s = 0; s < kSlots; ++s) {
        if (ranks[s] < k) {
            list[ranks[s]] = keys[s];
        }
    }
    __syncwarp();
    return list[k - 1];
}

// Dynamic shared memory: W * (kTiledCodes + 1) words of the tile (one word of padding per row
// keeps the transposing stores off a single bank), then kTiledQueries lists of k keys, then
// kTiledQueries buffers of kTiledBuffer keys. `partial` receives, for query q and slice s,
// the slice's k smallest keys in order at (q * slices + s) * k. k must be in 1..=kTiledMaxK
// and slice_codes at most 2^kTiledIndexBits; gridDim.y * slice_codes must cover nb.
template <int W>
__device__ void topk_tiled(const unsigned long long* __restrict__ queries,
                           const unsigned long long* __restrict__ db, int nq, int nb, int k,
                           int slice_codes, unsigned* __restrict__ partial) {
    extern __shared__ unsigned long long tiled_shared[];
    constexpr int kRow = kTiledCodes + 1;
    unsigned long long* tile = tiled_shared;
    unsigned* lists = reinterpret_cast<unsigned*>(tiled_shared + W * kRow);
    unsigned* buffers = lists + kTiledQueries * k;

    const int tid = threadIdx.x;
    const int lane = tid % 32;
    const int warp = tid / 32;
    const int slices = gridDim.y;
    const int slice = blockIdx.y;
    const int first_query = blockIdx.x * kTiledQueries + warp * kTiledQueriesPerWarp;
    // Warps whose queries all lie past nq still stage tiles, but score nothing.
    const bool scoring = first_query < nq;
    const long long slice_start = static_cast<long long>(slice) * slice_codes;
    const int slice_count =
        static_cast<int>(min(static_cast<long long>(slice_codes), nb - slice_start));

    unsigned long long query[kTiledQueriesPerWarp][W];
    unsigned threshold[kTiledQueriesPerWarp];
    int buffered[kTiledQueriesPerWarp];
    #pragma unroll
    for (int q = 0; q < kTiledQueriesPerWarp; ++q) {
        const int row = min(first_query + q, nq - 1);  // rows past nq score a stand-in
        #pragma unroll
        for (int w = 0; w < W; ++w) {
            query[q][w] = queries[static_cast<size_t>(row) * W + w];
        }
        unsigned* list = lists + (warp * kTiledQueriesPerWarp + q) * k;
        for (int i = lane; i < k; i += 32) {
            list[i] = kTiledNoKey - static_cast<unsigned>(k - 1 - i);
        }
        threshold[q] = kTiledNoKey;
        buffered[q] = 0;
    }

    // Thread t stages words t, t + kTiledThreads, ... of the tile's row-major block, so the
    // global reads are coalesced; the next tile's words wait in registers while this one is
    // scored.
    unsigned long long staged[W];
    auto load = [&](int tile_start) {
        const unsigned long long* base = db + (slice_start + tile_start) * W;
        #pragma unroll
        for (int i = 0; i < W; ++i) {
            const int e = tid + i * kTiledThreads;
            staged[i] = tile_start + e / W < slice_count ? base[e] : 0ull;
        }
    };
    auto store = [&]() {
        #pragma unroll
        for (int i = 0; i < W; ++i) {
            const int e = tid + i * kTiledThreads;
            tile[(e % W) * kRow + e / W] = staged[i];
        }
    };

    load(0);
    for (int tile_start = 0; tile_start < slice_count; tile_start += kTiledCodes) {
        __syncthreads();  // the previous tile has been scored
        store();
        __syncthreads();
        if (tile_start + kTiledCodes < slice_count) {
            load(tile_start + kTiledCodes);
        }
        if (!scoring) {
            continue;
        }
        for (int step = 0; step < kTiledCodes; step += 32 * kTiledCodesPerLane) {
            unsigned base_key[kTiledCodesPerLane];
            unsigned distance[kTiledQueriesPerWarp][kTiledCodesPerLane];
            #pragma unroll
            for (int r = 0; r < kTiledCodesPerLane; ++r) {
                const int local = tile_start + step + 32 * r + lane;
                base_key[r] = local < slice_count ? static_cast<unsigned>(local) : kTiledNoKey;
                #pragma unroll
                for (int q = 0; q < kTiledQueriesPerWarp; ++q) {
                    distance[q][r] = 0;
                }
            }
            #pragma unroll
            for (int w = 0; w < W; ++w) {
                #pragma unroll
                for (int r = 0; r < kTiledCodesPerLane; ++r) {
                    const unsigned long long code = tile[w * kRow + step + 32 * r + lane];
                    #pragma unroll
                    for (int q = 0; q < kTiledQueriesPerWarp; ++q) {
                        distance[q][r] += __popcll(query[q][w] ^ code);
                    }
                }
            }
            unsigned key[kTiledQueriesPerWarp][kTiledCodesPerLane];
            bool hit = false;
            #pragma unroll
            for (int q = 0; q < kTiledQueriesPerWarp; ++q) {
                #pragma unroll
                for (int r = 0; r < kTiledCodesPerLane; ++r) {
                    key[q][r] = (distance[q][r] << kTiledIndexBits) | base_key[r];
                    hit = hit || key[q][r] < threshold[q];
                }
            }
            if (!__any_sync(kFullMask, hit)) {
                continue;  // the common case once the lists have filled
            }
            const unsigned lanes_below = (1u << lane) - 1u;
            #pragma unroll
            for (int q = 0; q < kTiledQueriesPerWarp; ++q) {
                unsigned* list = lists + (warp * kTiledQueriesPerWarp + q) * k;
                unsigned* buffer = buffers + (warp * kTiledQueriesPerWarp + q) * kTiledBuffer;
                #pragma unroll
                for (int r = 0; r < kTiledCodesPerLane; ++r) {
                    bool wanted = key[q][r] < threshold[q];
                    unsigned ballot = __ballot_sync(kFullMask, wanted);
                    if (ballot == 0) {
                        continue;
                    }
                    if (buffered[q] + __popc(ballot) > kTiledBuffer) {
                        threshold[q] = merge_buffer(list, buffer, k, buffered[q], lane);
                        buffered[q] = 0;
                        wanted = key[q][r] < threshold[q];
                        ballot = __ballot_sync(kFullMask, wanted);
                    }
                    if (wanted) {
                        buffer[buffered[q] + __popc(ballot & lanes_below)] = key[q][r];
                    }
                    buffered[q] += __popc(ballot);
                }
            }
        }
    }
    if (!scoring) {
        return;  // no __syncthreads follows
    }
    #pragma unroll
    for (int q = 0; q < kTiledQueriesPerWarp; ++q) {
        unsigned* list = lists + (warp * kTiledQueriesPerWarp + q) * k;
        if (buffered[q] > 0) {
            merge_buffer(list, buffers + (warp * kTiledQueriesPerWarp + q) * kTiledBuffer, k,
                         buffered[q], lane);
        }
        __syncwarp();
        const int row = first_query + q;
        if (row < nq) {
            unsigned* out = partial + (static_cast<size_t>(row) * slices + slice) * k;
            for (int i = lane; i < k; i += 32) {
                out[i] = list[i];
            }
        }
    }
}

#define THRIFTY_HAMMING_TOPK_TILED(W)                                                         \
    extern "C" __global__ void __launch_bounds__(kTiledThreads)                               \
        hamming_topk_tiled_w##W(const unsigned long long* __restrict__ queries,               \
                                const unsigned long long* __restrict__ db, int nq, int nb,    \
                                int k, int slice_codes, unsigned* __restrict__ partial) {     \
        topk_tiled<W>(queries, db, nq, nb, k, slice_codes, partial);                          \
    }
THRIFTY_HAMMING_TOPK_TILED(1)
THRIFTY_HAMMING_TOPK_TILED(2)
THRIFTY_HAMMING_TOPK_TILED(3)
THRIFTY_HAMMING_TOPK_TILED(4)
THRIFTY_HAMMING_TOPK_TILED(5)
THRIFTY_HAMMING_TOPK_TILED(6)
THRIFTY_HAMMING_TOPK_TILED(7)
THRIFTY_HAMMING_TOPK_TILED(8)
#undef THRIFTY_HAMMING_TOPK_TILED

// The k smallest of each query's per-slice lists, in order. A slice's keys carry indices
// within the slice; widened to distance << 32 | index in the database they compare across
// slices, and a sentinel becomes ~0 << 32 | its position, still distinct and above every
// real pair. The rank of a key in the union is its position in its own sorted list plus the
// keys below it in every other list (a binary search each); ranks below k are the output
// slots, already in (distance, index) order. There are at least k real codes, so sentinels
// never rank below k. One block per query (grid-stride); dynamic shared memory holds
// slices * k 64-bit keys.
extern "C" __global__ void hamming_topk_merge(const unsigned* __restrict__ partial, int nq,
                                              int slices, int k, int slice_codes,
                                              int* __restrict__ out_distances,
                                              long long* __restrict__ out_indices) {
    extern __shared__ unsigned long long merged[];
    const int total = slices * k;
    for (int q = blockIdx.x; q < nq; q += gridDim.x) {
        const unsigned* lists = partial + static_cast<size_t>(q) * total;
        for (int e = threadIdx.x; e < total; e += blockDim.x) {
            const unsigned key = lists[e];
            const int slice = e / k;
            merged[e] = key > kTiledLargestKey
                            ? (~0ull << 32) | static_cast<unsigned long long>(e)
                            : (static_cast<unsigned long long>(key >> kTiledIndexBits) << 32) |
                                  static_cast<unsigned long long>(
                                      static_cast<long long>(slice) * slice_codes +
                                      (key & ((1u << kTiledIndexBits) - 1u)));
        }
        __syncthreads();
        for (int e = threadIdx.x; e < total; e += blockDim.x) {
            const unsigned long long x = merged[e];
            const int own = e / k;
            int rank = e % k;
            for (int s = 0; s < slices && rank < k; ++s) {
                if (s == own) {
                    continue;
                }
                rank += count_below(merged + static_cast<size_t>(s) * k, k, x);
            }
            if (rank < k) {
                out_distances[static_cast<size_t>(q) * k + rank] = static_cast<int>(x >> 32);
                out_indices[static_cast<size_t>(q) * k + rank] =
                    static_cast<long long>(x & 0xffffffffull);
            }
        }
        __syncthreads();  // the next query reuses merged[]
    }
}
