#!/usr/bin/env python3
"""Usage: python -m bench.bench_stages [--scale 1/8] [--growth] [--paper-nj 16] [--no-paper] [--out DIR]   (after . ./path.sh)

Every stage of egs/voxceleb/run.sh at VoxCeleb size, run the way the recipe
runs it (the same scripts and options, in a recipe folder, through path.sh),
except audio decoding, fbank and network compute, on inputs generated here
without audio:

- training set: 1,092,009 utterances of 5,994 speakers (lognormal speaker
  sizes, VoxCeleb2-like spread, >= 20 each), ~7 per video; features: a few
  real Kaldi-compressed matrices per stage-1 job, referenced by every utterance
  of that job; embeddings: 192-dim, simulated per true speaker;
- test set: 4,874 utterances of 40 speakers with trial lists of VoxCeleb1-O/E/H
  size (37,611 / 579,818 / 550,894 trials);
- stage 1's and the embedding extraction's jobs: their outputs written as
  the jobs leave them, with the settings records the scripts check (made by
  the stages' own functions), so each script plans, finds its jobs done and
  merges; stage 4 in both protocols' forms: tuned (whole-utterance
  embeddings, the histogram EM) and paper (one random crop, the original's
  per-speaker sklearn fits at tol 1e-3 in --paper-nj processes, the recipe's
  nj by default; the row names them and the cores: minutes at full size on
  few cores; --no-paper leaves it out);
- stage 0: a VoxCeleb-layout tree (empty m4a files, tiny wav files, official
  trial lists) at 1/8, 1/4 and 1/2 of the run's size (a full tree is 1.1M
  inodes), with the growth between them.

Each row is one child process tree: wall time and peak RSS (the largest
resident set of any process in it, from wait4). --scale runs everything at a
fraction of VoxCeleb (1/64 ... 1); --growth runs at half that size first and
prints how much each row grew from half to full size (target <= 2.3x).
Targets at full size: <= 60 s and <= 4 GB a row; the pair-weight lookup >= 10x
what an 8-GPU trainer asks for.

e.g.: python -m bench.bench_stages --scale 1/16 --growth
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from bench.bench_reliability import speaker_sizes
from purl.processes import usable_cores

ROOT = Path(__file__).resolve().parents[1]

TRAIN_UTTS, TRAIN_SPEAKERS = 1_092_009, 5_994
TEST_UTTS, TEST_SPEAKERS = 4_874, 40
TRIALS = {"vox1_O": 37_611, "vox1_E": 579_818, "vox1_H": 550_894}
OFFICIAL = {"vox1_O": "veri_test2.txt", "vox1_E": "list_test_all2.txt", "vox1_H": "list_test_hard2.txt"}
NJ = 16                  # the recipe's nj
UTTS_PER_VIDEO = 7       # VoxCeleb2 dev: 1,092,009 utterances from 150,480 videos
MATRICES_PER_JOB = 8     # real compressed feature matrices per stage-1 job
DIM = 192
NOISE_RATE = 0.2
MAX_SECONDS, MAX_GB, MAX_GROWTH = 60.0, 4.0, 2.3
# An 8-GPU trainer of the paper's batches (300 speakers x 2 = 600 chunks of 3 s):
# an ECAPA-TDNN or thin ResNet-34 step takes no less than ~0.3 s on a current GPU
# (2,000 chunks/s per GPU), so 8 GPUs consume at most 16,000 chunks/s = 8,000
# positive pairs/s = 27 global batches/s; every process looks up the weights
# of the whole gathered batch, so each asks for 27 lookups/s.
TRAINER_BATCHES_PER_S = 8 * 2000 / 600
SPEAKERS_PER_BATCH, UTTS_PER_SPEAKER = 300, 2


@dataclass
class Row:
    stage: str
    what: str
    seconds: float
    gb: float
    extra: str = ""
    target: str = f"<= {MAX_SECONDS:.0f} s, <= {MAX_GB:.0f} GB"
    ok: bool | None = None


def parse_scale(text: str) -> Fraction:
    scale = Fraction(text)
    if not Fraction(1, 64) <= scale <= 1:
        raise argparse.ArgumentTypeError(f"--scale {text}: choose from 1/64 to 1")
    return scale


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=parse_scale, default=Fraction(1), help="fraction of VoxCeleb size (1/64 ... 1)")
    parser.add_argument("--growth", action="store_true", help="run at half the scale first; print the growth")
    parser.add_argument("--out", help="work folder (default: a temporary one, removed at the end)")
    parser.add_argument("--no-tree", action="store_true", help="skip stage 0 from a corpus tree")
    parser.add_argument("--paper-nj", type=int, default=NJ,
                        help="processes of stage 4's sklearn fits in the paper form (default: the recipe's nj, %(default)s)")
    parser.add_argument("--no-paper", action="store_true",
                        help="skip stage 4 in the paper protocol's form (the sklearn fits: minutes at full size)")
    parser.add_argument("--lookup", nargs=2, metavar=("RELIABILITY_DIR", "DATA_DIR"),
                        help=argparse.SUPPRESS)  # the child that times the pair-weight lookup
    return parser


# --------------------------------------------------------------------------- running

# Runs argv[2:] and writes "seconds exit-status max-rss-KiB" to argv[1]. A
# process forked from this benchmark would start with its memory counted in
# its peak RSS, so the command is started by this small stdlib-only launcher:
# wait4's usage covers the child and every descendant it waited for, and
# ru_maxrss is the largest resident set among them (KiB on Linux).
_LAUNCHER = (
    "import os, subprocess, sys, time\n"
    "start = time.perf_counter()\n"
    "child = subprocess.Popen(sys.argv[2:])\n"
    "_, status, usage = os.wait4(child.pid, 0)\n"
    "with open(sys.argv[1], 'w') as f:\n"
    "    f.write(f'{time.perf_counter() - start} {os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}')\n"
)


def run_measured(command: str, cwd: Path, log: Path) -> tuple[float, float]:
    """Runs ``command`` with bash after sourcing path.sh, as the recipe does;
    returns (wall seconds, peak RSS in GB of its process tree). Fails loudly."""
    usage = log.with_suffix(".usage")
    with open(log, "w") as out:
        subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, str(usage),
                        "bash", "-c", f"set -euo pipefail; . ./path.sh; {command}"],
                       cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=True)
    seconds, status, max_rss_kib = usage.read_text().split()
    if int(status) != 0:
        raise SystemExit(f"bench_stages: '{command}' failed ({status}) in {cwd}; the end of its log {log}:\n"
                         + "".join(log.read_text().splitlines(keepends=True)[-30:]))
    return float(seconds), int(max_rss_kib) / 2**20


def make_recipe(folder: Path) -> Path:
    """A recipe folder like egs/voxceleb/: its conf and links to the shared scripts."""
    folder.mkdir(parents=True)
    for name in ("path.sh", "steps", "utils", "local"):
        (folder / name).symlink_to(ROOT / name)
    (folder / "conf").symlink_to(ROOT / "egs" / "mini" / "conf")  # tiny CPU models: a few steps
    (folder / "log").mkdir()
    return folder


# --------------------------------------------------------------------------- inputs

def sizes_at(scale: Fraction) -> dict[str, int]:
    return {
        "train_utts": round(TRAIN_UTTS * scale), "train_speakers": max(2, round(TRAIN_SPEAKERS * scale)),
        "test_utts": max(20, round(TEST_UTTS * scale)), "test_speakers": max(2, round(TEST_SPEAKERS * scale)),
        **{name: max(10, round(n * scale)) for name, n in TRIALS.items()},
    }


def train_ids(n_utts: int, n_speakers: int, rng: np.random.Generator,
              prefix: str = "id") -> tuple[list[str], list[str], np.ndarray]:
    """Utterance ids <spk>-<video>-<nnnnn> in sorted order, their speakers, and (N,) speaker indices."""
    sizes = speaker_sizes(n_speakers, n_utts, rng, min_size=min(20, n_utts // n_speakers))
    utts, spks = [], []
    for s, size in enumerate(sizes):
        spk = f"{prefix}{s:05d}"
        for u in range(size):
            utts.append(f"{spk}-vid{u // UTTS_PER_VIDEO:07d}-{u % UTTS_PER_VIDEO + 1:05d}")
            spks.append(spk)
    return utts, spks, np.repeat(np.arange(n_speakers), sizes)


def write_lines(path: Path, lines) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.writelines(lines)


def write_data_dir(path: Path, utts: list[str], spks: list[str], wav_root: str, ext: str) -> None:
    write_lines(path / "wav.scp", (f"{u} {wav_root}/{u.replace('-', '/')}{ext}\n" for u in utts))
    write_lines(path / "utt2spk", (f"{u} {s}\n" for u, s in zip(utts, spks)))
    spk2utt: dict[str, list[str]] = {}
    for u, s in zip(utts, spks):
        spk2utt.setdefault(s, []).append(u)
    write_lines(path / "spk2utt", (f"{s} {' '.join(us)}\n" for s, us in spk2utt.items()))


def write_fbank_jobs(data: Path, fbank_root: Path, rng: np.random.Generator) -> None:
    """What stage 1's nj jobs leave behind (purl.features.make_fbank_job's files,
    in the ark dir steps/fbank_jobs.py names): a few real compressed matrices per
    job, every utterance pointing at one, and each job's settings record made by
    the stage's own function, so that make_fbank.sh takes the jobs as done."""
    from purl.data.datadir import read_kv
    from purl.features import MIN_FRAMES
    from purl.kaldi_io import ArkWriter
    from purl.records import write_record
    from purl.stages.fbank import fbank_dir_for, fbank_job_settings

    fbank = fbank_dir_for(data, fbank_root).resolve()
    fbank.mkdir(parents=True)
    for n in range(1, NJ + 1):
        wav_scp = read_kv(data / f"split{NJ}" / str(n) / "wav.scp")
        utts = list(wav_scp)
        base = fbank / f"raw_fbank.{n}"
        frames = rng.integers(400, 1500, size=MATRICES_PER_JOB)  # 4-15 s
        scp = Path(f"{base}.matrices.scp")
        with ArkWriter(f"{base}.ark", scp, ark_name=f"{base}.ark") as writer:
            for k, f in enumerate(frames):
                writer(f"m{k}", (12.0 - np.linspace(0, 6, 80) + rng.normal(0, 2.0, (f, 80))).astype(np.float32))
        entries = [line.split()[1] for line in open(scp)]
        scp.unlink()
        which = np.arange(len(utts)) % MATRICES_PER_JOB
        write_lines(Path(f"{base}.utt2num_frames"), (f"{u} {frames[k]}\n" for u, k in zip(utts, which)))
        write_lines(Path(f"{base}.utt2dur"), (f"{u} {(frames[k] + 2) / 100:.3f}\n" for u, k in zip(utts, which)))
        write_lines(Path(f"{base}.failed"), [])
        write_lines(Path(f"{base}.scp"), (f"{u} {entries[k]}\n" for u, k in zip(utts, which)))
        write_record(f"{base}.settings", fbank_job_settings(wav_scp, sample_rate=16000, num_mel_bins=80,
                                                            compress=True, min_frames=MIN_FRAMES))


