"""The recipes' shared conventions: a protocol is a folder of conf/ (paper,
tuned) whose files differ only in the protocol's settings, recipes that share
confs link them, stage 0 comes early in every run.sh, and every recipe trains on
a corpus of your own (a folder per speaker, or ready data dirs), writing under
the recipe."""

from __future__ import annotations

import re

import pytest

from purl.config import load_config
from purl.data.datadir import validate_data_dir
from tests.conftest import ROOT, copy_recipe, run_script, write_tone

EGS = ROOT / "egs"
RECIPES = ["mini", "voxceleb", "cnceleb", "speechocean762"]


def differences(a: dict, b: dict) -> set[str]:
    return {f"{s}.{k}" for s in a for k in a[s] if a[s][k] != b[s][k]}


VOX_PURL = {"optim.grad_clip", "train.amp", "train.average_last", "data.chunk_frames", "optim.epochs", "purl.init_mode",
            "loss.keep_unreliable_negatives"}


@pytest.mark.parametrize("recipe, pairs, protocol_keys", [
    ("mini", [("supcon", "supcon")], {"optim.grad_clip", "train.amp"}),
    ("voxceleb", [(f"{m}_supcon", f"{m}_supcon") for m in ("ecapa", "resnet34")] + [("ecapa_supcon_aug",) * 2],
     {"optim.grad_clip", "train.amp", "train.average_last", "data.chunk_frames"}),
    ("voxceleb", [("resnet34_purl_30ep",) * 2], VOX_PURL),
    ("voxceleb", [("ecapa_purl_30ep",) * 2], VOX_PURL | {"data.sampler"}),  # the original's ECAPA PURL loader
])
def test_a_protocol_s_configs_differ_from_the_other_s_only_in_its_settings(recipe, pairs, protocol_keys):
    for paper, tuned in pairs:
        a = load_config(EGS / recipe / "conf" / "paper" / f"{paper}.yaml")
        b = load_config(EGS / recipe / "conf" / "tuned" / f"{tuned}.yaml")
        assert differences(a, b) == protocol_keys, paper


def test_every_protocol_has_the_same_files_and_recipes_share_confs_by_link():
    for recipe in ("mini", "voxceleb"):
        paper, tuned = (sorted(p.name for p in (EGS / recipe / "conf" / protocol).iterdir())
                        for protocol in ("paper", "tuned"))
        assert paper == tuned and "stages.conf" in paper, recipe
    assert (EGS / "cnceleb" / "conf").resolve() == (EGS / "voxceleb" / "conf").resolve()
    assert (EGS / "speechocean762" / "conf").resolve() == (EGS / "mini" / "conf").resolve()


@pytest.mark.parametrize("recipe", ["mini", "voxceleb", "cnceleb"])
def test_stage_0_starts_within_the_first_60_lines(recipe):
    lines = (EGS / recipe / "run.sh").read_text().splitlines()
    first = next(n for n, line in enumerate(lines, 1) if re.match(r"if \[ \$stage -le 0 \]", line))
    assert first <= 60


@pytest.mark.parametrize("recipe", RECIPES)
def test_a_protocol_without_a_conf_folder_and_a_train_dir_without_a_test_dir_are_refused(recipe):
    proc = run_script("bash", "run.sh", "--protocol", "tunned", "--stage", "6", cwd=EGS / recipe, check=False)
    assert proc.returncode == 1 and "--protocol tunned: no conf/tunned/stages.conf (protocols: paper tuned" in proc.stderr
    proc = run_script("bash", "run.sh", "--train-dir", "data/x", "--stage", "6", cwd=EGS / recipe, check=False)
    assert proc.returncode == 1 and "--train-dir and --test-dir go together" in proc.stderr


@pytest.fixture
def folder_corpus(tmp_path):
    root = tmp_path / "my_corpus"
    for s in range(5):
        for u in range(3):
            write_tone(root / f"speaker{s}" / f"take{u}.wav", seconds=0.6, seed=3 * s + u)
    return root


@pytest.mark.parametrize("recipe", ["voxceleb", "cnceleb"])
def test_a_gpu_recipe_prepares_a_folder_corpus_of_your_own(tmp_path, folder_corpus, recipe):
    copy = copy_recipe(recipe, tmp_path / recipe)
    run_script("bash", "run.sh", "--corpus", folder_corpus, "--num-test-speakers", "2", "--stage", "0",
               "--stop-stage", "2", "--nj", "1", "--noise-rate", "0.2", cwd=copy)
    assert len(validate_data_dir(copy / "data" / "train", require=["feats.scp"]).speakers) == 3
    assert (copy / "data" / "test" / "trials").is_file()
    assert (copy / "data" / "train_noisy0.2_seed0" / "utt2truespk").is_file()


@pytest.mark.parametrize("recipe", ["mini", "voxceleb", "cnceleb"])
def test_a_recipe_trains_on_ready_data_dirs_and_writes_what_it_derives_under_itself(tmp_path, folder_corpus, recipe):
    mine = tmp_path / "mine"
    run_script("python", ROOT / "local" / "prepare_folder_corpus.py", "--num-test-speakers", "2", folder_corpus,
               mine / "my_train", mine / "my_test")
    copy = copy_recipe(recipe, tmp_path / recipe)
    run_script("bash", "run.sh", "--train-dir", mine / "my_train", "--test-dir", mine / "my_test", "--stage", "0",
               "--stop-stage", "2", "--nj", "1", "--noise-rate", "0.2", cwd=copy)
    validate_data_dir(mine / "my_train", require=["feats.scp"])  # stage 1 adds the features to the dir
    assert (copy / "data" / "my_train_noisy0.2_seed0" / "utt2truespk").is_file()
    assert (copy / "fbank").is_dir() and sorted(p.name for p in mine.iterdir()) == ["my_test", "my_train"]
