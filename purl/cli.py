"""Usage: purl <command> [options] ...

Use a trained model (exp/<model>/models/final.pt, or exp/<model>) on audio:

  purl embed MODEL a.wav b.m4a ...      embeddings -> Kaldi xvector.ark/scp (or .npy)
  purl compare MODEL a.wav b.wav        the LLR (or cosine), and accept/reject at a prior or stage 6's threshold
  purl score MODEL TRIALS               scores of 'a.wav b.wav [target|nontarget]' lines, accept/reject
                                        (+ EER, minDCF; Cllr, actual DCF of a calibrated model)
  purl clean DATA_DIR --model MODEL     stage 4 on your own data dir: suspected mislabelled utterances
  purl export MODEL --format onnx OUT   the encoder as ONNX or TorchScript

e.g.: purl compare exp/supcon/models/final.pt spk1/a.wav spk2/b.wav
`purl <command> --help` lists a command's options with their defaults; options
may stand anywhere after the command.
"""

from __future__ import annotations

import os

# Before numpy and torch load OpenMP, as path.sh sets it for the recipes: idle
# OpenMP threads sleep instead of spinning, which on a machine shared with
# another job slows both several times over.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from purl.errors import PurlError, UsageError  # noqa: E402
from purl.logs import setup_logging  # noqa: E402

