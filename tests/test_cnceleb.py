"""Stage 0 of egs/cnceleb on a miniature tree in CN-Celeb's real v2 layout, and
the averaged enrollment models of stage 6."""

from __future__ import annotations

from pathlib import Path

import kaldiio
import numpy as np
import pytest

from purl.data.cnceleb import prepare_cnceleb
from purl.data.datadir import DataDirError, read_kv, read_trials, validate_data_dir
from purl.features import feature_type_of
from tests.conftest import ROOT, copy_recipe, run_script, write_tone


@pytest.fixture
def fake_cnceleb(tmp_path) -> dict[str, Path]:
    """CN-Celeb_flac/ with 2 dev and 2 eval speakers, CN-Celeb2_flac/ with 1 speaker.
    The lists name .wav files, the audio is .flac, as in the v2 release."""
    cn1, cn2 = tmp_path / "CN-Celeb_flac", tmp_path / "CN-Celeb2_flac"
    n = 0

    def flac(path: Path) -> None:
        nonlocal n
        write_tone(path.with_suffix(".wav"), seed=n).rename(path)  # soundfile picks the format from the name
        n += 1

    for spk in ("id00000", "id00001", "id00800", "id00801"):
        for utt in ("singing-01-001", "speech-02-001", "vlog-01-002"):
            flac(cn1 / "data" / spk / f"{utt}.flac")
    for spk in ("id00800", "id00801"):
        flac(cn1 / "eval" / "enroll" / f"{spk}-enroll.flac")
        for utt in ("speech-02-001", "vlog-01-002"):
            flac(cn1 / "eval" / "test" / f"{spk}-{utt}.flac")
    for utt in ("interview-01-001", "vlog-03-002"):
        flac(cn2 / "data" / "id10000" / f"{utt}.flac")
    (cn1 / "dev").mkdir()
    (cn1 / "dev" / "dev.lst").write_text("id00000\nid00001\n")
    (cn2 / "spk.lst").write_text("id10000\n")
    lists = cn1 / "eval" / "lists"
    lists.mkdir()
    (lists / "enroll.lst").write_text("id00800-enroll enroll/id00800-enroll.wav\nid00801-enroll enroll/id00801-enroll.wav\n")
    (lists / "enroll.map").write_text("id00800-enroll id00800/singing-01-001.wav\n"
                                      "id00801-enroll id00801/singing-01-001.wav id00801/speech-02-001.wav\n")
    (lists / "trials.lst").write_text("".join(
        f"{model}-enroll test/{spk}-{utt}.wav {int(model == spk)}\n"
        for model in ("id00800", "id00801") for spk in ("id00800", "id00801") for utt in ("speech-02-001", "vlog-01-002")))
    return {"cn1": cn1, "cn2": cn2, "lists": lists}


def test_cnceleb_preparation_on_the_real_layout(tmp_path, fake_cnceleb):
    summary = prepare_cnceleb(fake_cnceleb["cn1"], fake_cnceleb["cn2"], tmp_path / "data")
    # 2 dev speakers x 3 + CN-Celeb2's 2; eval: 2 enroll files + 4 test utterances + 2 enroll-only utterances
    # (id00801's speech-02-001 is both an enrollment and a test utterance: one recording, one id).
    assert summary == {"cnceleb_train": 8, "cnceleb1_eval": 8}
    train = validate_data_dir(tmp_path / "data" / "cnceleb_train", require=["wav.scp", "utt2dur"], check_audio=True)
    assert train.speakers == ["id00000", "id00001", "id10000"]
    assert "id10000-interview-01-001" in train.utts
    test = validate_data_dir(tmp_path / "data" / "cnceleb1_eval", require=["wav.scp", "utt2dur"], check_audio=True)
    assert read_kv(test.path / "wav.scp")["id00800-enroll"].endswith("eval/enroll/id00800-enroll.flac")
    trials = read_trials(test.path / "trials_concat")
    assert trials[:2] == [("id00800-enroll", "id00800-speech-02-001", True), ("id00800-enroll", "id00800-vlog-01-002", True)]
    assert len(trials) == 8 and sum(t for *_, t in trials) == 4
    assert read_kv(test.path / "enroll_avg", multi=True) == {
        "id00800-enroll-avg": ["id00800-singing-01-001"],
        "id00801-enroll-avg": ["id00801-singing-01-001", "id00801-speech-02-001"],
    }
    assert [(a.removesuffix("-avg"), b, t) for a, b, t in read_trials(test.path / "avg_enroll_trials")] == trials


