// Jump errors for the BOSS cost matrix, reduced on the fly.
//
// out[i * n_nodes + j] += sum_b err(starts[i, b] + (t_j - t_i) * velocities[i, b] - targets[j, b])
// for every i < j, where err is the Euclidean norm (metric 0) or the L1 norm (metric 1) over
// the state. No (n, n, state) array is ever built: each block owns one (i, j) pair and each
// warp walks samples, its lanes striding over the state. The CPU twin is
// thrifty_steps::accumulate_jump_errors; tests check that the two agree.
//
// Layouts (row-major): starts and velocities (n_nodes - 1, batch, dim); targets
// (n_nodes, batch, dim); times (n_nodes); out (n_nodes, n_nodes), float64.

constexpr int kWarps = 8;

template <typename T>
__device__ void jump_errors(const T* __restrict__ starts, const T* __restrict__ velocities,
                            const T* __restrict__ targets, const double* __restrict__ times,
                            int n_nodes, int batch, int dim, int metric,
                            double* __restrict__ out) {
    const int i = blockIdx.y;
    const int j = blockIdx.x;
    if (j <= i) {
        return;
    }
    const int warp = threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    // Widened to double before any arithmetic, as the CPU twin does, so float32 states give
    // the same sums on both sides up to summation order.
    const double step = times[j] - times[i];
    double warp_total = 0.0;
    for (int b = warp; b < batch; b += kWarps) {
        const size_t start_row = (static_cast<size_t>(i) * batch + b) * dim;
        const size_t target_row = (static_cast<size_t>(j) * batch + b) * dim;
        double acc = 0.0;
        for (int d = lane; d < dim; d += 32) {
            const double r = static_cast<double>(starts[start_row + d]) +
                             step * static_cast<double>(velocities[start_row + d]) -
                             static_cast<double>(targets[target_row + d]);
            acc += metric == 0 ? r * r : fabs(r);
        }
        for (int offset = 16; offset > 0; offset /= 2) {
            acc += __shfl_down_sync(0xffffffffu, acc, offset);
        }
        if (lane == 0) {
            warp_total += metric == 0 ? sqrt(acc) : acc;
        }
    }
    __shared__ double per_warp[kWarps];
    if (lane == 0) {
        per_warp[warp] = warp_total;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        double total = 0.0;
        for (int w = 0; w < kWarps; ++w) {
            total += per_warp[w];
        }
        out[static_cast<size_t>(i) * n_nodes + j] += total;
    }
}

extern "C" __global__ void jump_errors_f32(const float* starts, const float* velocities,
                                           const float* targets, const double* times,
                                           int n_nodes, int batch, int dim, int metric,
                                           double* out) {
    jump_errors<float>(starts, velocities, targets, times, n_nodes, batch, dim, metric, out);
}

extern "C" __global__ void jump_errors_f64(const double* starts, const double* velocities,
                                           const double* targets, const double* times,
                                           int n_nodes, int batch, int dim, int metric,
                                           double* out) {
    jump_errors<double>(starts, velocities, targets, times, n_nodes, batch, dim, metric, out);
}
