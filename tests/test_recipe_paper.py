"""The mini recipe under --protocol paper, reduced: the original work's protocol
(continued update, random-crop sklearn reliability, plain cosine) runs end to end."""

from __future__ import annotations

import json

from purl.trainer import load_checkpoint
from tests.conftest import copy_recipe, run_script


def test_mini_recipe_runs_the_paper_protocol_end_to_end(tmp_path):
    recipe = copy_recipe(tmp_path)
    train = "optim.epochs=1 data.samples_per_epoch=64 data.speakers_per_batch=8 data.chunk_frames=100 data.num_workers=0"
    proc = run_script("bash", "run.sh", "--protocol", "paper", "--num-speakers", "16", "--utts-per-speaker", "4",
                      "--num-test-speakers", "6", "--clean-reference", "false", "--train-overrides", train,
                      "--purl-overrides", "optim.epochs=2", cwd=recipe)
    for stage in range(7):
        assert f"Stage {stage} done" in proc.stdout, proc.stdout[-3000:]
    exp = recipe / "exp"
    assert "continuing" in (exp / "purl_paper_noisy0.2_seed0" / "log" / "train.log").read_text()
    final = load_checkpoint(exp / "purl_paper_noisy0.2_seed0" / "models" / "final.pt")
    assert final["averaged"] == ["epoch_2.pt"]
    report = json.loads((exp / "supcon_paper_noisy0.2_seed0" / "reliability" / "report.json").read_text())
    assert report["estimator"] == "sklearn" and report["settings"]["tol"] == 1e-3
    assert (exp / "supcon_paper_noisy0.2_seed0" / "embeddings" / "train_crop" / "xvector.scp").is_file()
    summary = (exp / "summary_paper_noisy0.2_seed0.md").read_text()
    assert "| noisy + PURL |" in summary and "| noisy + control |" in summary
    results = (exp / "purl_paper_noisy0.2_seed0" / "scores" / "results.md").read_text()
    assert "cosine" in results
