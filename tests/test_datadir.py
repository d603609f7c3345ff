"""Data-dir tools on good and broken dirs."""

from __future__ import annotations

import pytest

from purl.data.datadir import (
    DataDirError,
    fix_data_dir,
    make_trials,
    read_kv,
    read_trials,
    spk2utt_to_utt2spk,
    split_data_dir,
    subset_data_dir,
    utt2spk_to_spk2utt,
    validate_data_dir,
    write_kv,
)
from tests.conftest import ROOT, run_script


def make_dir(path, utts=(("a-1", "a"), ("a-2", "a"), ("b-1", "b"), ("b-2", "b"))):
    path.mkdir(parents=True, exist_ok=True)
    write_kv(path / "utt2spk", dict(utts))
    write_kv(path / "spk2utt", utt2spk_to_spk2utt(dict(utts)))
    write_kv(path / "wav.scp", {u: f"/audio/{u}.wav" for u, _ in utts})
    return path


def test_good_dir_validates(tmp_path):
    data = validate_data_dir(make_dir(tmp_path / "d"))
    assert data.utts == ["a-1", "a-2", "b-1", "b-2"]
    assert data.speakers == ["a", "b"]


def test_unsorted_file_names_line_and_fix(tmp_path):
    d = make_dir(tmp_path / "d")
    (d / "utt2spk").write_text("a-2 a\na-1 a\nb-1 b\nb-2 b\n")
    with pytest.raises(DataDirError, match=r"utt2spk line 2: 'a-1' sorts before 'a-2' \(run utils/fix_data_dir.py"):
        validate_data_dir(d)


def test_duplicate_key_is_reported(tmp_path):
    d = make_dir(tmp_path / "d")
    (d / "wav.scp").write_text("a-1 x\na-1 y\na-2 z\nb-1 w\nb-2 v\n")
    with pytest.raises(DataDirError, match=r"wav.scp line 2: duplicate key 'a-1'"):
        validate_data_dir(d)


def test_utterance_without_audio_is_reported(tmp_path):
    d = make_dir(tmp_path / "d")
    write_kv(d / "wav.scp", {"a-1": "x", "a-2": "y", "b-1": "z"})
    with pytest.raises(DataDirError, match=r"wav.scp: no entry for 1 utterance\(s\) of utt2spk, e.g. 'b-2'"):
        validate_data_dir(d)


def test_missing_audio_file_is_reported_with_check_audio(tmp_path):
    d = make_dir(tmp_path / "d")
    with pytest.raises(DataDirError, match=r"wav.scp line 1: the audio of 'a-1', /audio/a-1.wav, does not exist; 3 more"):
        validate_data_dir(d, check_audio=True)


def test_spk2utt_disagreeing_with_utt2spk_is_reported(tmp_path):
    d = make_dir(tmp_path / "d")
    (d / "spk2utt").write_text("a a-1\nb b-1 b-2\n")
    with pytest.raises(DataDirError, match="spk2utt does not agree with utt2spk"):
        validate_data_dir(d)


def test_utterance_not_prefixed_by_speaker_is_reported(tmp_path):
    d = make_dir(tmp_path / "d", utts=(("a-1", "a"), ("x-2", "b")))
    with pytest.raises(DataDirError, match="'x-2' does not start with its speaker id 'b'"):
        validate_data_dir(d)


def test_trial_naming_unknown_utterance_is_reported(tmp_path):
    d = make_dir(tmp_path / "d")
    (d / "trials").write_text("a-1 a-2 target\na-1 c-9 nontarget\n")
    with pytest.raises(DataDirError, match=r"trials line 2: 'c-9' is not an utterance"):
        validate_data_dir(d)


def test_malformed_trial_line_is_reported(tmp_path):
    (tmp_path / "trials").write_text("a-1 a-2 target\na-1 b-1 maybe\n")
    with pytest.raises(DataDirError, match=r"trials line 2: expected 'utt1 utt2 target\|nontarget'"):
        read_trials(tmp_path / "trials")