PROG = "purl"
AUDIO = "wav, flac, ogg, opus, m4a, aac, mp3, ...; any sample rate; several channels averaged"
# A cosine score lies in [-1, 1]: a threshold outside accepts or rejects every trial.
SCORE_THRESHOLD_RANGE = (-1.0, 1.0, "a cosine score")
SCORING_METADATA = "purl_scoring"  # an export's copy of threshold.json: mean, EER threshold, calibration
PRIOR_RANGE = (1e-9, 1 - 1e-9, "a prior probability, strictly between 0 and 1")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Ends an option's help with its default once: not where the help names its
    own default or there is none ('(required)' for a required option)."""

    def __init__(self, prog):
        super().__init__(prog, max_help_position=32)

    def _get_help_string(self, action):
        text = action.help or ""
        if action.required and action.option_strings:
            return f"{text} (required)"
        if action.default is None or "default:" in text or "(default" in text:
            return text
        return super()._get_help_string(action)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="checkpoint (exp/<model>/models/final.pt) or exp dir (exp/<model>)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda or cuda:1")
    add_thread_options(parser)


def add_thread_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=0,
                        help="torch's CPU threads for the encoder; 0: the cores this process may use")


def add_decision_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--p-target", type=float,
                        help="the prior of a same-speaker trial: a calibrated model accepts when its LLR is at "
                             "least the Bayes threshold log((1 - p) / p); default: the prior of its calibration")
    parser.add_argument("--at", choices=("bayes", "eer"), default="bayes",
                        help="a calibrated model decides at the Bayes threshold of --p-target, or at stage 6's "
                             "EER threshold")
    parser.add_argument("--threshold", type=float,
                        help="accept when the cosine >= this, in [-1, 1], instead; default: stage 6's decision "
                             "(exp/<model>/scores/threshold.json): a calibrated model's Bayes threshold, else "
                             "the EER threshold")


def get_parser() -> argparse.ArgumentParser:
    return get_parsers()[0]


def get_parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The purl parser, and each command's own by name."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="<command>")

    p = commands.add_parser("embed", formatter_class=HelpFormatter, help="embed audio files",
                            description="Embeds each utterance (whole, any length) into Kaldi float vectors: "
                                        "OUT.ark with its index OUT.scp, or with OUT ending in .npy an (N, D) "
                                        "array and OUT minus .npy plus .utts (the ids in row order). A file's id "
                                        "is its path as given; with --wav-scp, its key.")
    add_model_options(p)
    p.add_argument("wavs", nargs="*", metavar="WAV", help=f"audio files ({AUDIO})")
    p.add_argument("--wav-scp", help="a Kaldi wav.scp (id path, or id command|) to read instead of WAV "
                                     "arguments; default: the WAV arguments")
    p.add_argument("--out", default="xvector.ark", help="output: .ark (+ .scp) or .npy (+ .utts)")
    p.add_argument("--nj", type=int, default=4, help="threads reading audio and computing features")

    p = commands.add_parser("compare", formatter_class=HelpFormatter, help="score two audio files",
                            description="Prints the cosine of two utterances as stage 6 scores them and, when "
                                        "stage 6 calibrated the model (exp/<model>/scores/threshold.json with a "
                                        "calibration), its log-likelihood ratio and whether they are the same "
                                        "speaker at the Bayes threshold of --p-target. A model scored before "
                                        "calibration existed decides at stage 6's EER threshold.")
    add_model_options(p)
    p.add_argument("enroll", metavar="A", help=f"first audio file ({AUDIO})")
    p.add_argument("test", metavar="B", help="second audio file")
    add_decision_options(p)

    p = commands.add_parser("score", formatter_class=HelpFormatter, help="score a trial list of audio files",
                            description="Scores each line 'a.wav b.wav' or 'a.wav b.wav target|nontarget' of "
                                        "TRIALS (paths relative to --wav-root) into OUT as 'a b cosine decision' "
                                        "lines, the decision accept or reject as purl compare decides (without "
                                        "a threshold, 'a b cosine' lines), and for a model stage 6 calibrated its "
                                        "log-likelihood ratios into OUT with .llr for .score; with labels on every "
                                        "line, prints EER and minDCF (and Cllr, actual DCF) and writes them to "
                                        "OUT.json. Each file is embedded once.")
    add_model_options(p)
    p.add_argument("trials", help="trial list: 'a.wav b.wav [target|nontarget]' per line")
    p.add_argument("--wav-root", default=".", help="directory the trial list's paths are relative to")
    p.add_argument("--out", help="score file (default: TRIALS's name + .score, in the current directory)")
    add_decision_options(p)

    p = commands.add_parser("clean", formatter_class=HelpFormatter, help="find mislabelled utterances in a data dir",
                            description="Finds suspected wrong labels in any labelled Kaldi data dir (wav.scp, "
                                        "utt2spk, spk2utt; utils/validate_data_dir.py checks one): embeds every "
                                        "utterance with MODEL and lists the utterances that sit nearer another "
                                        "speaker than their own, or far from their own, with the speaker each "
                                        "resembles (--estimator centroid), or whose pairs fall in the "
                                        "low-similarity component of a per-speaker GMM (stage 4's estimators). "
                                        "Writes OUT_DIR/{suspected_mislabelled, report.md, a plot, embeddings/, "
                                        "data_clean/, data_relabelled/, data_regrouped/} and prints how to read them.")
    p.add_argument("data_dir", help="data dir with wav.scp, utt2spk and spk2utt")
    p.add_argument("--model", required=True, help="checkpoint (exp/<model>/models/final.pt) or exp dir")
    p.add_argument("--out-dir", help="where to write (default: DATA_DIR + _purl_clean)")
    # centroid, not stage 4's histogram GMMs: with 1% of files moved, histogram flagged 21-47% of
    # the utterances and bic missed a third to a half of the moved ones (bench/bench_clean.py).
    p.add_argument("--estimator", default="centroid",
                   help="centroid: an utterance is suspected when another speaker's centroid is nearer than its "
                        "own and its cosine to its own is unusual for that speaker, or far outside it "
                        "(purl/suspects.py); or one of stage 4's per-speaker GMMs of the pair cosines: bic (a "
                        "speaker keeps one component when BIC prefers it), histogram (always two components: "
                        "flags many right labels), sklearn (the original work's GaussianMixture, slow) or global "
                        "(one GMM over all speakers' pairs)")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="the GMM estimators': a pair is unreliable when its weight w is below this, and an "
                        "utterance is suspected when the mean w of its pairs is below it; strictly between 0 and 1")
    p.add_argument("--nj", type=int, default=None,
                   help="threads reading audio and computing features, and processes of --estimator sklearn's "
                        "per-speaker fits (the same fits in any number); default: the cores this process may use")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    add_thread_options(p)

    p = commands.add_parser("export", formatter_class=HelpFormatter, help="export the encoder (ONNX, TorchScript)",
                            description="Writes the encoder as ONNX or TorchScript: input 'feats' (batch, "
                                        "frames, 80) mean-normalised Kaldi fbank of 16 kHz audio on the 16-bit "
                                        "scale, output 'embedding' (batch, embed_dim); batch and frames free. "
                                        "The export is checked against the PyTorch model before it is written.")
    p.add_argument("model", help="checkpoint (exp/<model>/models/final.pt) or exp dir (exp/<model>)")
    p.add_argument("out", help="output file, e.g. model.onnx or model.ts")
    p.add_argument("--format", required=True, choices=("onnx", "torchscript"), help="file format")
    return parser, commands.choices


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command's options may stand anywhere after it (purl embed MODEL --out e.npy a.wav
    b.wav): its own parser reads them intermixed with its arguments."""
    parser, commands = get_parsers()
    if not argv or argv[0] not in commands:
        return parser.parse_args(argv)  # --help, or the error for no or an unknown command
    args = commands[argv[0]].parse_intermixed_args(argv[1:])
    args.command = argv[0]
    return args


