"""Stage 4 from embeddings to everything the update and a reader need:
exp/<pretrain>/reliability/{embeddings.npy, gmm.npz, reliability.json, utts,
report.json, report.md, reliability.png, suspected_mislabelled,
reliability.settings} and a cleaned data dir without the suspected utterances.

Its settings come from a recipe's conf/reliability.yaml (one ``reliability:``
section, keys of :data:`CONFIG_DEFAULTS`), overridden by ``--overrides`` and the
command line's options; ``reliability.settings`` records them with digests of
the inputs: a rerun with the same record is skipped, with another one redone.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

import numpy as np

from purl.config import ConfigError, load_config
from purl.data.datadir import DataDir, DataDirError, subset_data_dir, validate_data_dir
from purl.fileio import write_text_atomic
from purl.kaldi_io import load_embeddings
from purl.locks import locked_dir
from purl.records import text_digest, up_to_date, write_record
from purl.reliability import (
    ESTIMATORS,
    UTTS_FILE,
    PlotCounts,
    Reliability,
    ReliabilitySettings,
    SpeakerPairs,
    detection_metrics_of_fits,
    plot_reliability,
    suspected_mislabelled,
)
from purl.stages.embeddings import XVECTOR_SETTINGS
from purl.stages.fbank import record_derived_features

log = logging.getLogger(__name__)

SETTINGS = "reliability.settings"  # in the out dir: what the fit was made from
REPORT_JSON = "report.json"         # written last by run_reliability: a complete fit

# The keys of conf/reliability.yaml: the stage's own options, then every
# ReliabilitySettings field (the GMM settings of every estimator).
CONFIG_DEFAULTS: dict[str, dict] = {"reliability": {
    "estimator": "histogram",  # a key of purl.reliability.ESTIMATORS; the original work's: sklearn
    "compare": [],             # estimators also fitted for the report's comparison table
    "threshold": 0.5,          # w below it: a flagged pair; an utterance's mean w below it: suspected
    **dataclasses.asdict(ReliabilitySettings()),
}}
# Settings added after fits were first recorded: in a record only when not at
# their defaults (which compute what the fits before them did), so that those
# fits stay up to date.
LATER_SETTINGS = ("cosine_dtype", "failed_fit")
CONFIG_RANGES = {
    ("reliability", "threshold"): (1e-9, 1 - 1e-9, "a posterior, strictly between 0 and 1"),
    ("reliability", "n_bins"): (2, None, "histogram bins per speaker"),
    ("reliability", "n_init"): (1, None, "EM initialisations"),
    ("reliability", "max_iter"): (1, None, "EM iterations"),
    ("reliability", "tol"): (0, None, "change of mean log-likelihood that stops EM"),
    ("reliability", "reg_covar"): (0, None, "added to every variance"),
    ("reliability", "seed"): (0, None, "a seed"),
    ("reliability", "min_utts"): (0, None, "utterances below which w = 1"),
    ("reliability", "min_std"): (0, None, "pair-cosine spread below which w = 1"),
}


def load_reliability_config(path: str | os.PathLike | None = None, overrides: Iterable[str] = ()) -> dict:
    """The ``reliability`` section: defaults, the YAML file, then each
    ``reliability.key=value`` override, type- and range-checked (ConfigError
    names the key)."""
    section = load_config(path, overrides, defaults=CONFIG_DEFAULTS, ranges=CONFIG_RANGES,
                          option="--overrides")["reliability"]
    where = f"{path}: reliability" if path is not None else "reliability"
    if section["estimator"] not in ESTIMATORS:
        raise ConfigError(f"{where}.estimator: unknown estimator {section['estimator']!r}; "
                          f"choose one of {sorted(ESTIMATORS)}")
    compare = section["compare"]
    if isinstance(compare, str):  # "sklearn,bic" as on the command line
        compare = [c for c in compare.split(",") if c]
    if not isinstance(compare, list) or any(c not in ESTIMATORS for c in compare):
        raise ConfigError(f"{where}.compare: {section['compare']!r} must be a list of estimators "
                          f"from {sorted(ESTIMATORS)}")
    for key, choices in (("bic_sample_size", ("utts", "pairs")), ("cosine_dtype", ("float64", "float32")),
                         ("failed_fit", ("error", "w1"))):
        if section[key] not in choices:
            raise ConfigError(f"{where}.{key}: must be {' or '.join(map(repr, choices))}, not {section[key]!r}")
    section["compare"] = compare
    return section


def gmm_settings(config: dict) -> dict:
    """The ReliabilitySettings fields of a ``reliability`` section."""
    return {f.name: config[f.name] for f in dataclasses.fields(ReliabilitySettings)}


def check_reliability_dir(reliability_dir: str | os.PathLike, user: str) -> None:
    """Refuses a reliability dir that stage 4 did not finish: its record is
    written last, so a dir without one was killed while fitting (its files may
    mix two fits) or was not made by stage 4."""
    rel = Path(reliability_dir)
    if not (rel / SETTINGS).is_file():
        raise DataDirError(f"{user}: {rel} has no {SETTINGS}: stage 4 did not finish it (killed while refitting?); "
                           "rerun stage 4 (steps/reliability.py), which redoes it")


def stage_settings(xvector_scp: str | os.PathLike, data_dir: str | os.PathLike, config: dict,
                   clean_dir: str | os.PathLike | None) -> dict:
    """Options and inputs of a stage-4 run (purl.records): another estimator
    or other embeddings or labels make another fit."""
    data = Path(data_dir)
    scp = Path(xvector_scp)
    gmm = {k: v for k, v in gmm_settings(config).items()
           if k not in LATER_SETTINGS or v != CONFIG_DEFAULTS["reliability"][k]}
    record = {"estimator": config["estimator"], "compare": sorted(config["compare"]),
              "threshold": config["threshold"], "clean_dir": str(clean_dir or ""), "gmm": gmm,
              "xvector_scp": text_digest(scp), "utt2spk": text_digest(data / "utt2spk")}
    if (scp.parent / XVECTOR_SETTINGS).is_file():
        record["embeddings"] = text_digest(scp.parent / XVECTOR_SETTINGS)
    if (data / "utt2truespk").is_file():
        record["utt2truespk"] = text_digest(data / "utt2truespk")
    return record


def run_stage(xvector_scp: str | os.PathLike, data_dir: str | os.PathLike, out_dir: str | os.PathLike,
              config: dict, clean_dir: str | os.PathLike | None = None, nj: int = 1) -> dict:
    """Stage 4 with its skip check: the report (report.json's content) of the
    fit in ``out_dir``, made now or by an earlier run with the same settings.
    ``nj`` (processes of the sklearn fits) is not a setting: the outputs are
    the same for any."""
    out = Path(out_dir)
    if not Path(xvector_scp).is_file():
        raise DataDirError(f"{xvector_scp}: no such embedding index (run steps/extract_embeddings.sh first)")
    data = validate_data_dir(data_dir, require=("utt2spk", "spk2utt"))
    record = stage_settings(xvector_scp, data_dir, config, clean_dir)
    with locked_dir(out):
        if up_to_date(out / SETTINGS, record, out, complete=(out / REPORT_JSON).is_file()):
            return json.loads((out / REPORT_JSON).read_text(encoding="utf-8"))
        # up_to_date removed the record; the report goes too, before anything is
        # written: a kill from here on leaves a dir that stage 5 refuses.
        (out / REPORT_JSON).unlink(missing_ok=True)
        report = run_reliability(xvector_scp, data, out, estimator=config["estimator"],
                                 compare=tuple(config["compare"]), threshold=config["threshold"],
                                 clean_dir=clean_dir, settings=gmm_settings(config), nj=nj)
        write_record(out / SETTINGS, record)
        return report


def run_reliability(emb_scp: str | os.PathLike, data_dir: str | os.PathLike | DataDir, out_dir: str | os.PathLike, *,
                    estimator: str = "histogram", compare: tuple[str, ...] = (), threshold: float = 0.5,
                    clean_dir: str | os.PathLike | None = None, settings: dict | None = None, nj: int = 1) -> dict:
    """``settings``: ReliabilitySettings fields (tol, n_init, ...) for every estimator;
    ``nj``: processes of the sklearn estimator's per-speaker fits;
    ``data_dir`` a DataDir (e.g. validate_data_dir's) lends the tables it has read.
    The embeddings are read after the data dir, not beside it: reading both at
    once gained nothing at VoxCeleb size and took the peak from 3.6 to 4.2 GiB."""
    data = data_dir if isinstance(data_dir, DataDir) else DataDir(data_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    emb_utts, emb = load_embeddings(emb_scp)
    utts, utt2spk = data.utts, data.utt2spk
    row = {u: i for i, u in enumerate(emb_utts)}
    missing = [u for u in utts if u not in row]
    if missing:
        raise DataDirError(f"{emb_scp}: no embedding for '{missing[0]}' of {data.path} ({len(missing)} missing); "
                           "rerun steps/extract_embeddings.sh on this data dir")
    if emb_utts != utts:  # xvector.scp is sorted like the data dir, so usually no copy
        emb = emb[[row[u] for u in utts]]
    speakers = {s: n for n, s in enumerate(data.speakers)}
    labels = np.array([speakers[utt2spk[u]] for u in utts])
    true_labels, names = None, list(speakers)
    if data.has("utt2truespk"):
        truth = data.table("utt2truespk")
        true_index = {s: n for n, s in enumerate(sorted(set(truth.values()) | set(speakers)))}
        # Label values must be comparable: map both through one speaker index.
        labels = np.array([true_index[utt2spk[u]] for u in utts])
        true_labels = np.array([true_index[truth[u]] for u in utts])
        names = list(true_index)

    report = {"estimator": estimator, "threshold": threshold, "data_dir": str(data.path),
              "settings": dict(settings or {}), "compare": {}}
    # The estimators to compare read one SpeakerPairs: one normalised copy of
    # the embeddings (at VoxCeleb size each copy is 0.8 GB; the raw ones go once
    # it is made) and the work they share ("histogram" and "bic" run one
    # per-speaker EM); all are evaluated in one pass over the pairs.
    fits, seconds, pairs = [], [], None
    for name in (estimator,) + tuple(c for c in compare if c != estimator):
        start = time.perf_counter()
        if pairs is None:
            pairs = SpeakerPairs.from_embeddings(emb, labels, shared=True)
            del emb
        fits.append(Reliability.fit_pairs(pairs, name, settings, nj=nj))
        seconds.append(time.perf_counter() - start)
    del pairs
    plot_counts = PlotCounts(fits[0].params)  # the plot's data, gathered by the evaluation's pass
    evaluated = detection_metrics_of_fits(fits, true_labels, threshold, plot_counts)
    for rel, fit_seconds, (metrics, _) in zip(fits, seconds, evaluated):
        metrics["fit_seconds"] = fit_seconds
        report["compare"][rel.estimator] = metrics
    main_rel, main_mean_w = fits[0], evaluated[0][1]
    del fits, evaluated
    report["detection"] = report["compare"][estimator]

    # Writing 0.84 GB of embeddings (at VoxCeleb size) is numpy's, outside the
    # GIL: it runs while the plot and the lists are made.
    with ThreadPoolExecutor(1) as saver:
        saving = saver.submit(main_rel.save, out_dir)
        write_text_atomic(out_dir / UTTS_FILE, "".join(f"{u}\n" for u in utts))
        plot_reliability(main_rel, out_dir / "reliability.png", true_labels, counts=plot_counts,
                         speaker_names=names)
        idx, mean_w = suspected_mislabelled(main_rel, threshold, main_mean_w)
        write_text_atomic(out_dir / "suspected_mislabelled",
                          "".join(f"{utts[i]} {utt2spk[utts[i]]} {w:.4f}\n" for i, w in zip(idx, mean_w)))
        if clean_dir is not None:
            suspected = {utts[i] for i in idx}
            subset_data_dir(data, clean_dir, utts=[u for u in utts if u not in suspected])
            record_derived_features(clean_dir, data.path, user="reliability")
            report["cleaned_data_dir"] = str(clean_dir)
        saving.result()  # its error, if any, before report.json marks the fit complete
    report["n_suspected"] = int(len(idx))
    write_text_atomic(out_dir / "report.md", report_markdown(report))
    write_text_atomic(out_dir / REPORT_JSON, json.dumps(report, indent=1) + "\n")
    return report


def report_markdown(report: dict) -> str:
    d = report["detection"]
    lines = [
        f"# Pair reliability ({report['estimator']})\n",
        f"Data: {report['data_dir']}; {d['n_utts']} utterances, {d['n_speakers']} speakers, {d['n_pairs']} positive pairs.",
        f"Flagged (w < {report['threshold']}): {100 * d['frac_pairs_flagged']:.1f}% of pairs, "
        f"{100 * d['frac_speakers_flagged']:.1f}% of speakers have a flagged pair; "
        f"{100 * d['frac_speakers_w1']:.1f}% of speakers keep w = 1 (too few utterances, no spread, or one component)"
        + (f"; of them, {d['n_speakers_fit_failed']} because their GMM fit raised an error (failed_fit: w1, "
           "as the original work)." if d.get("n_speakers_fit_failed") else "."),
        f"Suspected mislabelled utterances (mean w < {report['threshold']}): {report['n_suspected']} "
        "(listed in suspected_mislabelled"
        + (f"; removed in {report['cleaned_data_dir']}" if "cleaned_data_dir" in report else "") + ").",
        "",
        "The histogram of positive-pair cosines with the fitted components: reliability.png.",
        "",
    ]
    if "pair_auc" in d:
        lines += ["## Detection against the ground truth (utt2truespk)\n",
                  "| estimator | pair AUC | pair P | pair R | pair F1 | utt AUC | utt P | utt R | utt F1 | fit (s) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, f in report["compare"].items():
            lines.append(f"| {name} | {f['pair_auc']:.3f} | {f['pair_precision']:.3f} | {f['pair_recall']:.3f} | "
                         f"{f['pair_f1']:.3f} | {f['utt_auc']:.3f} | {f['utt_precision']:.3f} | {f['utt_recall']:.3f} | "
                         f"{f['utt_f1']:.3f} | {f['fit_seconds']:.1f} |")
    else:
        lines += ["| estimator | pairs flagged | speakers flagged | fit (s) |", "|---|---:|---:|---:|"]
        for name, f in report["compare"].items():
            lines.append(f"| {name} | {100 * f['frac_pairs_flagged']:.1f}% | {100 * f['frac_speakers_flagged']:.1f}% | "
                         f"{f['fit_seconds']:.1f} |")
    return "\n".join(lines) + "\n"
