"""The embedded default recipe end to end, reduced (few speakers, one epoch per
training run), so that no stage can break unseen."""

from __future__ import annotations

from purl.data.datadir import validate_data_dir
from tests.conftest import copy_recipe, run_script


def test_mini_recipe_runs_every_stage_and_prints_the_table(tmp_path):
    recipe = copy_recipe(tmp_path)
    train = "optim.epochs=1 data.samples_per_epoch=64 data.speakers_per_batch=8 data.chunk_frames=100 data.num_workers=0"
    proc = run_script("bash", "run.sh", "--num-speakers", "20", "--utts-per-speaker", "5", "--num-test-speakers", "6",
                      "--train-overrides", train, cwd=recipe)
    for stage in range(7):
        assert f"Stage {stage} done" in proc.stdout, proc.stdout[-3000:]
    validate_data_dir(recipe / "data" / "train_noisy0.2_seed0", require=["feats.scp", "utt2truespk"])
    summary = (recipe / "exp" / "summary_noisy0.2_seed0.md").read_text()
    for row in ("SupCon, clean labels", "SupCon, noisy labels", "noisy + control", "noisy + PURL"):
        assert f"| {row} |" in summary
    assert "noisy-pair detection AUC" in summary
    assert (recipe / "RESULTS.md").read_text().count("| test | cosine |") == 4
    assert (recipe / "exp" / "supcon_noisy0.2_seed0" / "reliability" / "reliability.png").is_file()
    # Every stage skips what is done: a rerun trains nothing.
    rerun = run_script("bash", "run.sh", "--num-speakers", "20", "--utts-per-speaker", "5", "--num-test-speakers", "6",
                       "--train-overrides", train, cwd=recipe)
    assert rerun.stdout.count("is complete; skipping") >= 4
