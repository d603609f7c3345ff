"""Bit-exact reruns: the same command with the same seed in two fresh copies of
the recipe gives the same models, scores and table, digit for digit. The
trainings use a loader worker, so worker seeding is part of what is checked.
Two trainings a copy (the pretraining and PURL's update, which also reads stage
4's pair weights); tests/test_recipe_mini.py runs every method once."""

from __future__ import annotations

import torch

from tests.conftest import copy_recipe, run_script

TRAIN = "optim.epochs=1 data.samples_per_epoch=64 data.speakers_per_batch=8 data.chunk_frames=100 data.num_workers=1"
SIZE = ("--num-speakers", "16", "--utts-per-speaker", "5", "--num-test-speakers", "6")


def test_two_fresh_copies_of_the_recipe_give_identical_models_scores_and_table(tmp_path):
    exps = []
    for copy in ("a", "b"):
        recipe = copy_recipe("mini", tmp_path / copy / "mini")
        run_script("bash", "run.sh", *SIZE, "--methods", "purl", "--clean-reference", "false",
                   "--train-overrides", TRAIN, cwd=recipe)
        exps.append(recipe / "exp")
    a, b = exps
    table = (a / "summary_tuned_noisy0.2_seed0.md").read_text()
    assert table == (b / "summary_tuned_noisy0.2_seed0.md").read_text()
    scores = sorted(p.relative_to(a) for p in a.glob("*/scores/*.score"))
    assert len(scores) >= 2  # noisy, PURL
    for path in scores:
        assert (a / path).read_bytes() == (b / path).read_bytes(), path
    for final in sorted(p.relative_to(a) for p in a.glob("*/models/final.pt")):
        model_a = torch.load(a / final, map_location="cpu", weights_only=True)["model"]
        model_b = torch.load(b / final, map_location="cpu", weights_only=True)["model"]
        assert model_a.keys() == model_b.keys()
        for name in model_a:
            assert torch.equal(model_a[name], model_b[name]), (final, name)
