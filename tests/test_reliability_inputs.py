"""Stage 4's inputs as the original work's: one random 3 s crop per utterance,
and the GMM settings (sklearn's tol 1e-3) set from the command line."""

from __future__ import annotations

import json
import re
import runpy
import sys

import numpy as np
import pytest
import torch

from purl.embed import embed_utterances, random_crop_start
from purl.reliability import Reliability
from tests.conftest import ROOT, write_feature_dir
from tests.test_reliability_stage import noisy_dir_with_embeddings


class FirstFrames(torch.nn.Module):
    """(batch, frames, 80) -> (batch, frames * 2): the input itself, to see the crop."""

    def forward(self, x):
        return x[:, :, :2].flatten(1)


def test_random_crop_is_one_uniform_crop_per_utterance_fixed_by_id_and_seed(tmp_path):
    from purl.data.datadir import read_kv
    from purl.data.dataset import load_features

    data = write_feature_dir(tmp_path / "data", frames=(120, 200))
    feats, frames = read_kv(data / "feats.scp"), read_kv(data / "utt2num_frames")
    utts = sorted(feats)
    entries, lengths = [feats[u] for u in utts], [int(frames[u]) for u in utts]
    emb = embed_utterances(FirstFrames(), entries, lengths, num_crops=1, crop_frames=50, utts=utts, random_crop_seed=3)
    starts = [random_crop_start(u, n, 50, 3) for u, n in zip(utts, lengths)]
    for entry, start, e in zip(entries, starts, emb):
        assert np.array_equal(e, load_features(entry)[start:start + 50, :2].ravel())
    # the same crops whatever else is in the batch (a job's share of the data dir)
    alone = embed_utterances(FirstFrames(), entries[5:7], lengths[5:7], num_crops=1, crop_frames=50,
                             utts=utts[5:7], random_crop_seed=3)
    assert np.array_equal(alone, emb[5:7])
    assert len(set(starts)) > len(utts) // 2 and all(0 <= s <= n - 50 for s, n in zip(starts, lengths))
    assert [random_crop_start(u, n, 50, 4) for u, n in zip(utts, lengths)] != starts
    with pytest.raises(ValueError, match="one crop per utterance"):
        embed_utterances(FirstFrames(), entries, lengths, num_crops=2, utts=utts, random_crop_seed=0)


def test_reliability_step_passes_gmm_settings_to_the_fit(tmp_path, monkeypatch):
    data, scp, _ = noisy_dir_with_embeddings(tmp_path, speakers=4, utts=12)
    out = tmp_path / "rel"
    # in this process (the options are what is tested, not a fresh interpreter)
    monkeypatch.setattr(sys, "argv", ["reliability.py", "--estimator", "sklearn", "--tol", "1e-3", "--n-init", "2",
                                      str(scp), str(data), str(out)])
    assert runpy.run_path(str(ROOT / "steps" / "reliability.py"), run_name="not_main")["main"]() == 0
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["tol"] == 1e-3 and report["settings"]["n_init"] == 2
    saved = Reliability.load(out)
    assert saved.settings.tol == 1e-3 and saved.settings.n_init == 2 and saved.estimator == "sklearn"


def test_reliability_config_file_sets_the_fit_and_options_override_it(tmp_path, monkeypatch):
    data, scp, _ = noisy_dir_with_embeddings(tmp_path, speakers=4, utts=12)
    conf = tmp_path / "reliability.yaml"
    conf.write_text("reliability:\n  estimator: sklearn\n  tol: 1e-3\n  n_init: 3\n  compare: [global]\n")
    out = tmp_path / "rel"
    monkeypatch.setattr(sys, "argv", ["reliability.py", "--config", str(conf), "--overrides", "reliability.max_iter=50",
                                      "--n-init", "2", str(scp), str(data), str(out)])
    assert runpy.run_path(str(ROOT / "steps" / "reliability.py"), run_name="not_main")["main"]() == 0
    saved = Reliability.load(out)
    assert saved.estimator == "sklearn" and saved.settings.tol == 1e-3
    assert saved.settings.max_iter == 50 and saved.settings.n_init == 2  # --overrides, then the option
    assert set(json.loads((out / "report.json").read_text())["compare"]) == {"sklearn", "global"}


@pytest.mark.parametrize("text, message", [
    ("reliability:\n  tol: fast\n", "reliability.tol must be a number"),
    ("reliability:\n  n_bins: 1\n", "reliability.n_bins=1 must be >= 2"),
    ("reliability:\n  threshold: 1.5\n", "reliability.threshold=1.5 must be in"),
    ("reliability:\n  estimator: kmeans\n", "reliability.estimator: unknown estimator 'kmeans'"),
    ("reliability:\n  compare: [global, em]\n", "reliability.compare"),
    ("reliability:\n  n_bin: 64\n", "unknown key 'reliability.n_bin' (did you mean reliability.n_bins"),
])
def test_reliability_config_refuses_bad_keys_and_values_by_name(tmp_path, text, message):
    from purl.config import ConfigError
    from purl.stages.reliability import load_reliability_config

    conf = tmp_path / "reliability.yaml"
    conf.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_reliability_config(conf)
