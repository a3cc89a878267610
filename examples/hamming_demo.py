"""``thrifty demo hamming``: near-duplicate passages, then a read in a genome.

Two stories, both on seeded generated data, so that the truth is known:

* **Near-duplicate passages.** A corpus of passages of Zipf-distributed pseudo-words, in
  which some passages were copied with a few word edits (substitutions, insertions,
  deletions). Each passage becomes a signed hashed bag of its word 3-shingles, then a
  256-bit :func:`~thrifty.hamming.simhash` code (Charikar, STOC 2002);
  :func:`~thrifty.hamming.near_duplicates` groups the codes within ``RADIUS`` bits, and
  the groups are scored against the planted ones (recall of the planted groups, precision
  of the linked pairs).
* **A read in a genome.** A uniform random ACGT genome holds mutated copies of a read (at
  most ``K_MISMATCHES`` substitutions each); :func:`~thrifty.hamming.text_to_pattern` with
  ``k=K_MISMATCHES`` reports every window within ``k`` mismatches of the read.

The figure ``out_dir/hamming_demo.png`` shows the distances of planted and of random
pairs of codes beside the radius, and the distances of the read to every window.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository root goes on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from thrifty import hamming
from thrifty._plot import figure, save_figure
from thrifty.errors import InvalidArgumentError

SEED = 20260
BITS = 256
#: Codes within this many bits are linked. Copies with a few edits land near 40 bits (of
#: 256), unrelated passages near 128: the radius sits far from both.
RADIUS = 80
SHINGLE = 3
FEATURES = 1024
WORDS_PER_PASSAGE = 80
K_MISMATCHES = 5
READ_LENGTH = 100
GENOME_LENGTH = 10**6

_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
_MIX = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9)


def _say(progress: bool, text: str) -> None:
    if progress:
        print(f"[hamming] {text}", file=sys.stderr, flush=True)


def vocabulary(rng: np.random.Generator, size: int) -> list[str]:
    """``size`` distinct pseudo-words of two to four syllables."""
    words: dict[str, None] = {}
    while len(words) < size:
        count = int(rng.integers(2, 5))
        words["".join(_SYLLABLES[i] for i in rng.integers(0, len(_SYLLABLES), count))] = None
    return list(words)


def _edit(words: list[str], rng: np.random.Generator, vocab: list[str], edits: int) -> list[str]:
    copy = list(words)
    for _ in range(edits):
        kind = int(rng.integers(0, 3))
        at = int(rng.integers(0, len(copy)))
        word = vocab[int(rng.integers(0, len(vocab)))]
        if kind == 0:
            copy[at] = word
        elif kind == 1:
            copy.insert(at, word)
        else:
            del copy[at]
    return copy


def corpus(passages: int, groups: int, *, seed: int = SEED) -> tuple[list[str], list[list[int]]]:
    """Passages of Zipfian pseudo-words and the planted groups of near-duplicates.

    ``groups`` originals get one or two copies each with one to three word edits; the
    copies replace other passages at random places, so the corpus keeps ``passages``.
    Returns the passages and the planted groups (sorted indices, original first by index).
    """
    rng = np.random.default_rng(seed)
    vocab = vocabulary(rng, 5000)
    weights = 1.0 / np.arange(1, len(vocab) + 1)
    ids = rng.choice(len(vocab), size=(passages, WORDS_PER_PASSAGE), p=weights / weights.sum())
    texts = [[vocab[i] for i in row] for row in ids.tolist()]
    order = rng.permutation(passages)
    planted: list[list[int]] = []
    taken = 0
    for _ in range(groups):
        copies = int(rng.integers(1, 3))
        original, targets = int(order[taken]), order[taken + 1 : taken + 1 + copies].tolist()
        taken += 1 + copies
        for target in targets:
            texts[target] = _edit(texts[original], rng, vocab, int(rng.integers(1, 4)))
        planted.append(sorted([original, *targets]))
    return [" ".join(words) for words in texts], sorted(planted)


def shingle_embeddings(passages: list[str]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Signed feature hashing of word 3-shingles into ``FEATURES`` dimensions.

    The hash is a fixed multiply-xor mix of the words' ids (not Python's ``hash``, which is
    salted per process), so the same text gives the same vector in every run.
    """
    ids: dict[str, int] = {}
    out = np.zeros((len(passages), FEATURES))
    for row, passage in enumerate(passages):
        tokens = np.fromiter(
            (ids.setdefault(w, len(ids)) for w in passage.split()), dtype=np.uint64
        )
        if len(tokens) < SHINGLE:
            continue
        h = np.zeros(len(tokens) - SHINGLE + 1, dtype=np.uint64)
        for j, mix in enumerate(_MIX):
            h ^= (tokens[j : j + len(h)] + np.uint64(1)) * np.uint64(mix)
        h ^= h >> np.uint64(29)
        h *= np.uint64(_MIX[0])
        buckets = (h >> np.uint64(54)).astype(np.int64)  # the top 10 bits: FEATURES = 1024
        signs = np.where((h >> np.uint64(20)) & np.uint64(1), 1.0, -1.0)
        np.add.at(out[row], buckets, signs)
    return out


