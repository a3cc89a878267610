// Runs hamming_topk_tiled_w<words> and hamming_topk_merge on the host (see prelude.h).
// Input file: int32 nq, nb, words, k, slices, slice_codes, then the queries' and the
// database's 64-bit words. Output file: the partial lists (uint32), distances (int32) and
// indices (int64).
#include <cstdio>

#include "prelude.h"
#include "kernel.inc"

int main(int argc, char** argv) {
    if (argc != 3) {
        return 2;
    }
    std::FILE* in = std::fopen(argv[1], "rb");
    int header[6];
    if (in == nullptr || std::fread(header, 4, 6, in) != 6) {
        return 3;
    }
    const int nq = header[0], nb = header[1], words = header[2], k = header[3];
    const int slices = header[4], slice_codes = header[5];
    std::vector<unsigned long long> queries(static_cast<size_t>(nq) * words);
    std::vector<unsigned long long> db(static_cast<size_t>(nb) * words);
    if (std::fread(queries.data(), 8, queries.size(), in) != queries.size() ||
        std::fread(db.data(), 8, db.size(), in) != db.size()) {
        return 3;
    }
    std::fclose(in);
    std::vector<unsigned> partial(static_cast<size_t>(nq) * slices * k, 0x5a5a5a5au);
    const Dim3 grid{static_cast<unsigned>((nq + kTiledQueries - 1) / kTiledQueries),
                    static_cast<unsigned>(slices), 1};
    launch(grid, kTiledThreads, [&] {
        switch (words) {
#define RUN(W)                                                                              \
    case W:                                                                                 \
        topk_tiled<W>(queries.data(), db.data(), nq, nb, k, slice_codes, partial.data()); \
        break;
            RUN(1) RUN(2) RUN(3) RUN(4) RUN(5) RUN(6) RUN(7) RUN(8)
#undef RUN
        }
    });
    std::vector<int> distances(static_cast<size_t>(nq) * k, -1);
    std::vector<long long> indices(static_cast<size_t>(nq) * k, -1);
    // Fewer blocks than queries, so the grid-stride loop runs too.
    launch(Dim3{static_cast<unsigned>(min(nq, 3)), 1, 1}, 128, [&] {
        hamming_topk_merge(partial.data(), nq, slices, k, slice_codes, distances.data(),
                           indices.data());
    });
    std::FILE* out = std::fopen(argv[2], "wb");
    if (out == nullptr) {
        return 4;
    }
    std::fwrite(partial.data(), 4, partial.size(), out);
    std::fwrite(distances.data(), 4, distances.size(), out);
    std::fwrite(indices.data(), 8, indices.size(), out);
    std::fclose(out);
    return 0;
}
