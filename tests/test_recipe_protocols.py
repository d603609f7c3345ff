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
from purl.features import feature_type_of
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
    """Under the paper protocol, stage 1 makes the original's features in copies of stage 0's dirs."""
    copy = copy_recipe(recipe, tmp_path / recipe)
    run_script("bash", "run.sh", "--corpus", folder_corpus, "--num-test-speakers", "2", "--stage", "0",
               "--stop-stage", "2", "--nj", "1", "--noise-rate", "0.2", cwd=copy)
    train = validate_data_dir(copy / "data" / "train_sbfbank", require=["feats.scp"])
    assert len(train.speakers) == 3 and feature_type_of(train.path) == "speechbrain"
    assert not (copy / "data" / "train" / "feats.scp").exists()  # stage 0's dir keeps no features
    assert (copy / "data" / "test_sbfbank" / "trials").is_file()
    assert feature_type_of(copy / "data" / "train_sbfbank_noisy0.2_seed0") == "speechbrain"


@pytest.mark.parametrize("recipe", ["mini", "voxceleb", "cnceleb"])
def test_a_recipe_trains_on_ready_data_dirs_and_writes_what_it_derives_under_itself(tmp_path, folder_corpus, recipe):
    """Kaldi fbank goes into the dirs given (mini's default), other features into copies under data/."""
    mine = tmp_path / "mine"
    run_script("python", ROOT / "local" / "prepare_folder_corpus.py", "--num-test-speakers", "2", folder_corpus,
               mine / "my_train", mine / "my_test")
    copy = copy_recipe(recipe, tmp_path / recipe)
    run_script("bash", "run.sh", "--train-dir", mine / "my_train", "--test-dir", mine / "my_test", "--stage", "0",
               "--stop-stage", "2", "--nj", "1", "--noise-rate", "0.2", cwd=copy)
    tag = "" if recipe == "mini" else "_sbfbank"
    train = mine / "my_train" if recipe == "mini" else copy / "data" / "my_train_sbfbank"
    validate_data_dir(train, require=["feats.scp"])  # stage 1 adds the features to the dir, or to its copy
    assert (mine / "my_train" / "feats.scp").exists() == (recipe == "mini")
    assert (copy / "data" / f"my_train{tag}_noisy0.2_seed0" / "utt2truespk").is_file()
    assert (copy / "fbank").is_dir() and sorted(p.name for p in mine.iterdir()) == ["my_test", "my_train"]


NAMES = ("train", "test", "valid", "noisy", "filtered", "relabelled", "updates", "pretrain", "clean",
         "calibration", "overrides", "reliability_embed_opts", "supcon_conf", "purl_conf")


def recipe_names(recipe: str, *options) -> dict[str, str]:
    """The names and settings a recipe's run.sh sets before its stages (stage 0 on), under ``options``."""
    text = (EGS / recipe / "run.sh").read_text()
    setup = text[:text.index("if [ $stage -le 0 ]")]
    show = f'for v in {" ".join(NAMES)}; do printf "%s=%s\\n" $v "${{!v-}}"; done'
    proc = run_script("bash", "-c", setup + show, "run.sh", "--stage", "3", "--stop-stage", "5", "--gpus", "",
                      *options, cwd=EGS / recipe)
    return dict(line.split("=", 1) for line in proc.stdout.splitlines() if re.match(r"[a-z_]+=", line))


