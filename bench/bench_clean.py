"""Usage: bench/bench_clean.py [options]

How many utterances `purl clean` flags, and how many of the wrong labels it
finds, with 1% of the labels wrong (issue 25: under 5% flagged, at least 80%
of the wrong ones found), for its default rule (centroid) and stage 4's GMM
estimators beside it. Prints markdown tables.

1. Generated: embeddings of purl.testing.simulate_embeddings (the tests' model
   of speaker embeddings) in data dirs of 20 speakers x 80 utterances and 50 x
   20 with 1% of the labels moved to another speaker, and correctly labelled
   dirs of 10 x 12 and one speaker of 8; each seed a new draw of voices and
   moves. Through the fit `purl clean` runs after embedding (stage clean_fit).
2. Real speech (with --model and --corpus): a folder-per-speaker tree of
   symlinks under --work with 1% of the files moved into other speakers'
   folders (a new draw per seed), made a data dir by
   local/prepare_folder_corpus.py's function and cleaned by the `purl clean`
   command itself (the default, then each --estimators on the same out dir,
   which reuses its embeddings).
3. The centroid rule's two settings around their defaults, on every draw.

e.g. (speechocean762's 55 speakers the benchmark model never trained on):
    . ./path.sh
    B=egs/speechocean762/exp/benchmark
    cat $B/data/test/spk2utt $B/data/outsiders/spk2utt | cut -d' ' -f1 > /tmp/spk55
    python bench/bench_clean.py --model $B/exp/supcon_tuned_noisy0_seed0 \\
        --corpus ../shared/data/speechocean762-train --speakers /tmp/spk55 --work /tmp/bench_clean
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from purl.data.datadir import read_kv, utt2spk_to_spk2utt, validate_data_dir, write_kv
from purl.data.prepare import prepare_folder_corpus, utterance_id
from purl.kaldi_io import load_embeddings, save_embeddings
from purl.stages.clean import CENTROID, clean_fit
from purl.suspects import SuspectSettings, find_suspects
from purl.testing import simulate_embeddings

AUDIO = (".wav", ".flac", ".ogg", ".opus", ".m4a", ".aac", ".mp3")
GENERATED = {"20 x 80, 1% moved": ([80] * 20, 0.01), "50 x 20, 1% moved": ([20] * 50, 0.01),
             "10 x 12, clean": ([12] * 10, 0.0), "1 x 8, clean": ([8], 0.0)}
GRID = [(spread, outlier) for spread in (2.0, 2.5, 3.0) for outlier in (4.0, 5.0, 6.0)]


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1", help="draws of voices (generated) and of moved files (real)")
    parser.add_argument("--rate", type=float, default=0.01, help="fraction of files moved to another speaker")
    parser.add_argument("--estimators", default="bic,histogram,global",
                        help="stage 4's estimators to run beside the default (sklearn: slow)")
    parser.add_argument("--model", help="model for the real-speech part (exp dir or checkpoint)")
    parser.add_argument("--corpus", help="folder-per-speaker corpus (never copied: symlinks)")
    parser.add_argument("--speakers", help="file listing the speaker folders to use (default: all)")
    parser.add_argument("--work", default=None, help="where the symlink trees and outputs go (default: a temp dir)")
    parser.add_argument("--nj", type=int, default=2, help="purl clean's --nj")
    return parser


def row(corpus, seed, n_utts, n_spk, wrong, estimator, flagged, found):
    pct = f"{100 * found / wrong:.0f}%" if wrong else "-"
    return (f"| {corpus} | {seed} | {n_utts} | {n_spk} | {wrong} | {estimator} | {flagged} | "
            f"{100 * flagged / n_utts:.1f}% | {found}/{wrong} | {pct} |")


HEADER = ["| corpus | seed | utterances | speakers | wrong | estimator | flagged | flagged % | found | found % |",
          "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|"]


def simulated_dir(path: Path, sizes, rate, seed) -> tuple[Path, Path, set[str]]:
    """A data dir and xvector.scp of simulated embeddings; ids start with the true speaker."""
    emb, noisy, true = simulate_embeddings(sizes, noise_rate=rate, seed=seed)
    ids = [f"spk{s:03d}-u{n:05d}" for n, s in enumerate(true)]
    order = np.argsort(ids, kind="stable")
    utts = [ids[n] for n in order]
    utt2spk = {u: f"spk{noisy[n]:03d}" for u, n in zip(utts, order)}
    data = path / "data"
    data.mkdir(parents=True)
    write_kv(data / "utt2spk", utt2spk)
    write_kv(data / "spk2utt", utt2spk_to_spk2utt(utt2spk))
    write_kv(data / "utt2truespk", {u: u.split("-")[0] for u in utts})  # as stage 2 keeps it
    scp = save_embeddings(path / "xvector.ark", utts, emb[order])
    return data, scp, {u for u, n in zip(utts, order) if noisy[n] != true[n]}


def suspects_of(out: Path) -> set[str]:
    return {line.split()[0] for line in (out / "suspected_mislabelled").read_text().splitlines() if line.strip()}


def grid_rows(corpus, seed, emb, utts, utt2spk, wrong) -> dict[tuple, tuple[int, int]]:
    speakers = sorted(set(utt2spk.values()))
    labels = np.array([speakers.index(utt2spk[u]) for u in utts])
    wrong_mask = np.array([u in wrong for u in utts])
    out = {}
    for spread, outlier in GRID:
        flagged = find_suspects(emb, labels, SuspectSettings(spread=spread, outlier=outlier)).flagged
        out[(spread, outlier)] = (int(flagged.sum()), int((flagged & wrong_mask).sum()))
    return out


def generated(work: Path, seeds, estimators, rows, grids) -> None:
    for corpus, (sizes, rate) in GENERATED.items():
        for seed in seeds:
            path = work / "generated" / f"{corpus.split(',')[0].replace(' ', '')}_seed{seed}"
            data_dir, scp, wrong = simulated_dir(path, sizes, rate, seed)
            data = validate_data_dir(data_dir)
            for estimator in [CENTROID, *estimators]:
                out = path / f"clean_{estimator}"
                report = clean_fit(scp, data, out, estimator=estimator, threshold=0.5, clean_dir=out / "data_clean",
                                   nj=1, say=lambda _: None)
                flagged = suspects_of(out)
                assert len(flagged) == report["n_suspected"]
                rows.append(row(f"generated {corpus}", seed, len(data.utts), len(sizes), len(wrong), estimator,
                                len(flagged), len(flagged & wrong)))
            utts, emb = load_embeddings(scp)
            grids.append((f"generated {corpus}", seed, len(utts), len(wrong),
                          grid_rows(corpus, seed, emb, utts, data.utt2spk, wrong)))


def moved_tree(corpus: Path, speakers: list[str], tree: Path, rate: float, seed: int) -> set[str]:
    """Symlinks corpus/<spk>/<file> under tree/<spk>/, a fraction ``rate`` of
    them under another speaker's folder; returns the moved files' utterance ids
    as prepare_folder_corpus names them ('<folder>-<file>')."""
    files = [(spk, f) for spk in speakers for f in sorted(os.listdir(corpus / spk)) if f.endswith(AUDIO)]
    rng = np.random.default_rng(seed)
    n_moved = max(1, int(round(rate * len(files))))
    moved = set(rng.choice(len(files), n_moved, replace=False).tolist())
    ids = set()
    for n, (spk, name) in enumerate(files):
        folder = spk
        if n in moved:
            others = [s for s in speakers if s != spk]
            folder = others[rng.integers(len(others))]
            ids.add(utterance_id(folder, Path(name)))
        (tree / folder).mkdir(parents=True, exist_ok=True)
        (tree / folder / name).symlink_to((corpus / spk / name).resolve())
    return ids


def real(args, work: Path, seeds, estimators, rows, grids) -> None:
    corpus = Path(args.corpus)
    speakers = (Path(args.speakers).read_text().split() if args.speakers
                else sorted(d.name for d in corpus.iterdir() if d.is_dir()))
    name = f"{corpus.name}, {len(speakers)} speakers"
    for seed in seeds:
        base = work / "real" / f"seed{seed}"
        tree, data_dir, out = base / "corpus", base / "data", base / "clean"
        if not (base / "moved").is_file():
            tree.mkdir(parents=True, exist_ok=True)
            wrong = moved_tree(corpus, speakers, tree, args.rate, seed)
            prepare_folder_corpus(tree, data_dir)
            (base / "moved").write_text("".join(f"{u}\n" for u in sorted(wrong)))
        wrong = set((base / "moved").read_text().split())
        n_utts = len(read_kv(data_dir / "utt2spk"))
        for estimator in [CENTROID, *estimators]:
            command = [sys.executable, "-m", "purl.cli", "clean", str(data_dir), "--model", args.model,
                       "--out-dir", str(out), "--estimator", estimator, "--nj", str(args.nj)]
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            flagged = suspects_of(out)
            rows.append(row(name, seed, n_utts, len(speakers), len(wrong), estimator, len(flagged),
                            len(flagged & wrong)))
        utts, emb = load_embeddings(out / "embeddings" / "xvector.scp")
        grids.append((name, seed, n_utts, len(wrong), grid_rows(name, seed, emb, utts, read_kv(data_dir / "utt2spk"),
                                                                 wrong)))


def main() -> int:
    args = get_parser().parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    estimators = [e for e in args.estimators.split(",") if e]
    if bool(args.model) != bool(args.corpus):
        raise SystemExit("bench_clean.py: --model and --corpus go together")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        rows, grids = [], []
        generated(work, seeds, estimators, rows, grids)
        if args.corpus:
            real(args, work, seeds, estimators, rows, grids)
    print(f"## purl clean with {100 * args.rate:g}% of the labels wrong\n")
    print("\n".join(HEADER + rows))
    print("\n## The centroid rule around its defaults (spread 2.5, outlier 5): flagged % / found %, "
          "the worst draw of each corpus\n")
    corpora = sorted({g[0] for g in grids}, key=[g[0] for g in grids].index)
    print("| spread | outlier | " + " | ".join(corpora) + " |")
    print("|---:|---:|" + "---|" * len(corpora))
    for setting in GRID:
        cells = []
        for corpus in corpora:
            draws = [(100 * g[4][setting][0] / g[2], 100 * g[4][setting][1] / g[3] if g[3] else None)
                     for g in grids if g[0] == corpus]
            worst_flag = max(d[0] for d in draws)
            founds = [d[1] for d in draws if d[1] is not None]
            cells.append(f"{worst_flag:.1f} / {min(founds):.0f}" if founds else f"{worst_flag:.1f} / -")
        print(f"| {setting[0]:g} | {setting[1]:g} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