# ---------------------------------------------------------------------------
# commands

def load(args, model: str | None = None):
    import purl

    check_device(args.device)
    set_threads(args.threads)
    return purl.load_model(args.model if model is None else model, device=args.device)


def set_threads(threads: int) -> None:
    """torch's intra-op threads: ``threads``, or with 0 the cores this process may
    use (torch's own default counts the machine's, whatever taskset or Slurm allow)."""
    import torch

    from purl.processes import usable_cores

    if threads < 0:
        raise UsageError(f"--threads {threads}: give 0 (the usable cores) or more")
    torch.set_num_threads(threads or usable_cores())


class Progress:
    """A progress line on stderr ('done/total, percent, rate'), redrawn in place
    at most twice a second on a terminal, every 10% otherwise (a log file)."""

    def __init__(self, what: str, total: int, stream=None):
        self.what, self.total, self.done = what, total, 0
        self.stream = sys.stderr if stream is None else stream
        self.tty = self.stream.isatty()
        self.start = self.shown = time.monotonic()
        self.next_tenth = 1

    def __call__(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        finished = self.done >= self.total
        tenth = 10 * self.done // max(self.total, 1)
        if (self.tty and now - self.shown < 0.5 and not finished) or (not self.tty and tenth < self.next_tenth):
            return
        self.shown, self.next_tenth = now, tenth + 1
        rate = self.done / max(now - self.start, 1e-9)
        line = f"{PROG} {self.what}: {self.done}/{self.total} ({100 * self.done / max(self.total, 1):.0f}%), {rate:.1f}/s"
        end = "\n" if finished or not self.tty else ""
        self.stream.write(("\r" if self.tty else "") + line + end)
        self.stream.flush()


def check_device(device: str) -> None:
    import torch

    try:
        device = torch.device(device)
    except RuntimeError as e:
        raise UsageError(f"--device {device}: {e}") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no CUDA device is available to this torch build; use --device cpu")


def wav_list(args) -> list[tuple[str, str]]:
    """(id, audio entry) pairs from WAV arguments or --wav-scp."""
    from purl.data.datadir import read_kv

    if bool(args.wavs) == bool(args.wav_scp):
        raise UsageError("give audio files or --wav-scp (one of the two)")
    if args.wav_scp:
        return list(read_kv(args.wav_scp, check_sorted=False).items())
    spaced = next((w for w in args.wavs if len(w.split()) != 1), None)
    if spaced is not None:
        raise UsageError(f"'{spaced}': a path with white space cannot be a Kaldi id; list it in a wav.scp "
                         "and use --wav-scp")
    if len(set(args.wavs)) != len(args.wavs):
        raise UsageError("the same file is given twice; ids must be unique")
    return [(w, w) for w in args.wavs]


def embed_all(model, items: list[tuple[str, str]], what: str = "", nj: int = 1,
              progress: str | None = None) -> np.ndarray:
    """(N, D) embeddings in batches (``nj`` feature threads), with a progress
    line on stderr named ``progress``; an unreadable file is an error naming its id."""
    from purl.api import ModelError

    on_done = Progress(progress, len(items)) if progress else None
    try:
        return model.embed_many([entry for _, entry in items], names=[utt for utt, _ in items], nj=nj,
                                on_done=on_done)
    except ModelError as e:
        raise UsageError(f"{what}{e}") from e


def cmd_embed(args) -> int:
    from purl.fileio import write_atomic, write_text_atomic
    from purl.kaldi_io import save_embeddings

    items = wav_list(args)
    out = Path(args.out)
    if out.suffix not in (".ark", ".npy"):
        raise UsageError(f"--out {out}: must end in .ark (Kaldi ark + scp) or .npy")
    if args.nj < 1:
        raise UsageError(f"--nj {args.nj}: give at least 1 thread")
    model = load(args)
    emb = embed_all(model, items, f"{args.wav_scp}: " if args.wav_scp else "", nj=args.nj, progress="embed")
    out.parent.mkdir(parents=True, exist_ok=True)
    utts = [u for u, _ in items]
    if out.suffix == ".npy":
        write_atomic(out, lambda f: np.save(f, emb), size=emb.nbytes + 128)  # + np.save's header
        index = out.with_suffix(".utts")
        write_text_atomic(index, "".join(f"{u}\n" for u in utts))
        print(f"{PROG} embed: {len(utts)} embeddings of dimension {emb.shape[1]} -> {out} (rows in the order of {index})")
    else:
        scp = save_embeddings(out, utts, emb)
        print(f"{PROG} embed: {len(utts)} embeddings of dimension {emb.shape[1]} -> {out} (index {scp})")
    return 0


def check_range(option: str, value: float, low: float, high: float, what: str) -> None:
    """Refuses a value outside [low, high], NaN included (as stage 4's config ranges)."""
    if not low <= value <= high:
        raise UsageError(f"{option} {value:g}: must be in [{low:.9g}, {high:.9g}] ({what})")


def check_decision_options(args) -> None:
    if args.threshold is not None:
        check_range("--threshold", args.threshold, *SCORE_THRESHOLD_RANGE)
    if args.p_target is not None:
        check_range("--p-target", args.p_target, *PRIOR_RANGE)


def decision(same: bool, what: str, threshold: str) -> str:
    return f"{'same speaker' if same else 'different speakers'}: {what} {'>=' if same else '<'} {threshold}"


def decision_rule(model, args) -> tuple[str, float, str] | None:
    """What compare and score decide at, as (the score compared: "score" for the
    cosine or "llr", its threshold, how to say it); None without a threshold.
    --threshold on the cosine; for a calibrated model the LLR at the Bayes
    threshold of --p-target (default: the calibration's) or, with --at eer, at
    stage 6's EER threshold; otherwise the cosine at stage 6's EER threshold."""
    from purl.api import ModelError

    if args.threshold is not None:
        return "score", args.threshold, f"threshold {args.threshold:g} (--threshold)"
    if model.calibrated:
        try:
            threshold = model.decision_threshold(args.p_target, at=args.at)
        except ModelError as e:
            raise UsageError(str(e)) from e
        if args.at == "eer":
            return "llr", threshold, f"{threshold:.4f}, stage 6's EER threshold (cosine {model.threshold:.4f})"
        p_target = model.calibration["p_target"] if args.p_target is None else args.p_target
        return "llr", threshold, f"{threshold:.4f}, the Bayes threshold at p_target {p_target:g} (C_miss = C_fa = 1)"
    if args.p_target is not None:
        raise UsageError("--p-target: this model has no calibration (run stage 6's steps/calibrate.py on it)")
    if model.threshold is None:
        return None
    return "score", model.threshold, (f"threshold {model.threshold:.4f} (stage 6's EER threshold, from the model's "
                                      "scores/threshold.json)")


NO_DECISION = ("no decision: this model has no scores/threshold.json and carries none (run stage 6 on it, or give "
               "--threshold; a copied final.pt lacks what exp/<model>/models/final_scoring.pt carries: stage 6's "
               "mean, threshold and calibration); higher scores mean more likely the same speaker")
NO_CALIBRATION = ("calibration: missing from the model's scores/threshold.json (stage 6 before steps/calibrate.py); "
                  "run steps/calibrate.py for a log-likelihood ratio and decisions at a prior")


def cmd_compare(args) -> int:
    check_decision_options(args)
    model = load(args)
    [a, b] = embed_all(model, [(args.enroll, args.enroll), (args.test, args.test)])
    cosine = model.cosine(a, b)
    rule = decision_rule(model, args)
    value = cosine
    if rule is not None and rule[0] == "llr":
        value = model.llr(cosine)
        cal = model.calibration
        print(f"llr {value:.4f} (cosine {cosine:.4f}; llr = {cal['scale']:.4g} x cosine {cal['offset']:+.4g}, "
              f"fitted at p_target {cal['p_target']:g})")
    else:
        print(f"score {cosine:.4f}")
    if rule is None:
        print(NO_DECISION)
    else:
        what, threshold, how = rule
        print(decision(value >= threshold, what, how))
    if not model.calibrated and model.threshold is not None:
        print(NO_CALIBRATION)
    return 0


def read_wav_trials(path: Path) -> list[tuple[str, str, bool | None]]:
    if not path.is_file():
        raise UsageError(f"{path}: no such trial list")
    trials = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("target", "nontarget")):
            raise UsageError(f"{path} line {lineno}: expected 'a.wav b.wav' or 'a.wav b.wav target|nontarget', "
                             f"got '{line.strip()}'")
        trials.append((parts[0], parts[1], None if len(parts) == 2 else parts[2] == "target"))
    if not trials:
        raise UsageError(f"{path}: empty trial list")
    labelled = sum(t[2] is not None for t in trials)
    if 0 < labelled < len(trials):
        first = next(n for n, t in enumerate(trials, 1) if t[2] is None)
        raise UsageError(f"{path}: trial {first} has no label but {labelled} others do; label every line or none")
    return trials


