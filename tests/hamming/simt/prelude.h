// Enough of CUDA to run cuda/hamming.cu's top-k kernels on the host: one block at a time, one
// std::thread per CUDA thread, a barrier per block and per warp. Warp intrinsics exchange
// through the warp's slots between two barriers, which is exact for the full-mask, warp-uniform
// calls the kernels make. `__shared__` variables become statics (one block runs at a time) and
// the test rewrites `extern __shared__` arrays into pointers to g_dynamic_shared, which each
// block finds poisoned, so reads of shared memory nobody wrote show up as wrong results.
#include <barrier>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __noinline__
#define __restrict__
#define __shared__ static
#define __launch_bounds__(...)

struct Dim3 {
    unsigned x = 1, y = 1, z = 1;
};
thread_local Dim3 threadIdx;
Dim3 blockIdx, blockDim, gridDim;
alignas(16) unsigned char g_dynamic_shared[64 * 1024];

struct Warp {
    std::barrier<> bar{32};
    unsigned long long slots[32];
};
std::vector<std::unique_ptr<Warp>> g_warps;
std::barrier<>* g_block_barrier;

template <class T>
T min(T a, T b) {
    return a < b ? a : b;
}
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline Warp& this_warp() { return *g_warps[threadIdx.x / 32]; }
inline void __syncwarp(unsigned = 0xffffffffu) { this_warp().bar.arrive_and_wait(); }
inline void __syncthreads() { g_block_barrier->arrive_and_wait(); }
inline unsigned __ballot_sync(unsigned, bool predicate) {
    Warp& warp = this_warp();
    warp.slots[threadIdx.x % 32] = predicate;
    warp.bar.arrive_and_wait();
    unsigned ballot = 0;
    for (int lane = 0; lane < 32; ++lane) {
        ballot |= (warp.slots[lane] ? 1u : 0u) << lane;
    }
    warp.bar.arrive_and_wait();
    return ballot;
}
inline bool __any_sync(unsigned mask, bool predicate) { return __ballot_sync(mask, predicate); }
inline int __shfl_up_sync(unsigned, int value, int offset) {
    Warp& warp = this_warp();
    const int lane = threadIdx.x % 32;
    warp.slots[lane] = static_cast<unsigned>(value);
    warp.bar.arrive_and_wait();
    const int up = lane >= offset ? static_cast<int>(warp.slots[lane - offset]) : value;
    warp.bar.arrive_and_wait();
    return up;
}
inline int atomicAdd(int* address, int value) {
    return __atomic_fetch_add(address, value, __ATOMIC_SEQ_CST);
}

inline void launch(Dim3 grid, unsigned threads, const std::function<void()>& kernel) {
    gridDim = grid;
    blockDim = Dim3{threads, 1, 1};
    for (unsigned y = 0; y < grid.y; ++y) {
        for (unsigned x = 0; x < grid.x; ++x) {
            blockIdx = Dim3{x, y, 1};
            g_warps.clear();
            for (unsigned w = 0; w < (threads + 31) / 32; ++w) {
                g_warps.push_back(std::make_unique<Warp>());
            }
            std::barrier<> block_barrier(threads);
            g_block_barrier = &block_barrier;
            std::memset(g_dynamic_shared, 0xa5, sizeof g_dynamic_shared);
            std::vector<std::thread> pool;
            for (unsigned t = 0; t < threads; ++t) {
                pool.emplace_back([t, &kernel] {
                    threadIdx = Dim3{t, 0, 0};
                    kernel();
                });
            }
            for (auto& thread : pool) {
                thread.join();
            }
        }
    }
}