def _pairs(groups: list[list[int]]) -> set[tuple[int, int]]:
    return {(a, b) for group in groups for i, a in enumerate(group) for b in group[i + 1 :]}


def near_duplicate_passages(*, quick: bool, progress: bool) -> dict[str, Any]:
    passages, groups = (2000, 100) if quick else (20000, 1000)
    texts, planted = corpus(passages, groups)
    _say(progress, f"{passages} passages, {groups} planted groups; simhash {BITS} bits")
    start = time.perf_counter()
    codes = hamming.simhash(shingle_embeddings(texts), BITS, seed=SEED)
    simhash_s = time.perf_counter() - start
    start = time.perf_counter()
    found = hamming.near_duplicates(codes, RADIUS)
    search_s = time.perf_counter() - start
    planted_pairs, found_pairs = _pairs(planted), _pairs(found)
    recovered = sum(any(set(p) <= set(f) for f in found) for p in planted)
    exact = len({tuple(g) for g in planted} & {tuple(g) for g in found})
    rows, cols = np.array(sorted(planted_pairs)).T
    planted_d = np.sum(
        np.unpackbits(codes[rows] ^ codes[cols], axis=1), axis=1, dtype=np.int64
    ).tolist()
    rng = np.random.default_rng(SEED + 1)
    a, b = rng.integers(0, passages, (2, 5000))
    # Pairs of distinct passages that are no planted pair: the background.
    keep = (a != b) & np.array(
        [(min(x, y), max(x, y)) not in planted_pairs for x, y in zip(a, b, strict=True)]
    )
    random_d = hamming.cdist(codes[a[keep]], codes[b[keep]]).diagonal().tolist()
    return {
        "passages": passages,
        "planted_groups": len(planted),
        "bits": BITS,
        "radius": RADIUS,
        "found_groups": len(found),
        "groups_recovered": recovered,
        "groups_exact": exact,
        "recall": recovered / len(planted),
        "pair_recall": len(planted_pairs & found_pairs) / len(planted_pairs),
        "pair_precision": (len(planted_pairs & found_pairs) / len(found_pairs))
        if found_pairs
        else 1.0,
        "planted": planted,
        "found": found,
        "planted_distances": planted_d,
        "random_distances": random_d,
        "simhash_s": simhash_s,
        "near_duplicates_s": search_s,
    }


