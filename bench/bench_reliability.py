"""Usage: bench/bench_reliability.py [options]

Times stage 4 (pair reliability) on a VoxCeleb2-sized input generated here, on ONE
core: 5,994 speakers, 1,092,009 utterances (lognormal speaker sizes, mean ~182),
192-dim embeddings (clean pairs ~0.5-0.7, noisy pairs ~0.0-0.2), 20 % of labels
flipped. Reports fit + save time and peak memory against the targets (60 s, 4 GB),
the agreement of the histogram EM with sklearn's per-speaker GaussianMixture on a
sample of speakers, and the detection figures of each estimator. Prints markdown.

e.g.
    .venv/bin/python bench/bench_reliability.py
    .venv/bin/python bench/bench_reliability.py --speakers 600 --utts 109200   # a 10 % run
    .venv/bin/python bench/bench_reliability.py --full-sklearn                 # + ~1 h sklearn loop
"""

import os

# One core, as the target says; must precede the numpy import.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import resource  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from scipy.special import expit  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from purl.reliability import (  # noqa: E402
    ESTIMATORS,
    Reliability,
    ReliabilitySettings,
    compare_fits,
    evaluate,
    fit_sklearn,
    iter_speaker_blocks,
    simulate_embeddings,
)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--speakers", type=int, default=5994)
    p.add_argument("--utts", type=int, default=1_092_009)
    p.add_argument("--dim", type=int, default=192)
    p.add_argument("--noise-rate", type=float, default=0.2)
    p.add_argument("--estimators", default="histogram,bic,global", help="comma-separated, timed and evaluated in turn")
    p.add_argument("--sample", type=int, default=50, help="speakers fitted by sklearn for the agreement figures")
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


def sample_pair_scores(rel: Reliability, rows: np.ndarray, true: np.ndarray):
    """w and truth of every pair of the sampled speakers, for exact AUCs."""
    sub = rel.index.subset(rows)
    ws, noisy = [], []
    for s, utts, gram, upper in iter_speaker_blocks(rel.embeddings, sub):
        cos = gram[upper]
        ws.append(expit(rel.params.log_odds(np.full(cos.size, rows[s]), cos)))
        noisy.append((true[utts][:, None] != true[utts][None, :])[upper])
    return np.concatenate(ws), np.concatenate(noisy)


