// Row norms for leverage scores and Lewis weights on the GPU.
//
// The leverage score of row i of a full-rank A is the squared norm of row i of Q in A = QR.
// The QR itself runs in cuSOLVER (through CuPy); what is left is a reduction over each row
// of a tall, row-major matrix, which a thread per row would read with a stride of `cols`
// (uncoalesced). A warp per row reads each row in contiguous 32-element runs instead.
//
// The CPU twin is thrifty_coreset::scores (leverage from a thin QR); tests check they agree.

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kWarp = 32;

template <typename T>
__device__ void row_sq_norms(const T* __restrict__ q, long long rows, int cols,
                             T* __restrict__ out) {
    const int lane = threadIdx.x % kWarp;
    const long long warps_per_block = blockDim.x / kWarp;
    const long long first = blockIdx.x * warps_per_block + threadIdx.x / kWarp;
    const long long stride = static_cast<long long>(gridDim.x) * warps_per_block;
    for (long long row = first; row < rows; row += stride) {
        const T* r = q + row * cols;
        T acc = 0;
        for (int j = lane; j < cols; j += kWarp) {
            acc += r[j] * r[j];
        }
        #pragma unroll
        for (int offset = kWarp / 2; offset > 0; offset /= 2) {
            acc += __shfl_down_sync(kFullMask, acc, offset);
        }
        if (lane == 0) {
            out[row] = acc;
        }
    }
}

// out[i] = sum_j q[i, j]^2 for a row-major rows x cols matrix; blockDim.x a multiple of 32.
extern "C" __global__ void coreset_row_sq_norms_f64(const double* __restrict__ q,
                                                    long long rows, int cols,
                                                    double* __restrict__ out) {
    row_sq_norms(q, rows, cols, out);
}

extern "C" __global__ void coreset_row_sq_norms_f32(const float* __restrict__ q,
                                                    long long rows, int cols,
                                                    float* __restrict__ out) {
    row_sq_norms(q, rows, cols, out);
}