def write_embeddings(out: Path, utts: list[str], emb: np.ndarray, nj: int) -> None:
    """An embedding set as extract_embeddings.sh leaves it: nj arks with scps,
    and the merged xvector.scp (for inputs that no timed row extracts)."""
    from purl.kaldi_io import save_embeddings

    out.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, len(utts), nj + 1).astype(int)
    for n in range(nj):
        save_embeddings(out / f"xvector.{n + 1}.ark", utts[bounds[n]:bounds[n + 1]], emb[bounds[n]:bounds[n + 1]])
    with open(out / "xvector.scp", "w") as f:
        for n in range(nj):
            f.write((out / f"xvector.{n + 1}.scp").read_text())


def write_embedding_jobs(checkpoint: Path, data: Path, out: Path, row_of: dict[str, int], emb: np.ndarray,
                         options: dict) -> None:
    """What extract_embeddings.sh's NJ jobs leave behind: per job the ark and scp
    of its part's utterances and its settings record, made by the stage's own
    functions (the split steps/embedding_jobs.py makes, purl.stages.embeddings), so that
    the script takes the jobs as done and plans and merges only."""
    from purl.data.datadir import read_kv, split_data_dir
    from purl.kaldi_io import save_embeddings
    from purl.records import text_digest, write_record
    from purl.stages.embeddings import embedding_settings

    out.mkdir(parents=True, exist_ok=True)
    digest = text_digest(checkpoint)
    for n, part in enumerate(split_data_dir(data, NJ), 1):
        utts = list(read_kv(part / "feats.scp"))
        save_embeddings((out / f"xvector.{n}.ark").resolve(), utts, emb[[row_of[u] for u in utts]])
        write_record(out / f"xvector.{n}.settings", embedding_settings(digest, part / "feats.scp", **options))


