"""Usage: bench/bench_scoring.py [options]

Time trial scoring and verification metrics on one CPU core, on random
cluster-structured embeddings shaped like VoxCeleb1 test sets: 4,874
utterances of 192 dims, 550,000 trials (about half target), and a cohort of
6,000 speaker means for AS-Norm.  Prints a markdown table.

e.g. (from the repository root)
  .venv/bin/python -m bench.bench_scoring --repeats 3
  . ./path.sh; python bench/bench_scoring.py      # path.sh sets PYTHONPATH

Targets: cosine scoring + EER + minDCF(0.01, 0.05) at most 2 s;
AS-Norm (k = 300) at most 15 s.
"""

import os

# One core, as the targets are stated: the BLAS thread count is fixed when
# numpy is first imported, so this must come before the numpy import.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from purl.allocator import keep_freed_memory  # noqa: E402
from purl.metrics import eer_and_min_dcf  # noqa: E402
from purl.scoring import as_norm, score_trials  # noqa: E402


def get_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num-utts", type=int, default=4874, help="test utterances")
    parser.add_argument("--num-speakers", type=int, default=40, help="test speakers")
    parser.add_argument("--dim", type=int, default=192, help="embedding dimension")
    parser.add_argument("--num-trials", type=int, default=550_000, help="trials to score")
    parser.add_argument("--cohort-size", type=int, default=6000, help="cohort speakers")
    parser.add_argument("--top-k", type=int, default=300, help="AS-Norm top-k")
    parser.add_argument(
        "--within-scale", type=float, default=1.6,
        help="within-speaker spread relative to between-speaker spread (sets the EER)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the best is reported")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def make_data(args, rng):
    """Embeddings (U, D) float32, trial rows idx1/idx2, target labels, cohort (C, D)."""
    dim = args.dim
    # A shared offset that mean subtraction has to remove, as in real x-vectors.
    offset = 2.0 * rng.normal(size=dim)
    centres = rng.normal(size=(args.num_speakers, dim))
    spk = rng.integers(0, args.num_speakers, size=args.num_utts)
    emb = offset + centres[spk] + args.within_scale * rng.normal(size=(args.num_utts, dim))

    # Target trials: a random utterance and another one of its speaker.
    order = np.argsort(spk, kind="stable")
    counts = np.bincount(spk, minlength=args.num_speakers)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.empty(args.num_utts, dtype=np.intp)
    rank[order] = np.arange(args.num_utts) - starts[spk[order]]
    n_tar = args.num_trials // 2
    a = rng.integers(0, args.num_utts, size=n_tar)
    a = a[counts[spk[a]] > 1]  # a speaker with one utterance has no target pair
    shift = 1 + (rng.random(a.size) * (counts[spk[a]] - 1)).astype(np.intp)
    b = order[starts[spk[a]] + (rank[a] + shift) % counts[spk[a]]]

    # Non-target trials: random pairs, redrawn until the speakers differ.
    n_non = args.num_trials - a.size
    c = rng.integers(0, args.num_utts, size=n_non)
    d = rng.integers(0, args.num_utts, size=n_non)
    while np.any(same := spk[c] == spk[d]):
        d[same] = rng.integers(0, args.num_utts, size=int(same.sum()))

    idx1 = np.concatenate((a, c))
    idx2 = np.concatenate((b, d))
    labels = np.concatenate((np.ones(a.size, bool), np.zeros(n_non, bool)))
    perm = rng.permutation(idx1.size)

    # Cohort: speaker means of "training" speakers, same offset.
    cohort = offset + rng.normal(size=(args.cohort_size, dim))
    cohort += args.within_scale / np.sqrt(20) * rng.normal(size=cohort.shape)  # ~20 utts each
    f32 = np.float32
    return emb.astype(f32), idx1[perm], idx2[perm], labels[perm], cohort.astype(f32), offset.astype(f32)


def best_time(fn, repeats):
    """(best wall time in seconds, result of the last call)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main():
    args = get_parser().parse_args()
    keep_freed_memory()
    rng = np.random.default_rng(args.seed)
    emb, idx1, idx2, labels, cohort, mean = make_data(args, rng)

    try:  # belt and braces: also cap the thread pools already loaded
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(limits=1)
    except ImportError:
        limit = contextlib.nullcontext()

    with limit:
        t_score, scores = best_time(lambda: score_trials(emb, idx1, idx2, mean=mean), args.repeats)
        t_metrics, raw = best_time(lambda: eer_and_min_dcf(scores, labels), args.repeats)
        t_norm, normed = best_time(
            lambda: as_norm(scores, idx1, idx2, emb, cohort, top_k=args.top_k, mean=mean),
            args.repeats,
        )
    normed_metrics = eer_and_min_dcf(normed, labels)

    n_used = np.unique(np.concatenate((idx1, idx2))).size
    print(
        f"{idx1.size} trials ({labels.sum()} target), {emb.shape[0]} x {emb.shape[1]} embeddings "
        f"({n_used} in trials), cohort {cohort.shape[0]}, top-k {args.top_k}, "
        f"one core, best of {args.repeats}\n"
    )
    print("| step | time (s) | target (s) |")
    print("|---|---:|---:|")
    print(f"| cosine scoring | {t_score:.3f} | |")
    print(f"| EER + minDCF(0.01, 0.05) | {t_metrics:.3f} | |")
    print(f"| scoring + metrics | {t_score + t_metrics:.3f} | 2 |")
    print(f"| AS-Norm | {t_norm:.3f} | 15 |")
    print()
    print("| scores | EER (%) | minDCF 0.01 | minDCF 0.05 |")
    print("|---|---:|---:|---:|")
    for name, fig in (("cosine", raw), ("AS-Norm", normed_metrics)):
        print(f"| {name} | {100 * fig['eer']:.3f} | {fig['min_dcf_0.01']:.4f} "
              f"| {fig['min_dcf_0.05']:.4f} |")


if __name__ == "__main__":
    main()
