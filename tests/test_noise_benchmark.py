"""The noisy-label benchmark: its driver on a reduced mini recipe (every noise
kind's cell, the relabel and regroup methods, a rerun that skips), and its tables."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from purl.stages.benchmark import recovered, tables
from tests.conftest import copy_recipe, run_script

TRAIN = "optim.epochs=1 data.samples_per_epoch=64 data.speakers_per_batch=8 data.chunk_frames=100 data.num_workers=0"
SIZE = ("--num-speakers", "24", "--utts-per-speaker", "5", "--num-test-speakers", "6")
# One cell, of the kind whose cell holds the most (outsiders); the others are
# tested at stage 2 (tests/test_noise.py) and permute by the recipe's own test.
GRID = ("--seeds", "0", "--rates", "0.2", "--noise-types", "open", "--methods",
        "control relabel relabel_retrain regroup regroup_relabel", "--num-outsider-speakers", "4")


@pytest.fixture(scope="module")
def benchmark_run(tmp_path_factory):
    recipe = copy_recipe("mini", tmp_path_factory.mktemp("recipe") / "mini")
    proc = run_script("bash", "local/noise_benchmark.sh", *GRID, "--", *SIZE, "--train-overrides", TRAIN, cwd=recipe)
    return recipe, proc


def test_benchmark_runs_an_open_noise_cell_and_writes_table_figure_and_numbers(benchmark_run):
    recipe, proc = benchmark_run
    work = recipe / "exp" / "benchmark"
    cell = "open0.2_seed0"
    assert f"Benchmark cell {cell}" in proc.stdout and (work / "log" / f"{cell}.log").is_file()
    assert "FAILED" not in proc.stdout
    # the split holds out the outsiders; open noise filed them under training speakers
    outsiders = (work / "data" / "outsiders" / "utt2spk").read_text().split("\n")
    listed = (work / "data" / "train_open0.2_seed0" / "outsiders").read_text().split()
    # 14 training speakers of 5 utterances: 14 outsider utterances at 0.2 (a line: utt speaker)
    assert len([x for x in outsiders if x]) == 20 and len(listed) == 2 * 14
    results = (work / "RESULTS.md").read_text()
    assert "| open | 0.2 |" in results
    assert "relabel precision" in results and (work / "eer_vs_rate.png").stat().st_size > 10_000
    numbers = json.loads((work / "benchmark.json").read_text())["numbers"]
    assert set(numbers) == {"open"}
    assert set(numbers["open"]["0.2"]["eer"]) == {"supcon", "control", "relabel", "relabel_retrain", "regroup",
                                                     "regroup_relabel"}
    assert "What regrouping changed" in results and "pair_recall" in numbers["open"]["0.2"]["regrouped"]
    relabel = json.loads((work / "data" / "train_open0.2_seed0_relabelled" / "relabel.json").read_text())
    assert relabel["outsiders"] == 14 and "relabel_precision" in relabel
    # regroup_relabel: round 2 proposes from the regrouped labels with its own round-1 model
    regrouped = json.loads((work / "data" / "train_open0.2_seed0_regrouped_relabelled" / "relabel.json").read_text())
    assert regrouped["embeddings"] == "exp/regroup_relabel_round1_tuned_open0.2_seed0/embeddings/train/xvector.scp"
    # relabel_retrain: stage 3 again, from scratch (no initial checkpoint), on the relabelled labels
    retrain = work / "exp" / "relabel_retrain_tuned_open0.2_seed0"
    config = yaml.safe_load((retrain / "config.yaml").read_text())
    assert config["purl"]["init_checkpoint"] == "" and config["loss"]["type"] == "supcon"
    assert " data/train_open0.2_seed0_relabelled " in (retrain / "log" / "train.log").read_text().split("\n")[0]


def test_benchmark_rerun_trains_nothing(benchmark_run):
    recipe, _ = benchmark_run
    proc = run_script("bash", "local/noise_benchmark.sh", *GRID, "--", *SIZE, "--train-overrides", TRAIN, cwd=recipe)
    log = (recipe / "exp" / "benchmark" / "log" / "open0.2_seed0.log").read_text()
    assert "FAILED" not in proc.stdout
    assert log.count("is complete; skipping") >= 5 and "epoch 1/1" not in log  # every training, embeddings, scores


def test_relabel_retrain_updates_instead_when_relabelling_changed_too_few_labels(benchmark_run):
    """Under --retrain-min-changed the second pretraining is relabel's update, and its row says so."""
    recipe, _ = benchmark_run
    work = recipe / "exp" / "benchmark"
    cell = ("--seed", "0", "--noise-rate", "0.2", "--noise-type", "open", "--protocol", "tuned",
            "--num-outsider-speakers", "4", "--clean-reference", "false", *SIZE, "--train-overrides", TRAIN)
    relabel = json.loads((work / "data" / "train_open0.2_seed0_relabelled" / "relabel.json").read_text())
    changed = relabel["moved"] + relabel["dropped"]
    assert 0 < changed < relabel["utterances"]
    retrain = work / "exp" / "relabel_retrain_tuned_open0.2_seed0"
    shutil.rmtree(retrain)  # train.py refuses an exp dir trained otherwise, and says to delete it
    proc = run_script("bash", "run.sh", "--stage", "5", "--methods", "relabel_retrain", "--retrain-min-changed", "1",
                      *cell, cwd=work)
    assert f"relabelling changed {changed} of {relabel['utterances']} labels, under --retrain-min-changed 1" in proc.stdout
    config = yaml.safe_load((retrain / "config.yaml").read_text())
    assert config["purl"]["init_checkpoint"].startswith("exp/supcon_tuned_open0.2_seed0/models/")
    summary = (work / "exp" / "summary_tuned_open0.2_seed0.md").read_text()
    assert "relabelled (too few changes to retrain)" in summary


