"""The sklearn estimator's per-speaker fits in processes (purl.processes): the
same bytes for any number of processes, and a failed or dead worker is an
error that names it, never a hang."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from purl.locks import LOCK_NAME
from purl.processes import WorkerError, in_processes
from purl.reliability import GmmParams, Reliability, ReliabilitySettings, SpeakerPairs, fit_sklearn
from purl.reliability.speakers import SpeakerIndex, speaker_parts
from purl.testing import simulate_embeddings
from tests.conftest import ROOT, recipe_env, run_script
from tests.test_reliability_stage import noisy_dir_with_embeddings

# Speakers with a few hundred pairs (k-means in more than one OpenMP chunk of
# 256 points) and small ones, dealt unevenly to the processes.
SIZES = np.array([2, 40, 3, 60, 25, 33, 5, 45, 12])


def _same_params(a: GmmParams, b: GmmParams) -> None:
    for name in ("weights", "means", "variances", "clean", "unit", "n_pairs", "loglik"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_speakers_are_dealt_by_pair_count_largest_first_to_the_least_loaded():
    # pairs (+1 a speaker): 46, 37, 4, 4, 2, 2
    index, _ = SpeakerIndex.from_labels(np.repeat(np.arange(6), [10, 9, 3, 3, 2, 2]))
    assert [p.tolist() for p in speaker_parts(index, 2)] == [[0, 5], [1, 2, 3, 4]]
    assert [p.tolist() for p in speaker_parts(index, 3)] == [[0], [1], [2, 3, 4, 5]]
    assert len(speaker_parts(index, 9)) == 6  # no process without a speaker


def test_sklearn_fits_in_1_2_3_processes_equal_one_process_bit_for_bit():
    emb, labels, _ = simulate_embeddings(SIZES, dim=24, noise_rate=0.2, seed=3)
    labels[[5, 70]] = 99  # a speaker of 2 utterances: w = 1, fitted by no GMM
    fits = [Reliability.fit(emb, labels, "sklearn", {"tol": 1e-3}, nj=nj) for nj in (1, 2, 3)]
    i, j = np.triu_indices(len(labels), 1)
    same = labels[i] == labels[j]
    i, j = i[same], j[same]
    for fit in fits[1:]:
        _same_params(fits[0].params, fit.params)
        np.testing.assert_array_equal(fits[0].weight(i, j), fit.weight(i, j))
    assert fits[0].params.unit.tolist() == [False] * len(SIZES) + [True]


def _outputs(out) -> dict[str, bytes]:
    """Every file of a stage-4 out dir, the reports without their timing."""
    # the lock file names the process that wrote the dir: not an output
    files = {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file() and p.name != LOCK_NAME}
    report = json.loads(files["report.json"])
    for metrics in (*report["compare"].values(), report["detection"]):
        metrics.pop("fit_seconds")
    files["report.json"] = json.dumps(report).encode()
    # the last column of the estimators' table: the fit time
    files["report.md"] = re.sub(rb"\| [0-9.]+ \|$", b"|", files["report.md"], flags=re.M)
    return files


def test_stage4_paper_form_writes_the_same_bytes_with_1_2_3_processes(tmp_path):
    data, scp, _ = noisy_dir_with_embeddings(tmp_path, speakers=7, utts=30)
    cleaned = tmp_path / "cleaned"
    runs = {}
    for nj in (1, 2, 3):
        out = tmp_path / f"reliability_nj{nj}"
        proc = run_script(ROOT / "steps" / "reliability.py", "--estimator", "sklearn", "--tol", "1e-3",
                          "--compare", "histogram", "--nj", nj, "--clean-dir", cleaned, scp, data, out)
        assert (f"in {nj} processes" in proc.stderr) == (nj > 1)
        runs[nj] = _outputs(out), {p.name: p.read_bytes() for p in cleaned.iterdir() if p.name != LOCK_NAME}
    assert {"gmm.npz", "embeddings.npy", "suspected_mislabelled", "reliability.png", "reliability.settings",
            "report.md", "utts"} <= set(runs[1][0])
    assert b"| sklearn |" in runs[1][0]["report.md"] and b"fit_seconds" not in runs[1][0]["report.json"]
    for nj in (2, 3):
        assert runs[nj][0].keys() == runs[1][0].keys()
        for name in runs[1][0]:
            assert runs[nj][0][name] == runs[1][0][name], (nj, name)
        assert runs[nj][1] == runs[1][1]  # the cleaned data dir


def test_another_nj_is_not_another_fit(tmp_path):
    data, scp, _ = noisy_dir_with_embeddings(tmp_path, speakers=4, utts=10)
    out = tmp_path / "reliability"
    run_script(ROOT / "steps" / "reliability.py", "--estimator", "sklearn", "--nj", 1, scp, data, out)
    rerun = run_script(ROOT / "steps" / "reliability.py", "--estimator", "sklearn", "--nj", 2, scp, data, out)
    assert "skipping" in rerun.stderr


def test_nj_below_one_is_refused(tmp_path):
    data, scp, _ = noisy_dir_with_embeddings(tmp_path, speakers=3, utts=5)
    proc = run_script(ROOT / "steps" / "reliability.py", "--nj", 0, scp, data, tmp_path / "out", check=False)
    assert proc.returncode == 1 and "reliability.py: --nj 0: give at least 1 process" in proc.stderr
    assert not (tmp_path / "out").exists()
    emb, labels, _ = simulate_embeddings(np.array([4, 4]), dim=8, seed=0)
    with pytest.raises(ValueError, match="nj must be at least 1"):
        Reliability.fit(emb, labels, "sklearn", nj=0)


def test_nj_defaults_to_the_cores_this_process_may_use():
    import os

    proc = run_script(ROOT / "steps" / "reliability.py", "--help")
    assert f"process may use, {len(os.sched_getaffinity(0))} here" in " ".join(proc.stdout.split())


def test_an_error_in_a_worker_is_raised_with_its_process_and_message():
    emb, labels, _ = simulate_embeddings(SIZES, dim=24, noise_rate=0.2, seed=3)
    x = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    index, _ = SpeakerIndex.from_labels(labels)
    expected = r"reliability: the sklearn fits: process \d of 2 failed: .*The 'reg_covar'"
    with pytest.raises(WorkerError, match=expected):
        fit_sklearn(SpeakerPairs(x.astype(np.float32), index), ReliabilitySettings(reg_covar=-1.0), nj=2)


def _sleep_or_fail(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("a part that fails")
    time.sleep(seconds)


def test_a_worker_that_dies_or_fails_is_an_error_not_a_hang():
    # In a child of its own with a time limit: a hang fails the test instead of stopping the suite.
    code = ("import os, time\n"
            "from purl.processes import WorkerError, in_processes\n"
            "from tests.test_reliability_processes import _sleep_or_fail\n"
            "for work, parts in ((os.abort, [()]), (os._exit, [(3,)]), (_sleep_or_fail, [(600,), (-1,)])):\n"
            "    start = time.monotonic()\n"
            "    try:\n"
            "        in_processes(work, parts, len(parts), 'the test')\n"
            "    except WorkerError as e:\n"
            "        print(round(time.monotonic() - start), str(e).replace(chr(10), ' | '))\n")
    proc = subprocess.run([sys.executable, "-c", code], env=recipe_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [line.split(" ", 1) for line in proc.stdout.splitlines()]
    assert len(lines) == 3, proc.stdout
    assert lines[0][1].startswith("the test: process 1 of 1 was killed by signal 6 before returning its result")
    assert lines[1][1].startswith("the test: process 1 of 1 ended with exit status 3 before returning its result")
    # the failing part's traceback; the other part, sleeping, was stopped
    assert lines[2][1].startswith("the test: process 2 of 2 failed: ValueError: a part that fails | Traceback")
    assert int(lines[2][0]) < 100


def _worker_view(x: np.ndarray) -> tuple:
    """What a worker sees: its array (writable, equal) and its thread pools."""
    import sklearn.mixture  # noqa: F401  (its OpenMP library)
    from threadpoolctl import threadpool_info

    return x.flags.writeable, x.copy(), sorted({(lib["user_api"], lib["num_threads"]) for lib in threadpool_info()})


def test_workers_get_their_arrays_and_one_blas_and_one_openmp_thread():
    parts = [np.arange(12.0).reshape(3, 4), np.ones((2, 2), np.float32)]
    results = in_processes(_worker_view, ((p,) for p in parts), 2, "the test")
    for part, (writeable, x, pools) in zip(parts, results):
        assert writeable and x.dtype == part.dtype
        np.testing.assert_array_equal(x, part)
        assert {api for api, _ in pools} >= {"blas", "openmp"}, pools
        assert all(n == 1 for _, n in pools), pools