def test_empty_trial_list_is_an_error(tmp_path):
    (tmp_path / "trials").write_text("")
    with pytest.raises(DataDirError, match="empty trial list"):
        read_trials(tmp_path / "trials")


def test_fix_data_dir_drops_utts_without_audio(tmp_path):
    d = make_dir(tmp_path / "d")
    (d / "wav.scp").write_text("b-2 w\na-1 x\na-1 x\nb-1 z\n")  # unsorted, repeated line, a-2 missing
    kept, dropped = fix_data_dir(d)
    assert (kept, dropped) == (3, 1)
    data = validate_data_dir(d)
    assert data.utts == ["a-1", "b-1", "b-2"]
    assert read_kv(d / "spk2utt", multi=True) == {"a": ["a-1"], "b": ["b-1", "b-2"]}
    assert (d / ".backup" / "wav.scp").read_text().startswith("b-2 w")


def test_spk2utt_and_utt2spk_round_trip():
    utt2spk = {"b-1": "b", "a-2": "a", "a-1": "a"}
    spk2utt = utt2spk_to_spk2utt(utt2spk)
    assert spk2utt == {"a": ["a-1", "a-2"], "b": ["b-1"]}
    assert dict(spk2utt_to_utt2spk(spk2utt)) == dict(sorted(utt2spk.items()))


def test_subset_by_speakers_and_by_utterances(tmp_path):
    d = make_dir(tmp_path / "d")
    by_spk = subset_data_dir(d, tmp_path / "s", speakers=["b"])
    assert by_spk.utts == ["b-1", "b-2"] and set(by_spk.spk2utt) == {"b"}
    by_utt = subset_data_dir(d, tmp_path / "u", utts=["a-1", "b-2"])
    assert by_utt.utts == ["a-1", "b-2"]
    with pytest.raises(DataDirError, match="no speaker 'c'"):
        subset_data_dir(d, tmp_path / "x", speakers=["c"])


def test_split_covers_every_utterance_once(tmp_path):
    d = make_dir(tmp_path / "d", utts=[(f"s{i % 3}-{i:02d}", f"s{i % 3}") for i in range(10)])
    fix_data_dir(d)
    parts = split_data_dir(d, 3)
    utts = [u for p in parts for u in read_kv(p / "utt2spk")]
    assert sorted(utts) == sorted(read_kv(d / "utt2spk")) and len(utts) == 10
    with pytest.raises(DataDirError, match="cannot split 10 utterances into 11 jobs"):
        split_data_dir(d, 11)


def test_make_trials_is_balanced_and_seeded():
    utt2spk = {f"s{s}-{u}": f"s{s}" for s in range(4) for u in range(3)}
    trials = make_trials(utt2spk, seed=1)
    targets = [t for t in trials if t[2]]
    assert len(targets) == 12 and len(trials) == 24
    assert all(utt2spk[a] == utt2spk[b] for a, b, t in trials if t)
    assert all(utt2spk[a] != utt2spk[b] for a, b, t in trials if not t)
    assert trials == make_trials(utt2spk, seed=1)
    capped = make_trials(utt2spk, max_targets=5, seed=1)
    assert sum(t for _, _, t in capped) == 5 and len(capped) == 10


def test_validate_script_prints_problem_and_exits_1(tmp_path):
    d = make_dir(tmp_path / "d")
    (d / "utt2spk").write_text("b-1 b\na-1 a\n")
    proc = run_script(ROOT / "utils" / "validate_data_dir.py", d, check=False)
    assert proc.returncode == 1
    assert "utt2spk line 2: 'a-1' sorts before 'b-1'" in proc.stderr


def test_split_is_remade_when_the_dir_gains_a_file(tmp_path):
    d = make_dir(tmp_path / "d")
    split_data_dir(d, 2)
    write_kv(d / "feats.scp", {u: f"x.ark:{i}" for i, u in enumerate(read_kv(d / "utt2spk"))})
    parts = split_data_dir(d, 2)
    assert all((p / "feats.scp").is_file() for p in parts)
