"""Stage 0: VoxCeleb and folder-per-speaker preparation."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from purl.data.datadir import DataDirError, read_kv, read_trials, validate_data_dir
from purl.data.prepare import convert_voxceleb_trials, prepare_folder_corpus, prepare_voxceleb
from purl.features import feature_type_of
from tests.conftest import ROOT, SPEECHOCEAN, run_script, write_tone

PURL_ORIGINAL = ROOT / "local" / "purl_original"


def test_voxceleb_preparation_on_the_real_layout(tmp_path, fake_voxceleb):
    summary = prepare_voxceleb(fake_voxceleb["vox1"], fake_voxceleb["vox2"], fake_voxceleb["meta"], tmp_path / "data")
    assert summary == {"vox2_dev": 3, "vox1": 4}
    vox1 = validate_data_dir(tmp_path / "data" / "vox1", require=["wav.scp", "utt2dur"], check_audio=True)
    assert vox1.utts[0] == "id10001-1zcIwhmdeo4-00001"
    assert read_trials(tmp_path / "data" / "vox1" / "trials_vox1_O")[:2] == [
        ("id10001-1zcIwhmdeo4-00001", "id10001-7gWzIy6yIIk-00002", True),
        ("id10001-1zcIwhmdeo4-00001", "id10002--5sXMlZvdf8-00001", False),
    ]
    vox2 = validate_data_dir(tmp_path / "data" / "vox2_dev", require=["wav.scp"])
    assert vox2.speakers == ["id00012", "id00015"]
    # m4a is named by its path (stage 1 decodes it in-process), and has no
    # utt2dur until stage 1 decodes it.
    entry = read_kv(tmp_path / "data" / "vox2_dev" / "wav.scp")["id00012-21Uxsk56VDQ-00001"]
    assert entry == str((fake_voxceleb["vox2"] / "id00012" / "21Uxsk56VDQ" / "00001.m4a").resolve())
    assert not (tmp_path / "data" / "vox2_dev" / "utt2dur").exists()


def test_voxceleb_missing_trial_list_says_where_it_comes_from(tmp_path, fake_voxceleb):
    (fake_voxceleb["meta"] / "veri_test2.txt").unlink()
    with pytest.raises(DataDirError, match=r"missing the official trial list\(s\) veri_test2.txt; download them from https://www.robots.ox.ac.uk"):
        prepare_voxceleb(fake_voxceleb["vox1"], None, fake_voxceleb["meta"], tmp_path / "data")


def test_voxceleb_missing_corpus_names_the_variable(tmp_path, fake_voxceleb):
    with pytest.raises(DataDirError, match="set vox2_dev_root in run.sh"):
        prepare_voxceleb(fake_voxceleb["vox1"], tmp_path / "nowhere", fake_voxceleb["meta"], tmp_path / "data")


def test_voxceleb_trial_with_unknown_utterance_is_reported(tmp_path, fake_voxceleb):
    with open(fake_voxceleb["meta"] / "veri_test2.txt", "a") as f:
        f.write("1 id10001/1zcIwhmdeo4/00001.wav id19999/abc/00001.wav\n")
    with pytest.raises(DataDirError, match=r"veri_test2.txt line 4: 'id19999/abc/00001.wav' is not in the VoxCeleb1 tree"):
        prepare_voxceleb(fake_voxceleb["vox1"], None, fake_voxceleb["meta"], tmp_path / "data")


def add_validation_speakers(vox2: Path, tmp_path: Path) -> Path:
    """Two more VoxCeleb2 dev speakers (wav, as a converted tree has) and a
    validation list on them in the original's format; returns the list."""
    for n, (spk, video) in enumerate([("id00020", "aaaaaaaaaaa"), ("id00020", "bbbbbbbbbbb"), ("id00031", "ccccccccccc")]):
        write_tone(vox2 / spk / video / "00001.wav", seed=20 + n)
    pairs = tmp_path / "vox2_valid_pairs.txt"
    pairs.write_text("1 id00020/aaaaaaaaaaa/00001.wav id00020/bbbbbbbbbbb/00001.wav\n"
                     "0 id00020/aaaaaaaaaaa/00001.wav id00031/ccccccccccc/00001.wav\n")
    return pairs