def write_trials(path: Path, count: int, labels: np.ndarray, utts: list[str], rng: np.random.Generator,
                 official: bool = False) -> None:
    """About half target trials; in the official form '<1|0> spk/video/n.wav ...' or as a data dir's trials."""
    counts = np.bincount(labels)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    spk = rng.integers(0, len(counts), size=count)
    a = starts[spk] + rng.integers(0, counts[spk])
    same = starts[spk] + rng.integers(0, counts[spk])
    b = np.where(rng.random(count) < 0.5, same, rng.integers(0, len(labels), size=count))
    # an utterance against itself is no trial (score.py refuses it): its speaker's next utterance instead
    self_trial = a == b
    spk_b = labels[b[self_trial]]
    b[self_trial] = starts[spk_b] + (b[self_trial] - starts[spk_b] + 1) % counts[spk_b]
    target = labels[a] == labels[b]
    name = (lambda u: u.replace("-", "/", 1).rsplit("-", 1)[0] + "/" + u.rsplit("-", 1)[1] + ".wav") if official else str
    write_lines(path, (f"{int(t)} {name(utts[i])} {name(utts[j])}\n" if official else
                       f"{utts[i]} {utts[j]} {'target' if t else 'nontarget'}\n" for i, j, t in zip(a, b, target)))