def cmd_score(args) -> int:
    from purl.fileio import write_text_atomic
    from purl.metrics import actual_dcf, cllr, eer_and_min_dcf, min_cllr

    check_decision_options(args)
    trials_path = Path(args.trials)
    trials = read_wav_trials(trials_path)
    root = Path(args.wav_root)
    files = sorted({f for a, b, _ in trials for f in (a, b)})
    model = load(args)
    emb = embed_all(model, [(f, str(root / f)) for f in files], f"{trials_path}: ")
    row = {f: n for n, f in enumerate(files)}
    scores = model.cosines(emb[[row[a] for a, _, _ in trials]], emb[[row[b] for _, b, _ in trials]])
    out = Path(args.out) if args.out else Path(trials_path.name + ".score")
    llrs = model.llr(scores) if model.calibrated else None
    rule = decision_rule(model, args)
    if rule is None:
        decisions = [""] * len(trials)
    else:
        accept = (llrs if rule[0] == "llr" else scores) >= rule[1]
        decisions = [" accept" if same else " reject" for same in accept]
    write_text_atomic(out, "".join(f"{a} {b} {s:.6f}{d}\n" for (a, b, _), s, d in zip(trials, scores, decisions)))
    print(f"{PROG} score: {len(trials)} trials over {len(files)} files -> {out}")
    if llrs is not None:
        llr_out = out.with_suffix(".llr")
        write_text_atomic(llr_out, "".join(f"{a} {b} {s:.6f}\n" for (a, b, _), s in zip(trials, llrs)))
        print(f"{PROG} score: their log-likelihood ratios (stage 6's calibration) -> {llr_out}")
    if rule is None:
        print(NO_DECISION)
    else:
        print(f"{int(accept.sum())} of {len(trials)} trials accepted (same speaker): {rule[0]} >= {rule[2]}")
    if trials[0][2] is not None:
        labels = np.array([t[2] for t in trials])
        if labels.all() or not labels.any():
            raise UsageError(f"{trials_path}: has no {'non-target' if labels.all() else 'target'} trials; "
                             "EER needs both")
        metrics = eer_and_min_dcf(scores, labels)
        summary = {"trials": str(trials_path), "n_trials": len(trials), "eer_percent": 100 * metrics["eer"],
                   "min_dcf_0.01": metrics["min_dcf_0.01"], "min_dcf_0.05": metrics["min_dcf_0.05"]}
        if llrs is not None:
            summary.update({"cllr": cllr(llrs, labels), "min_cllr": min_cllr(llrs, labels),
                            "act_dcf_0.01": actual_dcf(llrs, labels, 0.01), "act_dcf_0.05": actual_dcf(llrs, labels, 0.05)})
        write_text_atomic(out.with_name(out.name + ".json"), json.dumps(summary, indent=1) + "\n")
        print(f"EER {summary['eer_percent']:.2f}%  minDCF(0.01) {summary['min_dcf_0.01']:.4f}  "
              f"minDCF(0.05) {summary['min_dcf_0.05']:.4f}  (also in {out}.json)")
        if llrs is not None:
            print(f"Cllr {summary['cllr']:.4f}  min Cllr {summary['min_cllr']:.4f}  "
                  f"actDCF(0.01) {summary['act_dcf_0.01']:.4f}  actDCF(0.05) {summary['act_dcf_0.05']:.4f}")
    return 0


