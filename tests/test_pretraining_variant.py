"""A pretraining variant beside a recipe's own model (local/run_pretraining_variant.sh)
with augmentation from the generated MUSAN/RIRS_NOISES stand-ins
(local/make_noise_sources.py) and CHNS batches, on a reduced mini recipe."""

from __future__ import annotations

import json

import soundfile as sf
import yaml

from tests.conftest import ROOT, copy_recipe, run_script

TRAIN = "optim.epochs=1 data.samples_per_epoch=64 data.speakers_per_batch=8 data.chunk_frames=100 data.num_workers=1"
SIZE = ("--num-speakers", "16", "--utts-per-speaker", "5", "--num-test-speakers", "6")
NOISE_SOURCES = ROOT / "egs" / "mini" / "local" / "make_noise_sources.py"


def test_noise_sources_have_the_real_layouts_and_are_not_remade_with_other_options(tmp_path):
    out = tmp_path / "sources"
    small = ("--num-noise", "3", "--num-music", "2", "--num-talkers", "3", "--num-rooms", "2")
    run_script("python", NOISE_SOURCES, *small, out)
    assert len(list((out / "musan/noise/generated").glob("*.wav"))) == 3
    assert len(list((out / "musan/music/generated").glob("*.wav"))) == 2
    assert len(list((out / "musan/speech/synthetic").glob("*.wav"))) == 3
    rirs = sorted((out / "RIRS_NOISES/simulated_rirs").rglob("*.wav"))
    assert [p.relative_to(out / "RIRS_NOISES/simulated_rirs").parts[0] for p in rirs] == ["mediumroom"] * 2 + ["smallroom"] * 2
    for path in out.rglob("*.wav"):
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16"), path
    before = {p: p.read_bytes() for p in out.rglob("*.wav")}
    assert "nothing to do" in run_script("python", NOISE_SOURCES, *small, out).stdout
    assert before == {p: p.read_bytes() for p in out.rglob("*.wav")}
    refused = run_script("python", NOISE_SOURCES, *small, "--seed", "1", out, check=False)
    assert refused.returncode != 0 and "remove the directory or choose another" in refused.stderr
    # the real corpora's preparation reads them
    run_script("python", ROOT / "local/prepare_musan.py", out / "musan", tmp_path / "data")
    run_script("python", ROOT / "local/prepare_rirs.py", out / "RIRS_NOISES", tmp_path / "data/rirs")
    assert len((tmp_path / "data/rirs/wav.scp").read_text().splitlines()) == 4


def test_a_variant_with_augmentation_and_chns_is_trained_scored_and_tabled_beside_the_baseline(tmp_path):
    recipe = copy_recipe("mini", tmp_path / "mini")
    refused = run_script("bash", "local/run_pretraining_variant.sh", "x", "", cwd=recipe, check=False)
    assert refused.returncode != 0 and "run 'bash run.sh --seed 0 --noise-rate 0.2' first" in refused.stderr

    run_script("bash", "run.sh", *SIZE, "--clean-reference", "false", "--methods", "control", "--train-overrides", TRAIN,
               cwd=recipe)
    run_script("bash", "local/run_pretraining_variant.sh", "--config", "conf/supcon_aug.yaml", "--noise-sources", "true",
               "aug_chns", f"{TRAIN} chns.hard_ratio=0.5 chns.num_clusters=2", cwd=recipe)

    variant = recipe / "exp/supcon_aug_chns_tuned_noisy0.2_seed0"
    config = yaml.safe_load((variant / "config.yaml").read_text())
    assert config["augment"]["prob"] == 0.6 and config["augment"]["rirs"] == "data/rirs"
    assert config["chns"]["hard_ratio"] == 0.5
    assert len(list((variant / "chns").iterdir())) >= 1  # the clusters it drew batches from
    for kind in ("musan_noise", "musan_music", "musan_speech", "rirs"):
        assert (recipe / "data" / kind / "wav.scp").is_file()
    table = (recipe / "exp/summary_aug_chns_tuned_noisy0.2_seed0.md").read_text()
    assert "| SupCon, noisy labels |" in table and "| SupCon, noisy labels, aug_chns |" in table
    assert json.loads((variant / "scores/results.json").read_text())