def make_tree(root: Path, scale: Fraction, rng: np.random.Generator) -> None:
    """VoxCeleb's layout: vox2 dev/aac/<id>/<video>/<n>.m4a (empty: stage 0 reads
    no m4a), vox1 wav/<id>/<video>/<n>.wav (tiny real wav: stage 0 reads their
    headers), meta/ with the three official lists."""
    import soundfile as sf

    n = sizes_at(scale)
    utts, _, _ = train_ids(n["train_utts"], n["train_speakers"], rng)
    for u in utts:
        path = root / "vox2" / (u.replace("-", "/") + ".m4a")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    test_utts, _, test_labels = train_ids(n["test_utts"], n["test_speakers"], rng, prefix="id1")
    template = root / "template.wav"
    sf.write(template, np.zeros(1600, np.int16), 16000, subtype="PCM_16")
    wav = template.read_bytes()
    for u in test_utts:
        path = root / "vox1" / (u.replace("-", "/") + ".wav")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(wav)
    for name, official in OFFICIAL.items():
        write_trials(root / "meta" / official, n[name], test_labels, test_utts, rng, official=True)


# --------------------------------------------------------------------------- the lookup child

def lookup_rate(reliability_dir: str, data_dir: str) -> None:
    """Loads the pair weights as steps/train.py does and asks for the weights of
    global batches as the trainer does; prints the rate as JSON."""
    from purl.data.dataset import SpeakerBatchSampler
    from purl.pair_weights import pair_weights_from_dir

    start = time.perf_counter()
    weights = pair_weights_from_dir(reliability_dir, data_dir)
    labels = weights.reliability.labels[weights.rows]
    speakers = np.unique(labels, return_inverse=True)[1].ravel()
    p = min(SPEAKERS_PER_BATCH, int(speakers.max()) + 1)
    sampler = SpeakerBatchSampler(speakers, p, UTTS_PER_SPEAKER, samples_per_epoch=p * UTTS_PER_SPEAKER, seed=0)
    setup = time.perf_counter() - start
    rng = np.random.default_rng(0)
    batches = [sampler.global_batch(rng)[0].ravel() for _ in range(200)]
    start = time.perf_counter()
    for utts in batches:
        weights.pair_weights(utts, speakers[utts])
    per_s = len(batches) / (time.perf_counter() - start)
    print(json.dumps({"setup_s": setup, "batches_per_s": per_s, "pairs_per_batch": p * (UTTS_PER_SPEAKER - 1)}))