def test_voxceleb_recipe_stages_0_and_1_on_the_fake_tree(tmp_path, fake_voxceleb):
    pairs = add_validation_speakers(fake_voxceleb["vox2"], tmp_path)
    recipe = tmp_path / "recipe"
    shutil.copytree(ROOT / "egs" / "voxceleb", recipe, symlinks=True, ignore=shutil.ignore_patterns("data", "exp", "fbank"))
    for link in ("path.sh", "steps", "utils", "local"):
        (recipe / link).unlink()
        (recipe / link).symlink_to(ROOT / link)
    run_script("bash", "run.sh", "--stage", "0", "--stop-stage", "1", "--nj", "2",
               "--vox1-root", fake_voxceleb["vox1"], "--vox2-dev-root", fake_voxceleb["vox2"],
               "--vox1-trials-dir", fake_voxceleb["meta"], "--vox2-valid-pairs", pairs, cwd=recipe)
    for name, n in (("vox2_dev", 3), ("vox1", 4), ("vox2_valid", 3)):  # the paper protocol's: the original's fbank
        data = validate_data_dir(recipe / "data" / f"{name}_sbfbank", require=["feats.scp", "utt2num_frames", "utt2dur"])
        assert len(data) == n and feature_type_of(data.path) == "speechbrain"
        assert not (recipe / "data" / name / "feats.scp").exists()
    assert len(read_trials(recipe / "data" / "vox1_sbfbank" / "trials_vox1_H")) == 3
    assert len(read_trials(recipe / "data" / "vox2_valid_sbfbank" / "trials")) == 2


def test_voxceleb_validation_pairs_make_vox2_valid_and_leave_training(tmp_path, fake_voxceleb):
    pairs = add_validation_speakers(fake_voxceleb["vox2"], tmp_path)
    summary = prepare_voxceleb(fake_voxceleb["vox1"], fake_voxceleb["vox2"], fake_voxceleb["meta"], tmp_path / "data",
                               vox2_valid_pairs=pairs)
    assert summary == {"vox2_valid": 3, "vox2_dev": 3, "vox1": 4}
    assert validate_data_dir(tmp_path / "data" / "vox2_dev").speakers == ["id00012", "id00015"]
    assert validate_data_dir(tmp_path / "data" / "vox2_valid").speakers == ["id00020", "id00031"]
    assert read_trials(tmp_path / "data" / "vox2_valid" / "trials") == [
        ("id00020-aaaaaaaaaaa-00001", "id00020-bbbbbbbbbbb-00001", True),
        ("id00020-aaaaaaaaaaa-00001", "id00031-ccccccccccc-00001", False),
    ]


def test_voxceleb_validation_speakers_can_stay_in_training(tmp_path, fake_voxceleb):
    pairs = add_validation_speakers(fake_voxceleb["vox2"], tmp_path)
    summary = prepare_voxceleb(fake_voxceleb["vox1"], fake_voxceleb["vox2"], fake_voxceleb["meta"], tmp_path / "data",
                               vox2_valid_pairs=pairs, keep_valid_speakers=True)
    assert summary["vox2_dev"] == 6 and summary["vox2_valid"] == 3


def test_voxceleb_validation_pair_not_in_vox2_names_the_line(tmp_path, fake_voxceleb):
    pairs = add_validation_speakers(fake_voxceleb["vox2"], tmp_path)
    with open(pairs, "a") as f:
        f.write("1 id00020/aaaaaaaaaaa/00001.wav id09999/zzz/00001.wav\n")
    with pytest.raises(DataDirError, match=r"vox2_valid_pairs.txt line 3: 'id09999/zzz/00001.wav' is not in the "
                                           r"VoxCeleb2 dev tree .* set vox2_valid_pairs=\"\" in run.sh"):
        prepare_voxceleb(fake_voxceleb["vox1"], fake_voxceleb["vox2"], fake_voxceleb["meta"], tmp_path / "data",
                         vox2_valid_pairs=pairs)
    assert not (tmp_path / "data" / "vox2_dev").exists()


def test_shipped_validation_pairs_are_the_originals_10000_on_its_100_speakers():
    trials = convert_voxceleb_trials(PURL_ORIGINAL / "vox2_valid_pairs.txt", _AnyUtterance())
    assert len(trials) == 10000 and sum(t for *_, t in trials) == 5000
    speakers = {u.split("-")[0] for u1, u2, _ in trials for u in (u1, u2)}
    listed = (PURL_ORIGINAL / "vox2_heldout_speakers.txt").read_text().split()
    assert len(listed) == 100 and speakers == set(listed)
    assert "MIT License" in (PURL_ORIGINAL / "README.md").read_text()


class _AnyUtterance:
    """Stands for a VoxCeleb2 tree that has every utterance."""

    def __contains__(self, utt):
        return True


def wespeaker_voxceleb1(fake_voxceleb, tmp_path, *, with_dev: bool) -> Path:
    """WeSpeaker's layout: voxceleb1/test/wav/<id>/... (the fake tree's speakers)
    and, with_dev, voxceleb1/dev/wav/id10003/..."""
    root = tmp_path / "wespeaker" / "voxceleb1"
    (root / "test").mkdir(parents=True)
    shutil.copytree(fake_voxceleb["vox1"], root / "test" / "wav")
    if with_dev:
        for n, video in enumerate(("xxxxxxxxxxx", "yyyyyyyyyyy")):
            write_tone(root / "dev" / "wav" / "id10003" / video / "00001.wav", seed=30 + n)
    return root