def test_relabel_retrain_beside_relabel_trains_the_update_once_and_retrains_when_the_rule_flips(benchmark_run):
    """With relabel among the methods, relabel_retrain's update is relabel's dir (a
    link), not the same training twice; when the rule later says retrain, the link
    goes and relabel's model stays."""
    recipe, _ = benchmark_run
    work = recipe / "exp" / "benchmark"
    cell = ("--seed", "0", "--noise-rate", "0.2", "--noise-type", "open", "--protocol", "tuned",
            "--num-outsider-speakers", "4", "--clean-reference", "false", *SIZE, "--train-overrides", TRAIN)
    relabel, retrain = (work / "exp" / f"{m}_tuned_open0.2_seed0" for m in ("relabel", "relabel_retrain"))
    shutil.rmtree(retrain)
    final = (relabel / "models" / "final.pt").read_bytes()
    run_script("bash", "run.sh", "--stage", "5", "--methods", "relabel relabel_retrain", "--retrain-min-changed", "1",
               *cell, cwd=work)
    assert retrain.is_symlink() and retrain.resolve() == relabel.resolve()
    assert (relabel / "models" / "final.pt").read_bytes() == final  # relabel's training skipped, not redone
    rows = {r["exp"]: r for r in json.loads((work / "exp" / "summary_tuned_open0.2_seed0.json").read_text())["rows"]}
    assert rows[f"exp/{retrain.name}"]["EER (%)"] == rows[f"exp/{relabel.name}"]["EER (%)"]

    run_script("bash", "run.sh", "--stage", "5", "--stop-stage", "5", "--methods", "relabel_retrain",
               "--retrain-min-changed", "0", *cell, cwd=work)
    assert not retrain.is_symlink()
    assert yaml.safe_load((retrain / "config.yaml").read_text())["purl"]["init_checkpoint"] == ""
    assert (relabel / "models" / "final.pt").read_bytes() == final


def _cell(eers):
    return {"rows": {k: {"EER (%)": v} for k, v in eers.items()}, "reliability": {"pair_auc": 0.9, "utt_auc": 0.95},
            "estimators": {"histogram": {"utt_f1": 0.5, "frac_utts_flagged": 0.3}, "bic": {"utt_f1": 0.7}},
            "relabel": {"relabel_precision": 0.8, "relabel_recall": None, "moved": 10, "dropped": 2}, "regroup": {}}


def test_tables_give_the_share_recovered_and_per_seed_wins():
    clean = {0: _cell({"supcon": 5.0}), 1: _cell({"supcon": 6.0})}
    noisy = {0: _cell({"supcon": 9.0, "control": 8.0, "filter": 7.0, "purl": 6.0}),
             1: _cell({"supcon": 10.0, "control": 9.5, "filter": 7.0, "purl": 7.5})}
    grid = {"permute": {0.0: clean, 0.2: noisy}}
    text, numbers = tables(grid, ["control", "filter", "purl"], [0, 1], [0.0, 0.2], ["permute"])
    assert numbers["permute"]["0.2"]["recovered"]["purl"] == [0.75, 0.625]
    assert "| permute | 0.2 | PURL | yes no | yes yes |" in text
    assert "| permute | 0.2 | 9.50 ± 0.71 |" in text
    assert recovered(5.0, 5.0, 5.0) != recovered(5.0, 5.0, 5.0)  # nothing lost: undefined (nan)
    assert "| none | 0 | (nan%) | (30.0%) |" in text  # the share flagged without noise; bic reported none
    assert "| permute | 0.2 | 0.700 | 0.500 |" in text