# --------------------------------------------------------------------------- the stages

def run_all(work: Path, scale: Fraction, tree: bool, paper: bool, paper_nj: int = NJ) -> list[Row]:
    rng = np.random.default_rng(0)
    recipe = make_recipe(work / "recipe")
    logs = recipe / "log"
    rows: list[Row] = []
    n = sizes_at(scale)

    def stage(stage_name: str, what: str, command: str) -> Row:
        seconds, gb = run_measured(command, recipe, logs / f"{len(rows):02d}.log")
        row = Row(stage_name, what, seconds, gb)
        row.ok = seconds <= MAX_SECONDS and gb <= MAX_GB
        rows.append(row)
        print(f"  {stage_name:>5} {what}: {seconds:.1f} s, {gb:.2f} GB", file=sys.stderr, flush=True)
        return row

    def jobs_were_done(script: str) -> None:
        """The last row's script found all its jobs done: otherwise the generated
        job outputs no longer match what the script checks, and it timed other work."""
        log = logs / f"{len(rows) - 1:02d}.log"
        if "(0 to run)" not in log.read_text():
            raise SystemExit(f"bench_stages: {script} did not take the generated jobs as done (see {log}); "
                             "the fake job outputs of bench/bench_stages.py no longer match the stage's records")

    if tree:
        for fraction in (Fraction(1, 8), Fraction(1, 4), Fraction(1, 2)):
            corpus = work / "corpus"
            make_tree(corpus, scale * fraction, rng)
            files = sizes_at(scale * fraction)["train_utts"]
            row = stage("0", f"prepare_voxceleb + validate, tree of {files:,} m4a ({fraction} of this run)",
                        f"local/prepare_voxceleb.py --vox2-dev-root {corpus}/vox2 {corpus}/vox1 {corpus}/meta data_tree; "
                        "validate_data_dir.py --require wav.scp,utt2spk,spk2utt data_tree/vox2_dev; "
                        "validate_data_dir.py --require wav.scp,utt2spk,spk2utt,utt2dur,trials_vox1_O data_tree/vox1")
            # The time target is for the full size: checked on the extrapolation.
            row.target = f"<= {MAX_GB:.0f} GB"
            row.ok = row.gb <= MAX_GB
            shutil.rmtree(corpus)
            shutil.rmtree(recipe / "data_tree")

    # The data as stage 0 leaves it, then stage 1's jobs' outputs.
    train, test = recipe / "data" / "vox2_dev", recipe / "data" / "vox1"
    noisy = recipe / "data" / f"vox2_dev_noisy{NOISE_RATE}_seed0"
    utts, spks, true_labels = train_ids(n["train_utts"], n["train_speakers"], rng)
    write_data_dir(train, utts, spks, "/corpus/voxceleb2/dev/aac", ".m4a")
    test_utts, test_spks, test_labels = train_ids(n["test_utts"], n["test_speakers"], rng, prefix="id1")
    write_data_dir(test, test_utts, test_spks, "/corpus/voxceleb1/wav", ".wav")
    for name in TRIALS:
        write_trials(test / f"trials_{name}", n[name], test_labels, test_utts, rng)

    stage("-", "preflight.py of stage 1 (audio readers of wav.scp, disk room for the features)",
          # --mean-duration 0.01: the same count of wav.scp lines, but the disk
          # check passes where the ~70 GB that VoxCeleb2's fbank needs are not free.
          "steps/preflight.py --mean-duration 0.01 --data-dir data/vox2_dev --data-dir data/vox1 --fbank-dir fbank")
    stage("tools", "validate_data_dir.py (wav.scp, utt2spk, spk2utt)",
          "validate_data_dir.py --require wav.scp,utt2spk,spk2utt data/vox2_dev")
    stage("tools", f"split_data_dir.py {NJ}", f"split_data_dir.py data/vox2_dev {NJ}")
    write_fbank_jobs(train, recipe / "fbank", rng)
    stage("1", f"make_fbank.sh: validate, plan, {NJ} jobs done, merge",
          f"steps/make_fbank.sh --nj {NJ} data/vox2_dev data/vox2_dev/log fbank")
    jobs_were_done("make_fbank.sh")
    stage("tools", "validate_data_dir.py (with feats.scp, utt2dur)",
          "validate_data_dir.py --require wav.scp,utt2spk,spk2utt,feats.scp,utt2num_frames,utt2dur data/vox2_dev")
    shutil.copytree(train, recipe / "data" / "fix_copy", ignore=shutil.ignore_patterns("split*", "log", ".backup"))
    with open(recipe / "data" / "fix_copy" / "utt2dur", "a") as f:
        f.write("zzz-not-an-utterance 1.0\n")  # something to fix
    stage("tools", "fix_data_dir.py", "fix_data_dir.py data/fix_copy")
    write_lines(recipe / "data" / "half_speakers", (f"{s}\n" for s in sorted(set(spks))[::2]))
    stage("tools", "subset_data_dir.py --spk-list (half the speakers)",
          "subset_data_dir.py --spk-list data/half_speakers data/vox2_dev data/subset")
    noisy_dir = noisy.relative_to(recipe).as_posix()
    stage("2", f"simulate_noise.py {NOISE_RATE}", f"steps/simulate_noise.py --seed 0 {NOISE_RATE} data/vox2_dev {noisy_dir}")
    few_steps = ("train.seed=0 optim.epochs=1 data.samples_per_epoch=320 data.num_workers=1 train.log_every=1")
    stage("3", "train.sh: data set, sampler, loader set-up + 5 steps of a tiny ECAPA-TDNN",
          f"steps/train.sh --gpus '' --overrides '{few_steps}' conf/tuned/supcon.yaml {noisy_dir} exp/supcon")

    from purl.testing import simulate_embeddings

    checkpoint = recipe / "exp" / "supcon" / "models" / "final.pt"
    sizes = np.bincount(true_labels)
    emb, _, _ = simulate_embeddings(sizes, dim=DIM, noise_rate=0.0, seed=0)
    row_of = {u: i for i, u in enumerate(utts)}

    def extract(what: str, data: str, out: str, options: dict, flags: str) -> None:
        """A row for extract_embeddings.sh whose NJ jobs are done: its plan and merge."""
        write_embedding_jobs(checkpoint, recipe / data, recipe / out, row_of, emb, options)
        stage(what[0], f"extract_embeddings.sh{flags}: plan, {NJ} jobs done, merge ({what[1]})",
              f"steps/extract_embeddings.sh --nj {NJ} --gpus ''{flags} exp/supcon/models/final.pt {data} {out}")
        jobs_were_done("extract_embeddings.sh")

    # Stage 4 in the recipe's two protocols: tuned (whole utterances, the
    # histogram EM) and paper (one random crop, the original's sklearn loop).
    whole = {"num_crops": 0, "crop_frames": 300, "random_crop_seed": None}
    crop = {"num_crops": 1, "crop_frames": 300, "random_crop_seed": 0}
    extract(("4", "training set, tuned"), noisy_dir, "exp/supcon/embeddings/train", whole, "")
    stage("4", "reliability.py --estimator histogram --compare global,bic --clean-dir (tuned)",
          f"steps/reliability.py --estimator histogram --compare global,bic --clean-dir {noisy_dir}_cleaned "
          f"exp/supcon/embeddings/train/xvector.scp {noisy_dir} exp/supcon/reliability")
    if paper:
        extract(("4", "training set, paper"), noisy_dir, "exp/supcon/embeddings/train_crop", crop,
                " --num-crops 1 --crop-frames 300 --random-crop-seed 0")
        stage("4", f"reliability.py --estimator sklearn --tol 1e-3 --nj {paper_nj} --compare global,bic --clean-dir "
                   f"(paper; {paper_nj} processes on {usable_cores()} cores)",
              f"steps/reliability.py --estimator sklearn --tol 1e-3 --nj {paper_nj} --compare global,bic --clean-dir "
              f"{noisy_dir}_cleaned_paper exp/supcon/embeddings/train_crop/xvector.scp {noisy_dir} "
              "exp/supcon/reliability_paper")
    stage("5", "train.sh PURL: pair weights loaded + 5 steps of a tiny ECAPA-TDNN",
          f"steps/train.sh --gpus '' --overrides '{few_steps} purl.init_checkpoint=exp/supcon/models/final.pt "
          f"purl.reliability=exp/supcon/reliability' conf/tuned/purl.yaml {noisy_dir} exp/purl")
    lookup = stage("5", f"pair-weight lookup, {SPEAKERS_PER_BATCH}x{UTTS_PER_SPEAKER} batches (set-up + 200 batches)",
                   f"python -m bench.bench_stages --lookup exp/supcon/reliability {noisy_dir} > log/lookup.json")
    metrics = json.loads((logs / "lookup.json").read_text())
    need = TRAINER_BATCHES_PER_S * metrics["pairs_per_batch"]
    have = metrics["batches_per_s"] * metrics["pairs_per_batch"]
    lookup.extra = f"{have:,.0f} pairs/s = {have / need:.0f}x an 8-GPU trainer's {need:,.0f}"
    lookup.target += ", >= 10x"
    lookup.ok = lookup.ok and have >= 10 * need

    stage("5", "relabel_data_dir.py (relabel's proposals from stage 4's embeddings; a round's again)",
          f"steps/relabel_data_dir.py exp/supcon/embeddings/train/xvector.scp {noisy_dir} {noisy_dir}_relabelled")
    stage("5", "regroup_data_dir.py (two voices under a label split, two labels of one voice joined)",
          f"steps/regroup_data_dir.py exp/supcon/embeddings/train/xvector.scp {noisy_dir} {noisy_dir}_regrouped")

    cohort = noisy_dir + "_cohort20"
    stage("6", "subset_data_dir.py --per-speaker 20 (AS-Norm cohort)",
          f"subset_data_dir.py --per-speaker 20 {noisy_dir} {cohort}")
    extract(("6", "AS-Norm cohort; writes mean.vec"), cohort, "exp/supcon/embeddings/cohort", whole, "")
    test_emb, _, _ = simulate_embeddings(np.bincount(test_labels), dim=DIM, noise_rate=0.0, seed=1)
    write_embeddings(recipe / "exp" / "supcon" / "embeddings" / "vox1", test_utts, test_emb, NJ)
    stage("6", "score.py: cosine + AS-Norm (top 300) on O/E/H, DET plots, RESULTS.md",
          "steps/score.py --mean exp/supcon/embeddings/cohort/mean.vec --cohort exp/supcon/embeddings/cohort/xvector.scp "
          f"--cohort-utt2spk {cohort}/utt2spk --top-k 300 --results RESULTS.md exp/supcon/embeddings/vox1/xvector.scp "
          "exp/supcon/scores data/vox1/trials_vox1_O data/vox1/trials_vox1_E data/vox1/trials_vox1_H")
    stage("6", "summarize.py (results table + stage 4 detection)",
          "steps/summarize.py --reliability-report exp/supcon/reliability/report.json 'noisy SupCon=exp/supcon'")
    return rows