def test_voxceleb1_in_wespeakers_layout_joins_dev_and_test(tmp_path, fake_voxceleb):
    root = wespeaker_voxceleb1(fake_voxceleb, tmp_path, with_dev=True)
    summary = prepare_voxceleb(root, None, fake_voxceleb["meta"], tmp_path / "data")
    assert summary == {"vox1": 6}
    vox1 = validate_data_dir(tmp_path / "data" / "vox1", require=["utt2dur"], check_audio=True)
    assert vox1.speakers == ["id10001", "id10002", "id10003"]
    for name in ("O", "E", "H"):
        assert len(read_trials(tmp_path / "data" / "vox1" / f"trials_vox1_{name}")) == 3


def test_voxceleb1_test_part_alone_with_veri_test2_gives_vox1_o_only(tmp_path, fake_voxceleb):
    root = wespeaker_voxceleb1(fake_voxceleb, tmp_path, with_dev=False)
    prepare_voxceleb(fake_voxceleb["vox1"], None, fake_voxceleb["meta"], tmp_path / "data")  # an earlier O/E/H run
    for name in ("list_test_all2.txt", "list_test_hard2.txt"):
        (fake_voxceleb["meta"] / name).unlink()
    proc = run_script(ROOT / "local" / "prepare_voxceleb.py", root, fake_voxceleb["meta"], tmp_path / "data")
    assert "not prepared: list_test_all2.txt (vox1_E), list_test_hard2.txt (vox1_H)" in proc.stdout
    assert sorted(p.name for p in (tmp_path / "data" / "vox1").glob("trials*")) == ["trials_vox1_O"]
    assert len(validate_data_dir(tmp_path / "data" / "vox1")) == 4


def test_voxceleb1_dev_and_test_sharing_an_utterance_is_reported(tmp_path, fake_voxceleb):
    root = wespeaker_voxceleb1(fake_voxceleb, tmp_path, with_dev=False)
    shutil.copytree(root / "test" / "wav" / "id10002", root / "dev" / "wav" / "id10002")
    with pytest.raises(DataDirError, match=r"test/wav: has utterance 'id10002--5sXMlZvdf8-00001' that another part"):
        prepare_voxceleb(root, None, fake_voxceleb["meta"], tmp_path / "data")


def test_folder_corpus_holds_out_speakers_with_trials(tmp_path, tiny_corpus):
    summary = prepare_folder_corpus(tiny_corpus, tmp_path / "train", test_dir=tmp_path / "test", num_test_speakers=2, seed=3)
    assert sum(summary.values()) == 9
    train = validate_data_dir(tmp_path / "train", check_audio=True)
    test = validate_data_dir(tmp_path / "test", check_audio=True)
    assert len(train.speakers) == 1 and len(test.speakers) == 2
    trials = read_trials(tmp_path / "test" / "trials")
    assert sum(t for *_, t in trials) == 6 and len(trials) == 12


def test_folder_corpus_rejects_a_speaker_folder_with_a_dash(tmp_path, tiny_corpus):
    (tiny_corpus / "spk0").rename(tiny_corpus / "spk-0")
    with pytest.raises(DataDirError, match="spk-0: speaker folder names must have no spaces or '-'"):
        prepare_folder_corpus(tiny_corpus, tmp_path / "train")


def test_folder_corpus_without_audio_says_what_it_expects(tmp_path):
    (tmp_path / "empty" / "spk0").mkdir(parents=True)
    with pytest.raises(DataDirError, match="no audio files .* expected one folder per speaker"):
        prepare_folder_corpus(tmp_path / "empty", tmp_path / "train")


@pytest.mark.skipif(not SPEECHOCEAN.is_dir(), reason="../shared/data/speechocean762-train is not here")
def test_folder_preparation_and_features_on_speechocean762(tmp_path):
    # A few speakers keep the test short; the recipe uses all 125.
    corpus = tmp_path / "so762"
    corpus.mkdir()
    for spk in sorted(p.name for p in SPEECHOCEAN.iterdir() if p.is_dir())[:5]:
        (corpus / spk).symlink_to(SPEECHOCEAN / spk)
    run_script(ROOT / "local" / "prepare_folder_corpus.py", "--num-test-speakers", "2", corpus,
               tmp_path / "train", tmp_path / "test")
    for d in ("train", "test"):
        run_script(ROOT / "steps" / "make_fbank.sh", "--nj", "2", tmp_path / d, tmp_path / d / "log", tmp_path / "fbank",
                   cwd=tmp_path)
        data = validate_data_dir(tmp_path / d, require=["feats.scp", "utt2dur"], check_audio=True)
        frames = read_kv(tmp_path / d / "utt2num_frames")
        durs = read_kv(tmp_path / d / "utt2dur")
        assert all(abs(int(frames[u]) * 0.01 - float(durs[u])) < 0.03 for u in data.utts)