@pytest.mark.parametrize("recipe", ["voxceleb", "cnceleb"])
def test_the_paper_protocol_of_the_gpu_recipes_runs_the_original_s_front_end(recipe):
    """SpeechBrain fbank in data/<dir>_sbfbank and tagged exp dirs, each 3 s crop normalised over itself in
    training and stage 4; the tuned protocol's names and settings as before."""
    names = recipe_names(recipe, "--noise-rate", "0.2")
    train = "data/vox2_dev_sbfbank" if recipe == "voxceleb" else "data/cnceleb_train_sbfbank"
    assert names["train"] == train and names["noisy"] == f"{train}_noisy0.2_seed0"
    assert names["test"] == ("data/vox1_sbfbank" if recipe == "voxceleb" else "data/cnceleb1_eval_sbfbank")
    assert names["pretrain"] == "exp/ecapa_supcon_paper_sbfbank_noisy0.2_seed0"
    assert "exp/ecapa_purl_paper_sbfbank_noisy0.2_seed0" in names["updates"].split()
    assert "data.normalise=crop" in names["overrides"].split()
    assert names["reliability_embed_opts"].endswith("--crop-frames 301 --random-crop-seed 0 --normalise crop")
    for conf in (names["supcon_conf"], names["purl_conf"]):
        assert load_config(EGS / recipe / conf)["data"]["chunk_frames"] == 301
    assert load_config(EGS / recipe / names["purl_conf"])["data"]["sampler"] == "with_replacement"
    assert load_config(EGS / recipe / "conf/paper/resnet34_purl_30ep.yaml")["data"]["sampler"] == "distinct"
    tuned = recipe_names(recipe, "--protocol", "tuned", "--noise-rate", "0.2")
    assert tuned["train"] == train.removesuffix("_sbfbank")
    assert tuned["pretrain"] == "exp/ecapa_supcon_tuned_noisy0.2_seed0"
    assert "data.normalise=utterance" in tuned["overrides"].split() and tuned["reliability_embed_opts"] == ""
    if recipe == "voxceleb":
        assert names["valid"] == "data/vox2_valid_sbfbank" and tuned["valid"] == "data/vox2_valid"
        kaldi = recipe_names(recipe, "--feature-type", "kaldi", "--normalise", "utterance")
        assert kaldi["pretrain"] == "exp/ecapa_supcon_paper_noisy0_seed0" and kaldi["train"] == "data/vox2_dev"


def test_mini_runs_the_paper_protocol_with_the_original_s_front_end_on_request():
    """mini (and speechocean762) keep Kaldi fbank under both protocols; the options give the original's."""
    assert recipe_names("mini", "--protocol", "paper")["pretrain"] == "exp/supcon_paper_noisy0.2_seed0"
    names = recipe_names("mini", "--protocol", "paper", "--feature-type", "speechbrain", "--normalise", "crop",
                         "--calibration-dir", "data/outsiders")
    assert names["train"] == "data/train_sbfbank" and names["test"] == "data/test_sbfbank"
    assert names["noisy"] == "data/train_sbfbank_noisy0.2_seed0" and names["calibration"] == "data/outsiders_sbfbank"
    assert names["pretrain"] == "exp/supcon_paper_sbfbank_noisy0.2_seed0"
    assert names["clean"] == "exp/supcon_paper_sbfbank_clean_seed0"
    assert "data.normalise=crop" in names["overrides"].split()
    assert names["reliability_embed_opts"].endswith("--normalise crop")


@pytest.mark.parametrize("recipe", ["mini", "voxceleb"])
def test_the_dirs_made_from_a_pretrained_model_name_its_seed_also_without_noise(recipe):
    """Without noise the training dir is shared by the seeds; the filtered dir, made from each seed's
    pretrained model, is not (two seeds in one folder would redo each other's)."""
    options = ("--protocol", "tuned", "--noise-rate", "0")
    train = recipe_names(recipe, *options)["train"]
    assert [recipe_names(recipe, *options, "--seed", seed)["filtered"] for seed in "01"] == \
        [f"{train}_seed0_filtered0.5", f"{train}_seed1_filtered0.5"]
    assert recipe_names(recipe, "--protocol", "tuned", "--noise-rate", "0.2")["filtered"] == \
        f"{train}_noisy0.2_seed0_filtered0.5"