def print_table(rows: list[Row], scale: Fraction, half: list[Row] | None) -> None:
    n = sizes_at(scale)
    print(f"\n## Stages at {scale} of VoxCeleb size: {n['train_utts']:,} training utterances of "
          f"{n['train_speakers']:,} speakers; {n['test_utts']:,} test utterances, "
          f"{n['vox1_O'] + n['vox1_E'] + n['vox1_H']:,} trials\n")
    head = "| stage | what | wall (s) | peak RSS (GB) |" + (" growth from half size |" if half else "") + " target | ok |"
    print(head)
    print("|---|---|---:|---:|" + ("---:|" if half else "") + "---|---|")
    all_ok = True
    for k, row in enumerate(rows):
        growth = ""
        ok = row.ok
        if half:
            g = row.seconds / max(half[k].seconds, 1e-9)
            growth = f" {g:.2f}x |"
            ok = ok and g <= MAX_GROWTH
        all_ok = all_ok and ok
        what = row.what + (f"; {row.extra}" if row.extra else "")
        print(f"| {row.stage} | {what} | {row.seconds:.1f} | {row.gb:.2f} |{growth} {row.target}"
              f"{f', growth <= {MAX_GROWTH}x' if half else ''} | {'yes' if ok else '**no**'} |")
    print(f"\nAll within target: {'yes' if all_ok else 'no'}")