def test_cnceleb_bad_trial_label_names_file_and_line(tmp_path, fake_cnceleb):
    with open(fake_cnceleb["lists"] / "trials.lst", "a") as f:
        f.write("id00800-enroll test/id00801-vlog-01-002.wav target\n")
    with pytest.raises(DataDirError, match=r"trials.lst line 9: label 'target' is not 0 or 1"):
        prepare_cnceleb(fake_cnceleb["cn1"], None, tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_cnceleb_missing_list_and_missing_audio_say_what_to_do(tmp_path, fake_cnceleb):
    (fake_cnceleb["cn1"] / "eval" / "test" / "id00801-vlog-01-002.flac").unlink()
    with pytest.raises(DataDirError, match=r"trials.lst line 4: 'test/id00801-vlog-01-002.wav' not found .* as .wav or .flac"):
        prepare_cnceleb(fake_cnceleb["cn1"], None, tmp_path / "data")
    (fake_cnceleb["lists"] / "enroll.map").unlink()
    with pytest.raises(DataDirError, match=r"enroll.map: missing .* from https://www.openslr.org/82/"):
        prepare_cnceleb(fake_cnceleb["cn1"], None, tmp_path / "data")
    with pytest.raises(DataDirError, match=r"no CN-Celeb2 here .* CN-Celeb2_flac"):
        prepare_cnceleb(fake_cnceleb["cn1"], tmp_path / "nowhere", tmp_path / "data")


def test_cnceleb_eval_speaker_in_the_training_list_is_refused(tmp_path, fake_cnceleb):
    (fake_cnceleb["cn1"] / "dev" / "dev.lst").write_text("id00000\nid00800\n")
    with pytest.raises(DataDirError, match="evaluation speaker 'id00800' is also a training speaker"):
        prepare_cnceleb(fake_cnceleb["cn1"], None, tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_average_embeddings_adds_the_mean_of_each_models_utterances(tmp_path):
    vectors = {"a-1": [1.0, 0.0], "a-2": [3.0, 2.0], "b-1": [0.0, 4.0]}
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path / 'x.ark'},{tmp_path / 'xvector.scp'}") as writer:
        for utt, v in vectors.items():
            writer(utt, np.array(v, dtype=np.float32))
    (tmp_path / "models").write_text("a-enroll-avg a-1 a-2\nb-enroll-avg b-1 a-1\n")
    run_script(ROOT / "steps" / "average_embeddings.py", tmp_path / "xvector.scp", tmp_path / "models", tmp_path / "out")
    table = kaldiio.load_scp(str(tmp_path / "out" / "xvector.scp"))
    assert list(table) == ["a-1", "a-2", "a-enroll-avg", "b-1", "b-enroll-avg"]
    assert table["a-enroll-avg"].shape == (2,)  # a vector, like the utterance embeddings
    np.testing.assert_allclose(table["a-enroll-avg"], [2.0, 1.0])
    np.testing.assert_allclose(table["b-enroll-avg"], [0.5, 2.0])
    (tmp_path / "models").write_text("a-enroll-avg a-1 c-9\n")
    proc = run_script(ROOT / "steps" / "average_embeddings.py", tmp_path / "xvector.scp", tmp_path / "models",
                      tmp_path / "out2", check=False)
    assert proc.returncode == 1 and "'c-9' of model 'a-enroll-avg' has no embedding" in proc.stderr


def test_cnceleb_recipe_stages_0_and_1_on_the_fake_tree(tmp_path, fake_cnceleb):
    recipe = copy_recipe("cnceleb", tmp_path / "recipe")
    run_script("bash", "run.sh", "--stage", "0", "--stop-stage", "1", "--nj", "2",
               "--cn1-root", fake_cnceleb["cn1"], "--cn2-root", fake_cnceleb["cn2"], cwd=recipe)
    for name, n in (("cnceleb_train", 8), ("cnceleb1_eval", 8)):  # the paper protocol's: the original's fbank
        data = validate_data_dir(recipe / "data" / f"{name}_sbfbank", require=["feats.scp", "utt2num_frames", "utt2dur"])
        assert len(data) == n and feature_type_of(data.path) == "speechbrain"
    assert (recipe / "data" / "cnceleb1_eval_sbfbank" / "enroll_avg").is_file()


def test_average_embeddings_rerun_skips_same_inputs_and_redoes_changed_models(tmp_path):
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path / 'x.ark'},{tmp_path / 'xvector.scp'}") as writer:
        for utt, v in {"a-1": [1.0, 0.0], "a-2": [3.0, 2.0]}.items():
            writer(utt, np.array(v, dtype=np.float32))
    (tmp_path / "models").write_text("a-enroll-avg a-1 a-2\n")
    args = (ROOT / "steps" / "average_embeddings.py", tmp_path / "xvector.scp", tmp_path / "models", tmp_path / "out")
    run_script(*args)
    assert "skipping" in run_script(*args).stderr
    (tmp_path / "models").write_text("a-enroll-avg a-1\n")
    assert "models:" in run_script(*args).stderr  # the record names the input that changed
    np.testing.assert_allclose(kaldiio.load_scp(str(tmp_path / "out" / "xvector.scp"))["a-enroll-avg"], [1.0, 0.0])