def test_every_method_s_exp_dir_maps_back_to_its_method():
    from purl.stages.benchmark import METHOD_NAMES, method_key

    for key in METHOD_NAMES:
        name = "filter0.5" if key == "filter" else key
        assert method_key(f"exp/{name}_tuned_open0.2_seed1") == key


@pytest.mark.parametrize("kind", ["merge", "split"])
def test_swap_cosine_of_merged_speakers_and_nan_for_split_labels(tmp_path, kind):
    """merge: the cosine of the absorbed and the host speaker; split: the new
    label has no centroid of the clean model (nan, not a KeyError)."""
    import numpy as np

    from purl.data.datadir import utt2spk_to_spk2utt, write_kv
    from purl.kaldi_io import save_embeddings
    from purl.stages.benchmark import swap_cosine
    from purl.stages.simulate_noise import run_noise

    truth = {f"s{s}-u{u}": f"s{s}" for s in range(4) for u in range(4)}
    (tmp_path / "data" / "train").mkdir(parents=True)
    write_kv(tmp_path / "data" / "train" / "utt2spk", truth)
    write_kv(tmp_path / "data" / "train" / "spk2utt", utt2spk_to_spk2utt(truth))
    run_noise(tmp_path / "data" / "train", tmp_path / "data" / f"train_{kind}0.2_seed0", 0.2, 0, noise_type=kind)
    emb_dir = tmp_path / "exp" / "supcon_noisy0_seed0" / "embeddings" / "train"
    emb_dir.mkdir(parents=True)
    utts = sorted(truth)
    save_embeddings(emb_dir / "xvector.ark", utts, np.stack([np.eye(4)[int(truth[u][1])] for u in utts]))
    cosine = swap_cosine(tmp_path, kind, 0.2, 0)
    assert cosine == 0.0 if kind == "merge" else np.isnan(cosine)  # orthogonal speakers


def test_regroup_table_gives_splits_joins_and_pair_structure_before_and_after():
    clean, noisy = _cell({"supcon": 5.0}), _cell({"supcon": 9.0, "regroup": 7.0})
    noisy["regroup"] = {"splits": 6, "splits_right": 6, "joins": 0, "joins_right": 0, "pair_precision_before": 0.694,
                        "pair_precision": 0.771, "pair_recall_before": 1.0, "pair_recall": 0.991}
    text, numbers = tables({"merge": {0.0: {0: clean}, 0.2: {0: noisy}}}, ["regroup"], [0], [0.0, 0.2], ["merge"])
    assert "| merge | 0.2 | 6.0 (6.0) | 0.0 (0.0) | 0.694 → 0.771 | 1.000 → 0.991 |" in text
    assert numbers["merge"]["0.2"]["regrouped"]["pair_precision"] == 0.771


def test_without_rate_0_the_share_table_says_why_it_is_empty():
    grid = {"permute": {0.2: {0: _cell({"supcon": 9.0, "purl": 6.0})}}}
    text, numbers = tables(grid, ["purl"], [0], [0.2], ["permute"])
    assert "not computed: the grid has no rate 0" in text and "recovered" not in numbers["permute"]["0.2"]


def test_table_of_a_grid_still_running_names_the_cells_not_run(tmp_path):
    """benchmark_table.py on a grid part-done: the cells that exist are tabulated,
    the others named and '–'; no cell at all is an error naming the dir."""
    from purl.data.datadir import DataDirError
    from purl.stages.benchmark import write_benchmark

    (tmp_path / "exp").mkdir()
    for name, eers in (("noisy0", {"supcon": 5.0, "control": 5.2}), ("noisy0.2", {"supcon": 9.0, "control": 7.0})):
        rows = [{"exp": f"exp/{k}_tuned_{name}_seed0", "EER (%)": v} for k, v in eers.items()]
        (tmp_path / "exp" / f"summary_tuned_{name}_seed0.json").write_text(json.dumps({"rows": rows}))
    text = write_benchmark(tmp_path, [0], [0.0, 0.2, 0.4], ["permute", "open"], ["control"], "_tuned")
    assert "Cells not run or failed ('–' in the tables): noisy0.4_seed0, open0.2_seed0, open0.4_seed0." in text
    assert "| permute | 0.2 | 9.00 | 7.00 |" in text and "| open | 0.2 | – | – |" in text
    assert "| permute | 0.2 | 50 |" in text and "| open | 0.2 | – |" in text  # shares: 2 of the 4 points lost
    assert "| open | 0.2 | – | – | – | – | – | – | – | – | – |" in text  # what stage 4 found: not run
    assert json.loads((tmp_path / "benchmark.json").read_text())["missing"][0] == "noisy0.4_seed0"
    assert (tmp_path / "eer_vs_rate.png").is_file()
    with pytest.raises(DataDirError, match="no cell's summary_paper"):
        write_benchmark(tmp_path, [0], [0.2], ["permute"], ["control"], "_paper")