def read_in_genome(*, progress: bool) -> dict[str, Any]:
    length = GENOME_LENGTH
    rng = np.random.default_rng(SEED + 2)
    genome = rng.integers(0, 4, length, dtype=np.uint8)
    read = rng.integers(0, 4, READ_LENGTH, dtype=np.uint8)
    copies = 3
    # Spread out, so that copies never overlap.
    planted = np.sort(
        rng.choice(length // READ_LENGTH - 1, copies, replace=False) * READ_LENGTH
    ).tolist()
    mutations = [0, K_MISMATCHES // 2, K_MISMATCHES][:copies]
    for at, count in zip(planted, mutations, strict=True):
        copy = read.copy()
        where = rng.choice(READ_LENGTH, count, replace=False)
        copy[where] = (copy[where] + rng.integers(1, 4, count, dtype=np.uint8)) % 4
        genome[at : at + READ_LENGTH] = copy
    acgt = np.frombuffer(b"ACGT", dtype=np.uint8)
    genome_text, read_text = acgt[genome].tobytes(), acgt[read].tobytes()
    _say(progress, f"genome of {length} bases, read of {READ_LENGTH}, k = {K_MISMATCHES}")
    start = time.perf_counter()
    bounded = hamming.text_to_pattern(genome_text, read_text, k=K_MISMATCHES)
    bounded_s = time.perf_counter() - start
    start = time.perf_counter()
    exact = hamming.text_to_pattern(genome_text, read_text)
    exact_s = time.perf_counter() - start
    hits = np.flatnonzero(bounded <= K_MISMATCHES)
    counts = np.bincount(exact, minlength=READ_LENGTH + 1)
    return {
        "genome_length": length,
        "read_length": READ_LENGTH,
        "k": K_MISMATCHES,
        "read": read_text.decode(),
        "planted_positions": planted,
        "planted_mismatches": mutations,
        "found_positions": hits.tolist(),
        "found_distances": bounded[hits].tolist(),
        "min_distance_elsewhere": int(np.delete(exact, hits).min()),
        "distance_counts": counts.tolist(),
        "bounded_s": bounded_s,
        "exact_s": exact_s,
    }


def run(out_dir: Path, *, quick: bool = False, progress: bool = True) -> dict[str, Any]:
    """Both stories; the scores, the positions found and the plot.

    Parameters
    ----------
    out_dir
        Folder for ``hamming_demo.png`` (created if missing).
    quick
        2,000 passages with 100 planted groups instead of 20,000 with 1,000.
    progress
        Say what runs, on stderr.

    Returns
    -------
    dict
        ``duplicates`` (scores, planted and found groups, distances of planted and random
        pairs, times), ``genome`` (planted and found positions, distances, times),
        ``kernel`` (the popcount kernel) and ``plot``.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidArgumentError(
            f"out_dir (--out) must be a folder, got the file {out_dir}", "out_dir"
        )
    result: dict[str, Any] = {
        "kernel": hamming.popcount_kernel(),
        "duplicates": near_duplicate_passages(quick=quick, progress=progress),
        "genome": read_in_genome(progress=progress),
        "plot": None,
    }
    result["plot"] = save_figure(lambda path: save_plot(result, path), out_dir / "hamming_demo.png")
    return result


def format_report(result: dict[str, Any]) -> str:
    """The scores of the deduplication and the read's positions, in a few lines."""
    dup, gen = result["duplicates"], result["genome"]
    planted_d, random_d = dup["planted_distances"], dup["random_distances"]
    lines = [
        f"thrifty.hamming (popcount kernel: {result['kernel']})",
        f"  near-duplicate passages: {dup['passages']} passages, {dup['planted_groups']} "
        f"planted groups, {dup['bits']}-bit simhash of word {SHINGLE}-shingles, "
        f"radius {dup['radius']}",
        f"    found {dup['found_groups']} groups: {dup['groups_recovered']} planted groups "
        f"recovered (recall {dup['recall']:.3f}, {dup['groups_exact']} exactly), pair "
        f"precision {dup['pair_precision']:.3f}, pair recall {dup['pair_recall']:.3f}",
        f"    distances: planted pairs {min(planted_d)}..{max(planted_d)} "
        f"(median {int(np.median(planted_d))}), random pairs {min(random_d)}..{max(random_d)} "
        f"(median {int(np.median(random_d))})",
        f"    simhash {dup['simhash_s']:.2f} s, near_duplicates {dup['near_duplicates_s']:.2f} s",
        f"  read in a genome: {gen['genome_length']} bases, read of {gen['read_length']}, "
        f"k = {gen['k']}",
        f"    planted at {gen['planted_positions']} with {gen['planted_mismatches']} "
        f"mismatches; found at {gen['found_positions']} with distances "
        f"{gen['found_distances']}",
        f"    nearest other window: {gen['min_distance_elsewhere']} mismatches; "
        f"k-bounded {gen['bounded_s'] * 1e3:.1f} ms, exact {gen['exact_s'] * 1e3:.1f} ms",
    ]
    if result.get("plot"):
        lines.append(f"plot: {result['plot']}")
    return "\n".join(lines)


def save_plot(result: dict[str, Any], path: str) -> None:
    """Histograms: code distances of planted and random pairs; the read's distances."""
    dup, gen = result["duplicates"], result["genome"]
    with figure(path, 1, 2, size=(12, 4.5)) as (codes_ax, genome_ax):
        bins = np.arange(0, dup["bits"] + 2, 4)
        codes_ax.hist(dup["planted_distances"], bins=bins, alpha=0.7, label="planted pairs")
        codes_ax.hist(dup["random_distances"], bins=bins, alpha=0.7, label="random pairs")
        codes_ax.axvline(dup["radius"], color="red", linestyle=":", label=f"radius {dup['radius']}")
        codes_ax.set_xlabel(f"Hamming distance between {dup['bits']}-bit simhash codes")
        codes_ax.set_ylabel("pairs")
        codes_ax.set_title(
            f"near duplicates: recall {dup['recall']:.3f}, precision {dup['pair_precision']:.3f}"
        )
        codes_ax.legend(fontsize=8)
        counts = np.asarray(gen["distance_counts"])
        genome_ax.bar(np.arange(len(counts)), counts, width=1.0)
        genome_ax.axvline(gen["k"] + 0.5, color="red", linestyle=":", label=f"k = {gen['k']}")
        genome_ax.set_yscale("log")
        genome_ax.set_xlabel("mismatches between the read and a window of the genome")
        genome_ax.set_ylabel("windows")
        genome_ax.set_title(f"read of {gen['read_length']}: hits at {gen['found_positions']}")
        genome_ax.legend(fontsize=8)


if __name__ == "__main__":
    from examples._script import main

    raise SystemExit(main(run, format_report, __doc__ or ""))