def relabel_summary(relabel: dict | None, relabel_dir: Path) -> list[str]:
    """The lines of ``purl clean``'s summary about the relabel proposals."""
    if relabel is None:
        return [f"  (no relabel proposals: {relabel_dir.parent} holds one speaker)"]
    lines = [f"  {relabel['moved']} utterances sit with another speaker of the dir, nearer its core than their own "
             f"label's and the runner-up's by a margin; {relabel['dropped']} sit with no one speaker (torn between "
             f"two, or their label is not among their {relabel['settings']['drop_rank']} nearest).",
             f"  {relabel_dir / 'proposals'}  one line per proposal: utterance, its label, the speaker it sits "
             "with ('-': none, drop it), margin, cosine to its own speaker; largest margin first",
             f"  {relabel_dir}/  your data dir with the proposals applied: train on it "
             "(docs/noisy_label_benchmark.md: which method when)"]
    if relabel.get("relabel_precision") is not None:
        lines.insert(1, f"  Against utt2truespk: relabel precision {relabel['relabel_precision']:.3f}, "
                        f"recall {relabel['relabel_recall'] or 0:.3f}.")
    return lines


def regroup_summary(regroup: dict | None, regroup_dir: Path) -> list[str]:
    """The lines of ``purl clean``'s summary about the labels that look like two
    voices or two labels of one voice."""
    if regroup is None:
        return []
    if not regroup["splits"] and not regroup["joins"]:
        return ["  No label looks like two voices, and no two labels like one voice."]
    return [f"  {regroup['splits']} labels look like two voices (two people under one name) and "
            f"{regroup['joins']} pairs of labels like one voice (one person under two names).",
            f"  {regroup_dir / 'regroups'}  one line per change: 'split <label> <new label> <utterances moved> "
            "<cosine of the two voices>' or 'join <label> <into> <cosine> <the labels' self-consistency>'",
            f"  {regroup_dir}/  your data dir with the changes applied (steps/regroup_data_dir.py: the rule)"]