@pytest.mark.parametrize("recipe", ["voxceleb", "cnceleb"])
def test_the_gpu_recipes_simulate_confusable_swaps_and_refuse_open_noise(recipe):
    names = recipe_names(recipe, "--noise-type", "similar", "--noise-rate", "0.2")
    assert names["noisy"] == names["train"] + "_similar0.2_seed0"
    assert names["pretrain"] == "exp/ecapa_supcon_paper_sbfbank_similar0.2_seed0"
    proc = run_script("bash", "run.sh", "--noise-type", "open", "--stage", "6", cwd=EGS / recipe, check=False)
    assert proc.returncode == 1 and "--noise-type open: use permute, similar, merge or split" in proc.stderr, proc.stderr
    assert recipe_names(recipe, "--noise-type", "split", "--noise-rate", "0.2")["noisy"] == names["train"] + "_split0.2_seed0"


def test_the_mini_recipe_refuses_an_unknown_noise_type_before_any_stage():
    proc = run_script("bash", "run.sh", "--noise-type", "swap", "--stage", "6", cwd=EGS / "mini", check=False)
    assert proc.returncode == 1 and "--noise-type swap: use permute, similar, open, merge or split" in proc.stderr


@pytest.mark.parametrize("recipe", ["voxceleb", "cnceleb"])
def test_the_gpu_recipes_run_the_benchmark_s_methods_and_refuse_unknown_ones_before_any_stage(recipe):
    """Stage 5's methods are local/methods.sh's, mini's too: the paper's three by default."""
    assert recipe_names(recipe)["updates"].split() == [
        f"exp/ecapa_{m}_paper_sbfbank_noisy{'0' if recipe == 'voxceleb' else '0.2'}_seed0"
        for m in ("control", "filter0.5", "purl")]
    names = recipe_names(recipe, "--methods", "purl relabel relabel_unlearn", "--noise-rate", "0.2")
    assert names["updates"].split() == [f"exp/ecapa_{m}_paper_sbfbank_noisy0.2_seed0"
                                        for m in ("purl", "relabel", "relabel_unlearn")]
    assert names["relabelled"] == names["noisy"] + "_relabelled"
    proc = run_script("bash", "run.sh", "--methods", "purl orgate2", "--stage", "6", cwd=EGS / recipe, check=False)
    assert proc.returncode == 1 and "--methods: unknown method 'orgate2'" in proc.stderr, proc.stderr
    proc = run_script("bash", "run.sh", "--relabel-rounds", "0", "--stage", "6", cwd=EGS / recipe, check=False)
    assert proc.returncode == 1 and "--relabel-rounds '0': give a whole number from 1 to 9" in proc.stderr, proc.stderr
    for share in ("1.5", "-0.1"):  # parse_options.sh takes them as numbers
        proc = run_script("bash", "run.sh", "--retrain-min-changed", share, "--stage", "6", cwd=EGS / recipe, check=False)
        assert proc.returncode == 1 and f"--retrain-min-changed '{share}': give a share" in proc.stderr, proc.stderr


@pytest.mark.parametrize("recipe", ["mini", "voxceleb"])
def test_a_feature_type_or_normalisation_the_stages_lack_is_refused(recipe):
    for option, value, allowed in (("--feature-type", "foo", "use kaldi (Kaldi fbank) or speechbrain"),
                                   ("--normalise", "chunk", "use utterance (")):
        proc = run_script("bash", "run.sh", option, value, "--stage", "6", cwd=EGS / recipe, check=False)
        assert proc.returncode == 1 and f"run.sh: {option} {value}: {allowed}" in proc.stderr, proc.stderr
    if recipe == "voxceleb":  # its augmented pretraining computes Kaldi fbank of each chunk
        proc = run_script("bash", "run.sh", "--augment", "true", "--stage", "6", cwd=EGS / recipe, check=False)
        assert proc.returncode == 1 and "--augment true computes Kaldi fbank" in proc.stderr