def main() -> None:
    args = get_parser().parse_args()
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
    n_pairs = int((noisy.size and np.bincount(noisy).astype(np.int64) @ (np.bincount(noisy) - 1) // 2))
    print(f"## Stage 4 benchmark: {args.speakers} speakers, {args.utts} utterances, {args.dim}-dim, "
          f"r={args.noise_rate}, {n_pairs / 1e6:.1f}M positive pairs (noisy labels)\n")
    print(f"generated in {gen_s:.1f} s; peak RSS after generation {gen_rss:.2f} GB "
          f"(embeddings alone {emb.nbytes / 2**30:.2f} GB)\n")

    rows_out, rels = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in estimators:
            t0 = time.perf_counter()
            rel = Reliability.fit(emb, noisy, name, settings)
            fit_s = time.perf_counter() - t0
            rel.save(os.path.join(tmp, name))
            total_s = time.perf_counter() - t0
            rss = maxrss_gb()
            t0 = time.perf_counter()
            m = evaluate(rel, true)
            eval_s = time.perf_counter() - t0
            if name == "histogram" or not rels:
                rels[name] = rel  # the sklearn comparison needs one; others are freed
            rows_out.append((name, fit_s, total_s, rss, eval_s, m))
            if name == estimators[0] and args.plot:
                from purl.reliability import plot_reliability

                plot_reliability(rel, args.plot, true)

    print("| estimator | fit s | fit+save s (target 60) | peak RSS so far GB (target 4) | eval s | pair AUC | pair P/R/F1 @0.5 "
          "| utt AUC | utt P/R/F1 @0.5 | pairs flagged | spk w=1 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, fit_s, total_s, rss, eval_s, m in rows_out:
        print(f"| {name} | {fit_s:.1f} | {total_s:.1f} | {rss:.2f} | {eval_s:.1f} | {m['pair_auc']:.4f} "
              f"| {m['pair_precision']:.3f}/{m['pair_recall']:.3f}/{m['pair_f1']:.3f} | {m['utt_auc']:.4f} "
              f"| {m['utt_precision']:.3f}/{m['utt_recall']:.3f}/{m['utt_f1']:.3f} | {m['frac_pairs_flagged']:.3f} "
              f"| {m['frac_speakers_w1']:.3f} |")

    # Agreement with the reference on a sample of speakers (the full loop takes ~1 h).
    ref_name = "histogram" if "histogram" in rels else estimators[0]
    rel = rels[ref_name]
    sample = np.sort(rng.choice(len(rel.index), size=min(args.sample, len(rel.index)), replace=False))
    sub = rel.index.subset(sample)
    t0 = time.perf_counter()
    sk = fit_sklearn(rel.embeddings, sub, settings)
    sk_s = time.perf_counter() - t0
    cmp = compare_fits(rel.embeddings, sub, rel.params.take(sample), sk)
    dll = cmp["loglik_a"] - cmp["loglik_b"]
    same = np.abs(dll) <= settings.tol
    w_ours, is_noisy = sample_pair_scores(rel, sample, true)
    w_sk, _ = sample_pair_scores(Reliability(rel.embeddings, rel.labels, _spread(sk, sample, len(rel.index)),
                                             "sklearn", settings), sample, true)
    print(f"\n### {ref_name} vs sklearn GaussianMixture on {len(sample)} sampled speakers "
          f"({len(is_noisy)} pairs; sklearn took {sk_s:.1f} s, ~{sk_s / len(sample) * len(rel.index) / 60:.0f} min for all)\n")
    print("| figure | value |\n|---|---|")
    print(f"| max abs posterior diff, all sampled speakers | {cmp['max_abs_diff'].max():.4f} |")
    print(f"| median of per-speaker max diff | {np.median(cmp['max_abs_diff']):.4f} |")
    print(f"| speakers with equal likelihood (within tol {settings.tol:g}) | {same.sum()}/{len(sample)} |")
    print(f"| max abs posterior diff, equal-likelihood speakers | {cmp['max_abs_diff'][same].max(initial=0):.4f} |")
    print(f"| mean log-lik ours - sklearn: min / max | {dll.min():.2e} / {dll.max():.2e} |")
    print(f"| pair AUC on the sample: ours / sklearn | {roc_auc_score(is_noisy, 1 - w_ours):.4f} / "
          f"{roc_auc_score(is_noisy, 1 - w_sk):.4f} |")

    if args.full_sklearn:
        t0 = time.perf_counter()
        full = Reliability.fit(emb, noisy, "sklearn", settings)
        full_s = time.perf_counter() - t0
        m = evaluate(full, true)
        cmp = compare_fits(rel.embeddings, rel.index, rel.params, full.params)
        print(f"\n### sklearn on all speakers: {full_s:.0f} s; pair AUC {m['pair_auc']:.4f}, utt AUC {m['utt_auc']:.4f}; "
              f"max abs posterior diff to {ref_name} {cmp['max_abs_diff'].max():.4f} "
              f"(99th percentile {np.percentile(cmp['max_abs_diff'], 99):.4f})")


def _spread(params, rows, n_spk):
    """Sampled speakers' fits placed at their rows of the full speaker list."""
    from purl.reliability import GmmParams

    full = GmmParams.empty(n_spk)
    for f in ("weights", "means", "variances", "clean", "unit", "n_pairs", "loglik"):
        getattr(full, f)[rows] = getattr(params, f)
    return full


if __name__ == "__main__":
    main()