def files_lines(out_dir: Path, clean_dir: Path, emb_scp: Path, columns: str, plot: str, plot_text: str,
                report_text: str) -> list[str]:
    """The 'Files:' part of purl clean's summary."""
    return ["Files:",
            f"  {out_dir / 'suspected_mislabelled'}  one line per suspect: {columns}",
            f"  {out_dir / 'report.md'}  {report_text} (report.json: the same, for programs)",
            f"  {out_dir / plot}  {plot_text}",
            f"  {clean_dir}/  your data dir without the suspects: train on it",
            f"  {emb_scp}  the embeddings (Kaldi vectors)"]


def centroid_summary(report: dict, out_dir: Path, clean_dir: Path, emb_scp: Path) -> str:
    d, s = report["detection"], report["settings"]
    n_utts, n_suspected = d["n_utts"], report["n_suspected"]
    lines = [
        f"{PROG} clean: {report['data_dir']}: {n_utts} utterances of {d['n_speakers']} speakers "
        f"({d['n_speakers'] - d['n_speakers_judged']} with fewer than {s['min_utts']} utterances not judged).",
        f"  {n_suspected} utterances ({100 * n_suspected / max(n_utts, 1):.1f}%) look mislabelled: "
        f"{d['n_resembling']} sit nearer another speaker's centroid than their own and are unusual for their "
        f"speaker (more than {s['spread']} robust sds below its median cosine), {d['n_outliers']} lie far outside "
        f"their speaker (more than {s['outlier']} below).",
        *files_lines(out_dir, clean_dir, emb_scp,
                     "utterance, its label, the speaker it resembles, margin (cosine to that speaker's centroid "
                     "minus to its own; > 0: nearer that one), cosine to its own, robust sds below its speaker's "
                     "median; least like its speaker first: the order to listen in",
                     "suspects.png", "each utterance's cosine to its own centroid against the nearest other",
                     "these metrics"),
    ]
    if "n_found" in d:
        lines.insert(2, f"  Against utt2truespk: {d['n_found']} of {d['n_mislabelled']} wrong labels found, "
                        f"precision {d['utt_precision']:.3f}, recall {d['utt_recall']:.3f}.")
    return "\n".join(lines)


