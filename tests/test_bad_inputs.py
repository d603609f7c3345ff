"""Bad input at every stage: each case asserts the message (what, where, the fix)
and that nothing was left that a rerun would take as complete. Also the
settings records: a changed option or input redoes the work or stops."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from purl.audio import AudioError, audio_duration, read_audio
from purl.config import DEFAULTS, LISTS, ConfigError, StrictLoader, load_config
from purl.data.datadir import DataDirError, fix_data_dir, read_kv, read_trials, utt2spk_to_spk2utt, validate_data_dir, write_kv
from purl.data.dataset import load_features
from purl.embed import embed_utterances
from purl.features import FeatureError
from purl.kaldi_io import load_embeddings, read_vector
from purl.models import build_model
from purl.stages import training as training_stage
from purl.stages.exp_layout import TrainingOutputs
from purl.stages.fbank import make_fbank_job
from purl.training.checkpoint import model_from_checkpoint, save_atomic
from purl.training.errors import TrainError
from purl.training.loop import Trainer
from tests.conftest import ROOT, run_script, write_feature_dir, write_tone

STANDIN_RUN_PL = ROOT / "tests" / "kaldi_standin" / "run.pl"


def load_step(name: str):
    """An entry script of steps/ as a module (they are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "steps" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def audio_dir(path, tmp_path, num_speakers=2, utts=3, seconds=0.5):
    """A data dir of short 16-bit tones: wav.scp, utt2spk, spk2utt."""
    wav, utt2spk = {}, {}
    for s in range(num_speakers):
        for u in range(utts):
            utt = f"spk{s}-u{u}"
            wav[utt] = str(write_tone(tmp_path / "wav" / path.name / f"{utt}.wav", seconds=seconds, seed=s * utts + u))
            utt2spk[utt] = f"spk{s}"
    path.mkdir(parents=True, exist_ok=True)
    write_kv(path / "wav.scp", wav)
    write_kv(path / "utt2spk", utt2spk)
    write_kv(path / "spk2utt", utt2spk_to_spk2utt(utt2spk))
    return path


def make_fbank(tmp_path, data, *options, fbank="fbank"):
    return run_script(ROOT / "steps" / "make_fbank.sh", "--nj", "2", *options, data, data / "log", tmp_path / fbank,
                      cwd=tmp_path, check=False)


def no_complete_features(data):
    return not (data / "feats.scp").exists() and not (data / "feats.settings").exists()


# ---------------------------------------------------------------------------
# audio (stage 1's reader)

@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
def test_float_wav_is_read_at_its_level_not_as_zeros(tmp_path, subtype):
    pcm = write_tone(tmp_path / "pcm.wav")
    x, rate = sf.read(pcm, dtype="float32")
    sf.write(tmp_path / "float.wav", x, rate, subtype=subtype)
    samples, _ = read_audio(str(tmp_path / "float.wav"))
    reference, _ = read_audio(str(pcm))
    assert np.abs(samples).max() > 1000
    np.testing.assert_allclose(samples, reference, atol=1e-3)


def test_truncated_wav_is_refused_not_read_at_half_length(tmp_path):
    raw = write_tone(tmp_path / "a.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(AudioError, match="truncated .*copy or download it again"):
        read_audio(str(tmp_path / "cut.wav"))


@pytest.mark.parametrize("name", ["nope.wav", "nope.m4a"])
def test_a_missing_audio_file_is_said_not_to_exist(tmp_path, name):
    with pytest.raises(AudioError, match=rf"^{tmp_path / name} does not exist$"):
        read_audio(str(tmp_path / name))
    with pytest.raises(AudioError, match=rf"^{tmp_path / name} does not exist$"):
        audio_duration(str(tmp_path / name))


@pytest.mark.parametrize("name", ["empty.wav", "empty.flac", "empty.m4a"])
def test_an_empty_audio_file_is_said_to_be_empty(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty\.\w+ is empty \(0 bytes"):
        read_audio(str(tmp_path / name))
    with pytest.raises(AudioError, match=r"empty\.\w+ is empty \(0 bytes"):
        audio_duration(str(tmp_path / name))


def test_a_command_that_writes_nothing_is_named():
    with pytest.raises(AudioError, match=r"command wrote no audio: true \|"):
        read_audio("true |")


def test_stage_1_names_missing_and_empty_audio_with_the_utterance_and_line(tmp_path):
    data = audio_dir(tmp_path / "train", tmp_path)
    wav = read_kv(data / "wav.scp")
    Path(wav["spk0-u1"]).unlink()
    Path(wav["spk1-u0"]).write_bytes(b"")
    proc = make_fbank(tmp_path, data)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"spk0-u1 ({data}/wav.scp line 2): {wav['spk0-u1']} does not exist" in proc.stderr
    assert f"spk1-u0 ({data}/wav.scp line 4): {wav['spk1-u0']} is empty (0 bytes" in proc.stderr
    assert no_complete_features(data)


def test_validate_check_audio_names_missing_and_empty_files_by_line(tmp_path):
    data = audio_dir(tmp_path / "train", tmp_path)
    wav = read_kv(data / "wav.scp")
    Path(wav["spk0-u1"]).unlink()
    Path(wav["spk1-u0"]).write_bytes(b"")
    proc = run_script(ROOT / "utils" / "validate_data_dir.py", "--check-audio", data, check=False)
    assert proc.returncode == 1
    assert (f"wav.scp line 2: the audio of 'spk0-u1', {wav['spk0-u1']}, does not exist; 1 more with no usable file "
            f"(correct the paths, or delete those lines and run utils/fix_data_dir.py {data})") in proc.stderr
    write_tone(Path(wav["spk0-u1"]))
    with pytest.raises(DataDirError, match=r"wav.scp line 4: the audio of 'spk1-u0', .*, is empty \(0 bytes"):
        validate_data_dir(data, check_audio=True)


def test_nan_audio_stops_the_job_naming_the_utterance_and_leaves_no_job_output(tmp_path):
    x = np.full(8000, np.nan, np.float32)
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    good = write_tone(tmp_path / "good.wav")
    with pytest.raises(FeatureError, match=r"spk-nan: NaN or inf samples in .*nan.wav"):
        make_fbank_job({"spk-good": str(good), "spk-nan": str(tmp_path / "nan.wav")}, tmp_path / "out.ark")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.wav", "nan.wav"]


def test_too_short_utterance_is_dropped_with_its_id(tmp_path):
    short = write_tone(tmp_path / "short.wav", seconds=0.05)
    result = make_fbank_job({"spk-short": str(short)}, tmp_path / "out.ark")
    assert result.done == 0 and "too short: 0.050 s gives 3 frames" in result.failed["spk-short"]
    assert "spk-short" in (tmp_path / "out.failed").read_text()


# ---------------------------------------------------------------------------
# stage 1: steps/make_fbank.sh

def test_two_data_dirs_with_the_same_name_never_share_arks(tmp_path):
    a = audio_dir(tmp_path / "a" / "train", tmp_path)
    b = audio_dir(tmp_path / "b" / "train", tmp_path, utts=4)
    assert make_fbank(tmp_path, a).returncode == 0
    assert make_fbank(tmp_path, b).returncode == 0
    arks_a = {v.rsplit(":", 1)[0] for v in read_kv(a / "feats.scp").values()}
    arks_b = {v.rsplit(":", 1)[0] for v in read_kv(b / "feats.scp").values()}
    assert not arks_a & arks_b
    # a's features still read back as a's (the second dir overwrote nothing)
    assert len(kaldiio.load_scp(str(a / "feats.scp"))) == 6


@pytest.mark.parametrize("delete_feats_scp", [True, False])
def test_rerun_with_other_mel_bins_recomputes_every_job(tmp_path, delete_feats_scp):
    # The old jobs' 80-bin outputs must not be merged again ("0 to run"),
    # whether or not feats.scp was deleted first.
    data = audio_dir(tmp_path / "train", tmp_path)
    assert make_fbank(tmp_path, data).returncode == 0
    if delete_feats_scp:
        (data / "feats.scp").unlink()
    proc = make_fbank(tmp_path, data, "--num-mel-bins", "40")
    assert proc.returncode == 0 and "(2 to run)" in proc.stdout
    assert delete_feats_scp or "num_mel_bins: 80 -> 40" in proc.stderr
    assert kaldiio.load_mat(read_kv(data / "feats.scp")["spk0-u0"]).shape[1] == 40


def test_rerun_after_an_audio_file_changed_recomputes_its_job_only(tmp_path):
    data = audio_dir(tmp_path / "train", tmp_path)
    assert make_fbank(tmp_path, data).returncode == 0
    write_tone(Path(read_kv(data / "wav.scp")["spk1-u2"]), seconds=0.7, seed=9)
    proc = make_fbank(tmp_path, data)
    assert proc.returncode == 0 and "audio:" in proc.stderr and "(1 to run)" in proc.stdout
    assert read_kv(data / "utt2num_frames")["spk1-u2"] == "68"


def test_rerun_with_the_same_settings_skips(tmp_path):
    data = audio_dir(tmp_path / "train", tmp_path)
    assert make_fbank(tmp_path, data).returncode == 0
    rerun = make_fbank(tmp_path, data)
    assert rerun.returncode == 0 and "is complete; skipping" in rerun.stdout


def test_a_dropped_test_utterance_named_by_trials_fails_stage_1(tmp_path):
    data = audio_dir(tmp_path / "test", tmp_path, utts=50)
    (data / "trials").write_text("spk0-u0 spk0-u1 target\nspk0-u0 spk1-u0 nontarget\n")
    write_tone(Path(read_kv(data / "wav.scp")["spk0-u1"]), seconds=0.05)  # too short: dropped
    proc = make_fbank(tmp_path, data, "--max-fail-frac", "0.05")
    assert proc.returncode == 1
    assert "trials line 1: names 'spk0-u1', which has no features" in proc.stderr
    assert no_complete_features(data)


def test_segments_are_refused_before_anything_is_written(tmp_path):
    data = audio_dir(tmp_path / "train", tmp_path)
    (data / "segments").write_text("spk0-u0 rec1 0.0 1.0\n")
    proc = make_fbank(tmp_path, data)
    assert proc.returncode == 1 and "segments are not supported" in proc.stderr
    assert no_complete_features(data) and not (data / "split2").exists() and not (tmp_path / "fbank").exists()


def test_an_empty_data_dir_is_refused(tmp_path):
    data = tmp_path / "empty"
    data.mkdir()
    for name in ("wav.scp", "utt2spk", "spk2utt"):
        (data / name).write_text("")
    proc = make_fbank(tmp_path, data)
    assert proc.returncode == 1 and "no utterances (an empty data dir" in proc.stderr
    assert no_complete_features(data)


def test_features_made_elsewhere_are_kept_with_a_note(tmp_path):
    data = write_feature_dir(tmp_path / "kaldi")
    write_kv(data / "wav.scp", {u: "/nonexistent.wav" for u in read_kv(data / "utt2spk")})
    proc = make_fbank(tmp_path, data)
    assert proc.returncode == 0 and "was not made by this stage" in proc.stderr


def test_make_fbank_takes_kaldis_one_argument_form(tmp_path):
    data = audio_dir(tmp_path / "train", tmp_path)
    run_script(ROOT / "steps" / "make_fbank.sh", "--nj", "1", data, cwd=tmp_path)
    assert (data / "log" / "make_fbank.1.log").is_file()
    assert all(v.startswith(str((data / "data").resolve())) for v in read_kv(data / "feats.scp").values())


def test_make_fbank_with_kaldis_run_pl_reruns_only_the_failed_job(tmp_path):
    data = audio_dir(tmp_path / "train", tmp_path, utts=4)
    run_script(ROOT / "utils" / "split_data_dir.py", data, 4)
    job3 = data / "split4" / "3" / "wav.scp"
    good = job3.read_text()
    job3.write_text("broken\n")
    proc = make_fbank(tmp_path, data, "--nj", "4", "--cmd", STANDIN_RUN_PL)
    assert proc.returncode == 1 and "1 / 4 failed" in proc.stderr and "make_fbank.3.log" in proc.stderr
    assert no_complete_features(data)
    job3.write_text(good)
    for n in (1, 2, 4):
        (data / "log" / f"make_fbank.{n}.log").unlink()
    proc = make_fbank(tmp_path, data, "--nj", "4", "--cmd", STANDIN_RUN_PL)
    assert proc.returncode == 0 and "(1 to run)" in proc.stdout
    assert sorted(p.name for p in (data / "log").glob("make_fbank.*.log")) == ["make_fbank.3.log"]
    assert not any(p.name.startswith("JOB=") for p in tmp_path.rglob("*"))
    assert len(read_kv(data / "feats.scp")) == 8


def test_run_job_ids_calls_the_runner_with_kaldi_ranges(tmp_path):
    proc = run_script(ROOT / "utils" / "run_job_ids.sh", f"{STANDIN_RUN_PL} --mem 2G", "1 2 4 5 7",
                      tmp_path / "log" / "x.JOB.log", "echo", "job JOB")
    assert proc.returncode == 0
    assert sorted(p.name for p in (tmp_path / "log").iterdir()) == ["x.1.log", "x.2.log", "x.4.log", "x.5.log", "x.7.log"]
    assert "job 4" in (tmp_path / "log" / "x.4.log").read_text()


def test_make_fbank_refuses_a_non_numeric_nj(tmp_path):
    data = audio_dir(tmp_path / "train", tmp_path)
    proc = make_fbank(tmp_path, data, "--nj", "four")
    assert proc.returncode == 1 and "--nj takes a whole number, not 'four'" in proc.stderr
    assert no_complete_features(data)


# ---------------------------------------------------------------------------
# data dirs

def small_dir(path):
    path.mkdir(parents=True, exist_ok=True)
    utts = {"a-1": "a", "a-2": "a", "b-1": "b"}
    write_kv(path / "utt2spk", utts)
    write_kv(path / "spk2utt", utt2spk_to_spk2utt(utts))
    return path


def test_a_utf8_byte_order_mark_is_named(tmp_path):
    d = small_dir(tmp_path / "d")
    (d / "utt2spk").write_bytes(b"\xef\xbb\xbf" + (d / "utt2spk").read_bytes())
    with pytest.raises(DataDirError, match=r"utt2spk line 1: starts with a UTF-8 byte-order mark"):
        validate_data_dir(d)


def test_bytes_that_are_not_utf8_are_named_by_line(tmp_path):
    d = small_dir(tmp_path / "d")
    (d / "utt2spk").write_bytes(b"a-1 a\na-2 \xe9a\nb-1 b\n")
    with pytest.raises(DataDirError, match=r"utt2spk line 2: bytes that are not UTF-8.*iconv"):
        read_kv(d / "utt2spk")


@pytest.mark.parametrize("name", ["utt2spk", "utt2dur", "utt2num_frames"])
def test_an_id_with_a_space_is_refused_at_its_line_with_the_fix(tmp_path, name):
    d = small_dir(tmp_path / "d")
    if name != "utt2spk":
        write_kv(d / name, {"a-1": "3", "a-2": "3", "b-1": "3"})
    lines = (d / name).read_text().splitlines()
    lines[1] = lines[1].replace("a-2", "a-2 x", 1)  # 'a-2 x': an utterance id with a space
    (d / name).write_text("\n".join(lines) + "\n")
    message = (rf"{name} line 2: 3 fields \('a-2' 'x' '(a|3)'\), expected 2 \('utt \w+'\): ids cannot hold whitespace; "
               rf"replace it in this id \(e.g. by '_'\) in every file of {d}")
    with pytest.raises(DataDirError, match=message):
        read_kv(d / name)
    proc = run_script(ROOT / "utils" / "validate_data_dir.py", d, check=False)
    assert proc.returncode == 1 and f"{name} line 2: 3 fields" in proc.stderr and "does not start with" not in proc.stderr
    before = (d / name).read_text()
    with pytest.raises(DataDirError, match=message):
        fix_data_dir(d)  # dropping the line would lose the utterance without a word
    assert (d / name).read_text() == before and not (d / ".backup").exists()


def test_an_empty_dir_does_not_validate(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "utt2spk").write_text("")
    (d / "spk2utt").write_text("")
    with pytest.raises(DataDirError, match="no utterances"):
        validate_data_dir(d)


@pytest.mark.parametrize("name,value,what", [("utt2dur", "abc", "a positive duration"),
                                             ("utt2dur", "-1.5", "a positive duration"),
                                             ("utt2num_frames", "0", "a positive whole number"),
                                             ("utt2num_frames", "12.5", "a positive whole number")])
def test_bad_duration_and_frame_values_are_named(tmp_path, name, value, what):
    d = small_dir(tmp_path / "d")
    write_kv(d / name, {"a-1": "3", "a-2": value, "b-1": "3"})
    with pytest.raises(DataDirError, match=rf"{name} line 2: 'a-2' has '{value}', not {what}"):
        validate_data_dir(d)


def test_a_self_trial_is_refused_naming_the_line(tmp_path):
    d = small_dir(tmp_path / "d")
    (d / "trials").write_text("a-1 a-2 target\na-2 a-2 target\na-1 b-1 nontarget\n")
    message = r"trials line 2: 'a-2' against itself \(a self-trial scores 1 .*remove the line\)"
    with pytest.raises(DataDirError, match=message):
        read_trials(d / "trials")
    with pytest.raises(DataDirError, match=r"is not valid:\n.*" + message):
        validate_data_dir(d)
    proc = run_script(ROOT / "utils" / "validate_data_dir.py", d, check=False)
    assert proc.returncode == 1 and "trials line 2: 'a-2' against itself" in proc.stderr


def test_a_command_in_feats_scp_is_refused_not_run(tmp_path):
    d = small_dir(tmp_path / "d")
    marker = tmp_path / "ran"
    write_kv(d / "feats.scp", {"a-1": f"touch {marker} |", "a-2": "x.ark:1", "b-1": "x.ark:2"})
    with pytest.raises(DataDirError, match=r"feats.scp line 1: 'a-1' is a command"):
        validate_data_dir(d)
    with pytest.raises(DataDirError, match="is a command"):
        load_features(f"touch {marker} |", "a-1")
    assert not marker.exists()


def test_fix_data_dir_stops_on_conflicting_duplicates_and_writes_nothing(tmp_path):
    d = small_dir(tmp_path / "d")
    (d / "wav.scp").write_text("a-1 x.wav\na-2 y.wav\na-1 z.wav\nb-1 w.wav\n")
    with pytest.raises(DataDirError, match=r"wav.scp lines 1 and 3: 'a-1' has two different values"):
        fix_data_dir(d)
    assert not (d / ".backup").exists() and "z.wav" in (d / "wav.scp").read_text()


def test_fix_data_dir_refuses_a_dir_with_segments_instead_of_emptying_it(tmp_path):
    d = small_dir(tmp_path / "d")
    (d / "segments").write_text("a-1 rec 0 1\n")
    before = (d / "utt2spk").read_text()
    with pytest.raises(DataDirError, match="segments are not supported"):
        fix_data_dir(d)
    assert (d / "utt2spk").read_text() == before


# ---------------------------------------------------------------------------
# config values

@pytest.mark.parametrize("override,message", [
    ("optim.lr=abc", "optim.lr must be a number, like its default 0.01; got 'abc'"),
    ("optim.epochs=0", r"optim.epochs=0 must be >= 1 \(at least one epoch\)"),
    ("optim.epochs=2.5", "optim.epochs must be a whole number"),
    ("data.chunk_frames=0", "data.chunk_frames=0 must be >= 1"),
    ("data.utts_per_speaker=1", r"data.utts_per_speaker=1 must be >= 2 \(SupCon needs a positive"),
    ("train.amp=maybe", "train.amp must be true or false"),
    ("loss.threshold=1.5", r"loss.threshold=1.5 must be in \[0, 1\]"),
    ("model.args=5", "model.args must be a mapping of keys"),
    ("loss.temperature=0.001", r"loss.temperature=0.001 must be in \[0.01, 1\] \(the learnable temperature"),
    ("orgate.top_k=-1", r"orgate.top_k=-1 must be >= 0 \(nearest speaker centroids .*; 0: off\)"),
    ("orgate.top_k=1.5", "orgate.top_k must be a whole number"),
    ("orgate.refit_every=-2", r"orgate.refit_every=-2 must be >= 0 \(epochs between fits"),
])
def test_bad_config_values_are_named(tiny_config, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(tiny_config, [override])


@pytest.mark.parametrize("text,message", [
    ("optim:\n  lr: 0.1\n  epochs: 3\n  lr: 0.2\n",
     r"c.yaml line 4: 'lr' appears twice in 'optim' \(first at line 2\); YAML would keep only the last: delete one"),
    ("optim:\n  lr: 0.1\ntrain: {seed: 1}\noptim:\n  epochs: 4\n",
     r"c.yaml line 4: section 'optim' appears twice \(first at line 1\); .*merge them into one"),
    ("model:\n  args: {channels: [8, 8, 24], channels: [8, 8, 8, 24]}\n",
     r"c.yaml line 2: 'channels' appears twice in 'model.args' \(first at line 2\)"),
])
def test_a_key_twice_in_a_config_file_is_refused_with_both_lines(tmp_path, text, message):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "c.yaml")


def test_a_key_twice_in_an_override_is_refused():
    with pytest.raises(ConfigError, match=r"override 'model.args=\{a: 1, a: 2\}' line 1: 'a' appears twice in 'model.args'"):
        load_config(None, ["model.args={a: 1, a: 2}"])


def test_the_strict_yaml_loader_stays_safe():
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.load("!!python/object/apply:os.system ['true']", Loader=StrictLoader)


def test_every_list_valued_key_has_its_element_types():
    lists = {(s, k) for s, keys in DEFAULTS.items() for k, v in keys.items() if isinstance(v, list)}
    assert lists == set(LISTS)


@pytest.mark.parametrize("override,message", [
    ("train.keep_epochs=5", r"train.keep_epochs must be a list of whole numbers .*; got 5 \(for one, write \[5\]\)"),
    ("train.keep_epochs=[10, x]", r"train.keep_epochs must be a list of whole numbers .*its element 2 is 'x'"),
    ("train.keep_epochs=[0]", r"its element 1, 0, is below 1"),
    ("augment.noise_snr=5", r"augment.noise_snr must be a list of 2 numbers \(an SNR range in dB, \[low, high\]\)"),
    ("augment.music_snr=[5]", r"augment.music_snr must be a list of 2 numbers .*got 1: \[5\]"),
    ("augment.babble_snr=[20, 13]", r"augment.babble_snr=\[20, 13\] must be .*the lower bound first"),
    ("augment.babble_speakers=[3, 7.5]", r"augment.babble_speakers must be a list of 2 whole numbers"),
    ("augment.babble_speakers=[0, 3]", r"its element 1, 0, is below 1"),
])
def test_list_valued_keys_are_checked_element_by_element(tiny_config, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(tiny_config, [override])


def test_good_list_values_are_kept_as_written(tiny_config):
    config = load_config(tiny_config, ["train.keep_epochs=[2.0, 5]", "augment.noise_snr=[1e-3, 5]"])
    assert config["train"]["keep_epochs"] == [2, 5] and config["augment"]["noise_snr"] == [0.001, 5]
    assert config["augment"]["music_snr"] == [5, 15] and isinstance(config["augment"]["music_snr"][0], int)


def test_keep_epochs_not_a_list_stops_train_py_before_training(tmp_path, tiny_config):
    data = write_feature_dir(tmp_path / "data")
    exp = tmp_path / "exp"
    proc = run_script(ROOT / "steps" / "train.py", "--set", "train.keep_epochs=5", tiny_config, data, exp, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "train.py: --set train.keep_epochs=5: train.keep_epochs must be a list of whole numbers" in proc.stderr
    assert not exp.exists()


def test_1e_minus_3_in_yaml_is_a_float(tmp_path, tiny_config):
    # PyYAML (YAML 1.1) reads 1e-3 as a string; the default's type decides.
    path = tmp_path / "c.yaml"
    path.write_text(tiny_config.read_text().replace("lr: 0.01", "lr: 1e-3"))
    assert load_config(path)["optim"]["lr"] == 0.001


# ---------------------------------------------------------------------------
# training

def trained_exp(tmp_path, tiny_config):
    """An exp dir whose data record says it was trained on data A."""
    train = training_stage
    config = load_config(tiny_config)
    data = write_feature_dir(tmp_path / "a")
    exp = tmp_path / "exp"
    record = train.training_data_settings(config, str(data))
    train.check_training_data(exp, record, str(data))
    train.record_training_data(exp, record)
    return train, config, exp


def test_training_on_other_data_in_a_used_exp_dir_stops_naming_the_difference(tmp_path, tiny_config):
    train, config, exp = trained_exp(tmp_path, tiny_config)
    other = write_feature_dir(tmp_path / "b", seed=1)
    with pytest.raises(ConfigError, match=r"was trained on other data than .*\(feats: .*utt2spk|feats: "):
        train.check_training_data(exp, train.training_data_settings(config, str(other)), str(other))


def test_a_finished_run_is_not_skipped_for_other_data(tmp_path, tiny_config):
    a, b = write_feature_dir(tmp_path / "a"), write_feature_dir(tmp_path / "b", seed=1)
    exp = tmp_path / "exp"
    run_script(ROOT / "steps" / "train.py", "--set", "optim.epochs=1", "--set", "train.average_last=1",
               tiny_config, a, exp)
    final = (exp / "models" / "final.pt").stat().st_mtime_ns
    proc = run_script(ROOT / "steps" / "train.py", "--set", "optim.epochs=1", "--set", "train.average_last=1",
                      tiny_config, b, exp, check=False)
    assert proc.returncode == 1 and "was trained on other data than" in proc.stderr
    assert "skipping" not in proc.stdout + proc.stderr and (exp / "models" / "final.pt").stat().st_mtime_ns == final


@pytest.mark.parametrize("override,message", [
    ("data.speakers_per_batch=100000", "data.speakers_per_batch=100000: the training set has only 6 speakers "
                                       "(a batch draws distinct speakers); set it to 6 or fewer"),
    ("model.args.channels=[8,8]", "model.args: model 'ecapa_tdnn' cannot be built with channels=[8, 8], "),
    ("model.name=resnet999", "model.name: unknown model 'resnet999' (did you mean 'resnet34'?); "
                             "known models: ecapa_tdnn, resnet34, resnet34_wide"),
    ("loss.type=foo", "loss.type='foo' is not a loss; choose one of supcon, soft, hard, ascent"),
])
def test_config_values_the_run_cannot_use_stop_train_py_naming_the_key(tmp_path, tiny_config, override, message):
    data = write_feature_dir(tmp_path / "data")
    exp = tmp_path / "exp"
    proc = run_script(ROOT / "steps" / "train.py", "--set", override, tiny_config, data, exp, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"train.py: {message}" in proc.stderr
    assert not exp.exists()


def test_training_resumes_on_the_same_data(tmp_path, tiny_config):
    train, config, exp = trained_exp(tmp_path, tiny_config)
    again = train.training_data_settings(config, str(tmp_path / "a"))
    train.check_training_data(exp, again, str(tmp_path / "a"))  # no error


def test_a_changed_utterance_list_counts_as_other_data(tmp_path, tiny_config):
    train, config, exp = trained_exp(tmp_path, tiny_config)
    for name in ("utt2spk", "utt2num_frames", "feats.scp"):
        table = read_kv(tmp_path / "a" / name)
        del table["spk00-u00"]
        write_kv(tmp_path / "a" / name, table)
    write_kv(tmp_path / "a" / "spk2utt", utt2spk_to_spk2utt(read_kv(tmp_path / "a" / "utt2spk")))
    with pytest.raises(ConfigError, match=r"utt2spk: "):
        train.check_training_data(exp, train.training_data_settings(config, str(tmp_path / "a")), "a")


def test_held_out_trials_naming_utterances_without_features_stop_before_training(tmp_path, tiny_config):
    train = write_feature_dir(tmp_path / "train")
    valid = write_feature_dir(tmp_path / "valid", num_speakers=2, utts_per_speaker=2, seed=3)
    (valid / "trials").write_text("spk00-u00 spk00-u01 target\nspk00-u00 spk01-u00 nontarget\n")
    scp = read_kv(valid / "feats.scp")
    del scp["spk00-u01"]
    write_kv(valid / "feats.scp", scp)
    exp = tmp_path / "exp"
    proc = run_script(ROOT / "steps" / "train.py", "--valid-data", valid, tiny_config, train, exp, check=False)
    assert proc.returncode == 1 and "feats.scp: no entry for 1 utterance(s) of utt2spk, e.g. 'spk00-u01'" in proc.stderr
    assert not exp.exists()


def test_gpus_without_cuda_stop_instead_of_training_on_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(TrainError, match=r"--gpus 0,1: torch sees 0 CUDA device\(s\)"):
        training_stage.check_gpus("0,1")


def test_features_of_another_dimension_are_refused_before_a_shape_error(tmp_path, tiny_config):
    data = tmp_path / "mfcc"
    data.mkdir()
    utt2spk = {}
    with kaldiio.WriteHelper(f"ark,scp:{data / 'feats.ark'},{data / 'unsorted.scp'}") as writer:
        for s in range(4):
            for u in range(2):
                utt = f"s{s}-u{u}"
                writer(utt, np.random.default_rng(s).normal(size=(60, 30)).astype(np.float32))
                utt2spk[utt] = f"s{s}"
    write_kv(data / "feats.scp", dict(line.split() for line in (data / "unsorted.scp").read_text().splitlines()))
    write_kv(data / "utt2spk", utt2spk)
    write_kv(data / "spk2utt", utt2spk_to_spk2utt(utt2spk))
    write_kv(data / "utt2num_frames", {u: 60 for u in utt2spk})
    with pytest.raises(DataDirError, match=r"'s0-u0' has 30-dim features, the model reads 80"):
        Trainer(load_config(tiny_config), data, TrainingOutputs(tmp_path / "exp"), show_progress=False)
    assert not (tmp_path / "exp" / "models").exists()


def test_chunks_longer_than_every_utterance_are_warned_of_with_the_longest(tmp_path, tiny_config, caplog):
    data = write_feature_dir(tmp_path / "data", frames=(40, 60))
    longest = max(int(n) for n in read_kv(data / "utt2num_frames").values())
    caplog.set_level("WARNING")
    Trainer(load_config(tiny_config, [f"data.chunk_frames={longest}"]), data, TrainingOutputs(tmp_path / "exp"),
            show_progress=False)
    assert "tiled" not in caplog.text
    Trainer(load_config(tiny_config, ["data.chunk_frames=300"]), data, TrainingOutputs(tmp_path / "exp"),
            show_progress=False)
    assert (f"data.chunk_frames=300 is longer than every training utterance (the longest has {longest} frames): "
            "every chunk will be its utterance tiled (repeated) to length") in caplog.text


def test_non_finite_training_features_name_the_utterance(tmp_path):
    path = tmp_path / "f.ark"
    with kaldiio.WriteHelper(f"ark,scp:{path},{tmp_path / 'f.scp'}") as writer:
        writer("spk-x", np.full((20, 80), np.nan, np.float32))
    entry = read_kv(tmp_path / "f.scp")["spk-x"]
    with pytest.raises(DataDirError, match="features of 'spk-x' .* hold NaN or inf"):
        load_features(entry, "spk-x")


def test_a_plain_state_dict_is_not_taken_for_a_checkpoint(tmp_path, tiny_config):
    config = load_config(tiny_config)
    model = build_model(config["model"]["name"], **config["model"]["args"])
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(TrainError, match="a bare state_dict, not a checkpoint of steps/train.py"):
        model_from_checkpoint(tmp_path / "bare.pt")


# ---------------------------------------------------------------------------
# stages 4 and 6

def test_a_model_with_nan_weights_stops_extraction_naming_the_utterance(tmp_path, tiny_config):
    data = write_feature_dir(tmp_path / "d", num_speakers=1, utts_per_speaker=1)
    config = load_config(tiny_config)
    model = build_model(config["model"]["name"], **config["model"]["args"])
    with torch.no_grad():
        model.fc.weight.fill_(float("nan"))
    entries = list(read_kv(data / "feats.scp").values())
    frames = [int(v) for v in read_kv(data / "utt2num_frames").values()]
    with pytest.raises(ValueError, match="embedding of 'spk00-u00' is not finite"):
        embed_utterances(model, entries, frames, utts=["spk00-u00"])


def write_vectors(path, vectors):
    with kaldiio.WriteHelper(f"ark,scp:{path}.ark,{path}.scp") as writer:
        for utt, v in vectors.items():
            writer(utt, np.asarray(v, np.float32))
    return f"{path}.scp"


def test_a_nan_embedding_is_named(tmp_path):
    scp = write_vectors(tmp_path / "xvector", {"a-1": [1.0, 2.0], "a-2": [np.nan, 0.0]})
    with pytest.raises(DataDirError, match="the embedding of 'a-2' is not finite"):
        load_embeddings(scp)


def test_a_command_in_xvector_scp_is_refused_not_run(tmp_path):
    marker = tmp_path / "ran"
    (tmp_path / "xvector.scp").write_text(f"a-1 touch {marker} |\n")
    with pytest.raises(DataDirError, match="'a-1' is a command"):
        load_embeddings(tmp_path / "xvector.scp")
    assert not marker.exists()


@pytest.mark.parametrize("text,message", [("[ 0.1 abc ]", "not a vector of numbers"),
                                          ("0.1 0.2", "not a Kaldi text vector"),
                                          ("[ nan 1 ]", "holds NaN or inf"),
                                          ("[ ]", "empty")])
def test_a_corrupt_mean_vec_is_named(tmp_path, text, message):
    (tmp_path / "mean.vec").write_text(text)
    with pytest.raises(DataDirError, match=rf"mean.vec: .*{message}"):
        read_vector(tmp_path / "mean.vec")


def test_extraction_rerun_with_other_crops_re_extracts(tmp_path, tiny_config):
    data = write_feature_dir(tmp_path / "data", num_speakers=2, utts_per_speaker=2)
    config = load_config(tiny_config)
    torch.manual_seed(0)
    model = build_model(config["model"]["name"], **config["model"]["args"])
    save_atomic({"model": model.state_dict(), "config": config}, tmp_path / "final.pt")
    out = tmp_path / "emb"
    step = ROOT / "steps" / "extract_embeddings.sh"
    run_script(step, "--nj", "2", tmp_path / "final.pt", data, out, cwd=tmp_path)
    whole = kaldiio.load_scp(str(out / "xvector.scp"))["spk00-u00"].copy()
    (out / "xvector.scp").unlink()
    proc = run_script(step, "--nj", "2", "--num-crops", "3", "--crop-frames", "50", tmp_path / "final.pt", data, out,
                      cwd=tmp_path)
    assert "(2 to run)" in proc.stdout
    crops = kaldiio.load_scp(str(out / "xvector.scp"))["spk00-u00"]
    assert not np.allclose(whole, crops)
    proc = run_script(step, "--nj", "2", tmp_path / "final.pt", data, out, cwd=tmp_path)
    assert "num_crops: 3 -> 0" in proc.stderr


def test_reliability_rerun_with_another_estimator_refits(tmp_path, monkeypatch, caplog):
    from tests.test_reliability_stage import noisy_dir_with_embeddings

    data, scp, _ = noisy_dir_with_embeddings(tmp_path, speakers=6, utts=12)
    out = tmp_path / "rel"
    reliability = load_step("reliability")  # in this process: no second interpreter start
    caplog.set_level("INFO")
    for estimator in ("histogram", "global"):
        monkeypatch.setattr("sys.argv", ["reliability.py", "--estimator", estimator, str(scp), str(data), str(out)])
        assert reliability.main() == 0
    assert "estimator: 'histogram' -> 'global'" in caplog.text
    assert '"estimator": "global"' in (out / "report.json").read_text()


# ---------------------------------------------------------------------------
# recipe and step options

def test_run_sh_refuses_a_stage_that_is_not_a_number():
    proc = run_script("bash", "run.sh", "--stage", "abc", cwd=ROOT / "egs" / "mini", check=False)
    assert proc.returncode == 1 and "option --stage takes a whole number" in proc.stderr


def test_run_sh_refuses_a_noise_rate_outside_0_1():
    proc = run_script("bash", "run.sh", "--noise-rate", "1.5", "--stage", "6", cwd=ROOT / "egs" / "mini", check=False)
    assert proc.returncode == 1 and "--noise-rate must be in [0, 1)" in proc.stderr


def test_run_sh_refuses_open_noise_without_outsiders():
    proc = run_script("bash", "run.sh", "--noise-type", "open", "--stage", "6", cwd=ROOT / "egs" / "mini", check=False)
    assert proc.returncode == 1 and "--noise-type open needs --num-outsider-speakers" in proc.stderr


def test_simulate_noise_refuses_rate_0(tmp_path):
    d = small_dir(tmp_path / "d")
    proc = run_script(ROOT / "steps" / "simulate_noise.py", "0.0", d, tmp_path / "noisy", check=False)
    assert proc.returncode == 1 and "rate 0.0 must be in (0, 1)" in proc.stderr
    assert not (tmp_path / "noisy").exists()
