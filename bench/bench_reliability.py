"""Usage: bench/bench_reliability.py [options]

Times stage 4 (pair reliability) on a VoxCeleb2-sized input generated here, on ONE
core: 5,994 speakers, 1,092,009 utterances (lognormal speaker sizes, mean ~182),
192-dim embeddings (clean pairs ~0.5-0.7, noisy pairs ~0.0-0.2), 20 % of labels
flipped. Reports fit + save time and peak memory against the targets (60 s, 4 GB),
the agreement of the histogram EM with sklearn's per-speaker GaussianMixture on a
sample of speakers, and the detection metrics of each estimator. Prints markdown.

e.g.
    .venv/bin/python bench/bench_reliability.py
    .venv/bin/python bench/bench_reliability.py --speakers 600 --utts 109200   # a 10 % run
    .venv/bin/python bench/bench_reliability.py --full-sklearn                 # + the ~30 min sklearn loop
"""

import os

# One core, as the target says; must precede the numpy import.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import resource  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from scipy.special import expit  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from purl.allocator import keep_freed_memory  # noqa: E402
from purl.reliability import (  # noqa: E402
    ESTIMATORS,
    Reliability,
    ReliabilitySettings,
    SpeakerIndex,
    SpeakerPairs,
    compare_fits,
    detection_metrics,
    fit_histogram,
    fit_sklearn,
    iter_speaker_blocks,
    normalise,
    plot_reliability,
)
from purl.testing import simulate_embeddings  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--speakers", type=int, default=5994)
    p.add_argument("--utts", type=int, default=1_092_009)
    p.add_argument("--dim", type=int, default=192)
    p.add_argument("--noise-rate", type=float, default=0.2)
    p.add_argument("--estimators", default="histogram,bic,global", help="comma-separated, timed and evaluated in turn")
    p.add_argument("--sample", type=int, default=50, help="speakers fitted by sklearn for the agreement metrics")
    p.add_argument("--full-sklearn", action="store_true", help="also fit and evaluate sklearn on every speaker (slow)")
    p.add_argument("--n-bins", type=int, default=ReliabilitySettings.n_bins)
    p.add_argument("--plot", default="", help="write the reliability plot of the first estimator here (PNG)")
    p.add_argument("--seed", type=int, default=0)
    return p


def speaker_sizes(n_spk: int, n_utts: int, rng: np.random.Generator, min_size: int = 20) -> np.ndarray:
    """Lognormal sizes (VoxCeleb2-like spread) rescaled to exactly n_utts."""
    raw = rng.lognormal(0.0, 0.45, size=n_spk)
    sizes = np.maximum(min_size, np.floor(raw / raw.sum() * n_utts)).astype(np.int64)
    short = n_utts - sizes.sum()
    # Hand the rounding remainder to (or take it from) the largest speakers.
    largest = np.argsort(-sizes)
    step = 1 if short > 0 else -1
    for k in range(abs(int(short))):
        sizes[largest[k % n_spk]] += step
    return sizes


def maxrss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def pair_scores(x: np.ndarray, index, params, true: np.ndarray):
    """w and truth of every pair of the speakers in ``index`` (rows of ``params``)."""
    ws, noisy = [], []
    for s, utts, gram, upper in iter_speaker_blocks(x, index):
        cos = gram[upper]
        ws.append(expit(params.log_odds(np.full(cos.size, s), cos)))
        noisy.append((true[utts][:, None] != true[utts][None, :])[upper])
    return np.concatenate(ws), np.concatenate(noisy)


def agreement(x: np.ndarray, index, true: np.ndarray, settings: ReliabilitySettings) -> dict:
    """Histogram EM vs sklearn on the speakers of ``index`` under the same settings.
    Per-speaker fits are independent, so fitting a sample equals fitting all."""
    ours = fit_histogram(SpeakerPairs(x, index), settings)
    t0 = time.perf_counter()
    ref = fit_sklearn(SpeakerPairs(x, index), settings)
    sk_s = time.perf_counter() - t0
    cmp = compare_fits(x, index, ours, ref)
    w_ours, is_noisy = pair_scores(x, index, ours, true)
    w_ref, _ = pair_scores(x, index, ref, true)
    return dict(cmp=cmp, sk_s=sk_s, ref=ref, n_pairs=len(is_noisy),
                auc_ours=roc_auc_score(is_noisy, 1 - w_ours), auc_ref=roc_auc_score(is_noisy, 1 - w_ref))