def print_tree_table(rows: list[Row]) -> None:
    """Stage 0 at 1/8, 1/4 and 1/2 of the run's size, each doubling's growth."""
    if not rows:
        return
    print("\n### Stage 0 from a corpus tree\n")
    print("| what | wall (s) | peak RSS (GB) | growth from the previous size | target | ok |")
    print("|---|---:|---:|---:|---|---|")
    for k, row in enumerate(rows):
        growth = row.seconds / rows[k - 1].seconds if k else None
        ok = row.ok and (growth is None or growth <= MAX_GROWTH)
        print(f"| {row.what} | {row.seconds:.1f} | {row.gb:.2f} | {f'{growth:.2f}x' if growth else ''} | "
              f"{row.target}, growth <= {MAX_GROWTH}x | {'yes' if ok else '**no**'} |")
    # Linear growth doubles the time; a steeper last step is carried on as it is.
    factor = max(2.0, rows[-1].seconds / rows[-2].seconds if len(rows) > 1 else 2.0)
    full = rows[-1].seconds * factor
    print(f"\nExtrapolated to the run's full size (x{factor:.2f} from the largest tree): {full:.0f} s, "
          f"target <= {MAX_SECONDS:.0f} s: {'yes' if full <= MAX_SECONDS else '**no**'}")


def main() -> None:
    args = get_parser().parse_args()
    if args.lookup:
        lookup_rate(*args.lookup)
        return
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_stages."))
    if args.out and work.exists() and any(work.iterdir()):
        raise SystemExit(f"bench_stages: {work} is not empty (give an empty or new --out folder)")
    try:
        half = None
        if args.growth:
            print(f"bench_stages: half size ({args.scale / 2}) in {work / 'half'}", file=sys.stderr)
            half = run_all(work / "half", args.scale / 2, tree=False, paper=not args.no_paper, paper_nj=args.paper_nj)
        print(f"bench_stages: size {args.scale} in {work / 'full'}", file=sys.stderr)
        rows = run_all(work / "full", args.scale, tree=not args.no_tree, paper=not args.no_paper,
                       paper_nj=args.paper_nj)
        print_table([r for r in rows if r.stage != "0"], args.scale, half)
        print_tree_table([r for r in rows if r.stage == "0"])
    finally:
        if not args.out:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