def clean_summary(report: dict, out_dir: Path, clean_dir: Path, emb_scp: Path) -> str:
    if report["estimator"] == "centroid":
        return centroid_summary(report, out_dir, clean_dir, emb_scp)
    d = report["detection"]
    n_utts, n_suspected = d["n_utts"], report["n_suspected"]
    lines = [
        f"{PROG} clean: {report['data_dir']}: {n_utts} utterances of {d['n_speakers']} speakers, "
        f"{d['n_pairs']} same-label pairs.",
        f"  {n_suspected} utterances ({100 * n_suspected / max(n_utts, 1):.1f}%) look mislabelled: their pairs "
        f"with the rest of their speaker fall in the low-similarity component (mean w < {report['threshold']}).",
        f"  {100 * d['frac_pairs_flagged']:.1f}% of pairs are unreliable (w < {report['threshold']}); "
        f"{100 * d['frac_speakers_w1']:.1f}% of speakers could not be checked or showed one component "
        "(fewer than 3 utterances, no spread, or one cluster) and keep every pair.",
        *files_lines(out_dir, clean_dir, emb_scp,
                     "utterance, its label, mean w (0 = unlike its speaker, 1 = like it); lowest first is the "
                     "order to listen in",
                     "reliability.png", "histogram of same-label cosines with the two fitted components",
                     "these metrics as a table"),
    ]
    if "pair_auc" in d:
        lines.insert(3, f"  Against utt2truespk: pair AUC {d['pair_auc']:.3f}, utterance precision "
                        f"{d['utt_precision']:.3f}, recall {d['utt_recall']:.3f}.")
    return "\n".join(lines)