def main() -> None:
    args = get_parser().parse_args()
    keep_freed_memory()
    rng = np.random.default_rng(args.seed)
    settings = ReliabilitySettings(n_bins=args.n_bins)
    estimators = [e for e in args.estimators.split(",") if e]
    for e in estimators:
        if e not in ESTIMATORS:
            raise SystemExit(f"bench_reliability: unknown estimator '{e}'; choose from {sorted(ESTIMATORS)}")

    t0 = time.perf_counter()
    sizes = speaker_sizes(args.speakers, args.utts, rng)
    emb, noisy, true = simulate_embeddings(sizes, dim=args.dim, noise_rate=args.noise_rate, seed=args.seed)
    gen_s, gen_rss = time.perf_counter() - t0, maxrss_gb()
    per_spk = np.bincount(noisy).astype(np.int64)
    n_pairs = int((per_spk * (per_spk - 1) // 2).sum())
    print(f"## Stage 4 benchmark: {args.speakers} speakers, {args.utts} utterances, {args.dim}-dim, "
          f"r={args.noise_rate}, {n_pairs / 1e6:.1f}M positive pairs (noisy labels)\n")
    print(f"generated in {gen_s:.1f} s; peak RSS after generation {gen_rss:.2f} GB "
          f"(embeddings alone {emb.nbytes / 2**30:.2f} GB)\n")

    rows_out = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in estimators:
            t0 = time.perf_counter()
            rel = Reliability.fit(emb, noisy, name, settings)
            fit_s = time.perf_counter() - t0
            rel.save(os.path.join(tmp, name))
            total_s = time.perf_counter() - t0
            rss = maxrss_gb()
            t0 = time.perf_counter()
            m = detection_metrics(rel, true)
            eval_s = time.perf_counter() - t0
            rows_out.append((name, fit_s, total_s, rss, eval_s, m))
            if name == estimators[0] and args.plot:
                plot_reliability(rel, args.plot, true)
            del rel  # before the next fit: peak memory is one fit's, not several

    print("| estimator | fit s | fit+save s (target 60) | peak RSS so far GB (target 4) | eval s | pair AUC | pair P/R/F1 @0.5 "
          "| utt AUC | utt P/R/F1 @0.5 | pairs flagged | spk w=1 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, fit_s, total_s, rss, eval_s, m in rows_out:
        print(f"| {name} | {fit_s:.1f} | {total_s:.1f} | {rss:.2f} | {eval_s:.1f} | {m['pair_auc']:.4f} "
              f"| {m['pair_precision']:.3f}/{m['pair_recall']:.3f}/{m['pair_f1']:.3f} | {m['utt_auc']:.4f} "
              f"| {m['utt_precision']:.3f}/{m['utt_recall']:.3f}/{m['utt_f1']:.3f} | {m['frac_pairs_flagged']:.3f} "
              f"| {m['frac_speakers_w1']:.3f} |")

    # Agreement with sklearn on a sample of speakers (the full loop takes ~30 min).
    x, (index, _) = normalise(emb), SpeakerIndex.from_labels(noisy)
    sample = np.sort(rng.choice(len(index), size=min(args.sample, len(index)), replace=False))
    sub = index.subset(sample)
    original = dataclasses.replace(settings, tol=1e-3)
    runs = {f"default (tol {settings.tol:g})": agreement(x, sub, true, settings),
            "original work (tol 1e-3)": agreement(x, sub, true, original)}
    print(f"\n### histogram EM vs sklearn GaussianMixture, same settings, on {len(sample)} sampled speakers "
          f"({next(iter(runs.values()))['n_pairs']} pairs)\n")
    print("| settings | max abs posterior diff | median of per-speaker max | speakers > 0.01 "
          "| mean log-lik ours - sklearn (min / max) | pair AUC ours / sklearn | sklearn s (all speakers, est.) |")
    print("|---|---|---|---|---|---|---|")
    for name, r in runs.items():
        d, dll = r["cmp"]["max_abs_diff"], r["cmp"]["loglik_a"] - r["cmp"]["loglik_b"]
        print(f"| {name} | {d.max():.4f} | {np.median(d):.4f} | {(d > 0.01).sum()}/{len(d)} | {dll.min():.1e} / {dll.max():.1e} "
              f"| {r['auc_ours']:.4f} / {r['auc_ref']:.4f} | {r['sk_s']:.1f} (~{r['sk_s'] / len(d) * len(index) / 60:.0f} min) |")
    unconverged = compare_fits(x, sub, *(r["ref"] for r in runs.values()))["max_abs_diff"]
    print(f"\nsklearn at tol 1e-3 vs sklearn at tol {settings.tol:g}: max abs posterior diff {unconverged.max():.4f}, "
          f"{(unconverged > 0.01).sum()}/{len(unconverged)} speakers > 0.01 (EM stopped early at 1e-3)")

    if args.full_sklearn:
        t0 = time.perf_counter()
        full = fit_sklearn(SpeakerPairs(x, index), settings)
        full_s = time.perf_counter() - t0
        m = detection_metrics(Reliability(x, noisy, full, "sklearn", settings), true)
        d = compare_fits(x, index, fit_histogram(SpeakerPairs(x, index), settings), full)["max_abs_diff"]
        print(f"\n### sklearn on all speakers: {full_s:.0f} s; pair AUC {m['pair_auc']:.4f}, utt AUC {m['utt_auc']:.4f}; "
              f"max abs posterior diff to histogram {d.max():.4f} (99th percentile {np.percentile(d, 99):.4f})")


if __name__ == "__main__":
    main()