def cmd_clean(args) -> int:
    from purl.data.datadir import validate_data_dir
    from purl.processes import usable_cores
    from purl.reliability import ESTIMATORS
    from purl.stages.clean import CENTROID, clean_fit, embed_data_dir, flag_rate_warning
    from purl.stages.regroup_data_dir import run_regroup
    from purl.stages.relabel_data_dir import run_relabel
    from purl.stages.reliability import CONFIG_RANGES

    if args.estimator not in ESTIMATORS and args.estimator != CENTROID:
        raise UsageError(f"--estimator {args.estimator}: choose from {', '.join([CENTROID, *sorted(ESTIMATORS)])}")
    check_range("--threshold", args.threshold, *CONFIG_RANGES[("reliability", "threshold")])
    nj = usable_cores() if args.nj is None else args.nj
    if nj < 1:
        raise UsageError(f"--nj {nj}: give at least 1 process")
    data = validate_data_dir(args.data_dir, require=("wav.scp", "utt2spk", "spk2utt"), check_audio=True)
    out_dir = Path(args.out_dir) if args.out_dir else Path(str(data.path).rstrip("/") + "_purl_clean")
    model = load(args)
    print(f"{PROG} clean: embedding {len(data)} utterances of {data.path} with {model.source}", flush=True)
    emb_scp = embed_data_dir(
        model, model.source, data, out_dir, on_done=Progress("clean", len(data)),
        embed_audio=lambda entries, utts: embed_all(model, list(zip(utts, entries)), f"{data.path}/wav.scp: ",
                                                    nj=nj, progress="clean"))
    clean_dir = out_dir / "data_clean"
    report = clean_fit(emb_scp, data, out_dir, estimator=args.estimator, threshold=args.threshold,
                       clean_dir=clean_dir, nj=nj)
    relabel_dir = out_dir / "data_relabelled"
    relabel = run_relabel(emb_scp, data.path, relabel_dir, force=True) if len(data.speakers) > 1 else None
    regroup_dir = out_dir / "data_regrouped"
    regroup = run_regroup(emb_scp, data.path, regroup_dir, force=True) if len(data.speakers) > 1 else None
    print(clean_summary(report, out_dir, clean_dir, emb_scp))
    print("\n".join(relabel_summary(relabel, relabel_dir) + regroup_summary(regroup, regroup_dir)))
    warning = flag_rate_warning(report)
    if warning is not None:
        print(warning, file=sys.stderr)
    return 0


def cmd_export(args) -> int:
    import purl
    from purl.export import export_model

    model = purl.load_model(args.model)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    scoring = {"threshold": model.threshold, "calibration": model.calibration,
               "mean": None if model.mean is None else model.mean.tolist()}
    export_model(model.encoder, args.format, out, metadata={SCORING_METADATA: json.dumps(scoring)})
    mean = "" if model.mean is None else (f" Subtract its mean vector (in the export's '{SCORING_METADATA}' "
                                           "metadata) from embeddings before the cosine, as stage 6 does.")
    print(f"{PROG} export: {out} ({args.format}): input 'feats' (batch, frames, 80) fbank, output 'embedding' "
          f"(batch, {model.embed_dim}); matches the PyTorch model to 1e-4.{mean}")
    return 0


COMMANDS = {"embed": cmd_embed, "compare": cmd_compare, "score": cmd_score, "clean": cmd_clean, "export": cmd_export}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from purl.allocator import keep_freed_memory

    setup_logging()
    keep_freed_memory()
    try:
        return COMMANDS[args.command](args)
    except (PurlError, OSError) as e:  # as purl.entry.run_main: anything else is a bug and keeps its traceback
        print(f"{PROG} {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
