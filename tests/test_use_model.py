"""Using a trained model: purl.load_model, the purl command, stage 6's threshold."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import resample_poly

import purl
from purl.api import ModelError, features_of
from purl.calibration import LinearCalibration
from purl.cli import main as purl_main
from purl.config import load_config
from purl.data.datadir import read_kv, utt2spk_to_spk2utt, validate_data_dir, write_kv
from purl.embed import embed_utterances
from purl.metrics import compute_eer
from purl.models import build_model
from purl.stages.calibrate import write_calibration_record
from purl.stages.fbank import make_fbank_job
from purl.stages.score import score_trial_lists
from purl.training.checkpoint import save_atomic
from tests.conftest import ROOT, recipe_env, write_tone


def tiny_exp(tmp_path, tiny_config, name="tiny"):
    """exp/<name>/models/final.pt of a randomly initialised tiny ECAPA-TDNN."""
    config = load_config(tiny_config)
    torch.manual_seed(0)
    model = build_model(config["model"]["name"], **config["model"]["args"])
    final = tmp_path / "exp" / name / "models" / "final.pt"
    final.parent.mkdir(parents=True)
    save_atomic({"model": model.state_dict(), "config": config}, final)
    return final


def wav_data_dir(path, speakers=3, utts=4):
    """wav files of a few seconds and a data dir (wav.scp, utt2spk, spk2utt) over them."""
    wav, utt2spk = {}, {}
    for s in range(speakers):
        for u in range(utts):
            utt = f"spk{s}-u{u}"
            wav[utt] = str(write_tone(path / "wav" / f"spk{s}" / f"u{u}.wav", seconds=1 + 0.25 * u, seed=s * utts + u))
            utt2spk[utt] = f"spk{s}"
    data = path / "data"
    data.mkdir()
    write_kv(data / "wav.scp", wav)
    write_kv(data / "utt2spk", utt2spk)
    write_kv(data / "spk2utt", utt2spk_to_spk2utt(utt2spk))
    return data, wav


def write_threshold(final, mean=None, calibration=None):
    """Stage 6's scoring of a 4-trial list of made-up embeddings into exp/<model>/scores;
    with ``calibration`` (scale, offset, p_target), the record steps/calibrate.py adds."""
    exp = final.parent.parent
    rng = np.random.default_rng(0)
    emb = {f"s{s}-u{u}": rng.normal(size=16) + 3 * s for s in range(2) for u in range(2)}
    with kaldiio.WriteHelper(f"ark,scp:{exp / 'emb.ark'},{exp / 'emb.scp'}") as writer:
        for utt, v in emb.items():
            writer(utt, v.astype(np.float32))
    (exp / "trials").write_text("s0-u0 s0-u1 target\ns0-u0 s1-u0 nontarget\ns1-u0 s1-u1 target\ns0-u1 s1-u1 nontarget\n")
    score_trial_lists(exp / "emb.scp", [exp / "trials"], exp / "scores", mean=mean)
    if calibration is not None:
        scale, offset, p_target = calibration
        write_calibration_record(exp / "scores" / "threshold.json",
                                 LinearCalibration(np.array([scale]), offset, p_target), source="made-up trials")
    return json.loads((exp / "scores" / "threshold.json").read_text())


def test_stage6_stores_the_eer_threshold_and_the_mean_it_scored_with(tmp_path, tiny_config):
    final = tiny_exp(tmp_path, tiny_config)
    mean = np.linspace(-1, 1, 16).astype(np.float32)
    info = write_threshold(final, mean)
    scores = [float(line.split()[2]) for line in (final.parent.parent / "scores" / "tiny.cosine.score").read_text().splitlines()]
    eer, threshold = compute_eer(np.array(scores), np.array([1, 0, 1, 0]))
    assert info["threshold"] == pytest.approx(threshold) and info["eer"] == pytest.approx(eer)
    np.testing.assert_allclose(info["mean"], mean, rtol=1e-6)
    model = purl.load_model(final.parent.parent)  # the exp dir works as well as final.pt
    assert model.threshold == pytest.approx(threshold)
    assert model.accept(threshold) and not model.accept(threshold - 1e-6)
    np.testing.assert_allclose(model.mean, mean, rtol=1e-6)


def test_a_file_embeds_as_stage_6_extracts_it_and_a_waveform_as_its_file(tmp_path, tiny_config):
    final = tiny_exp(tmp_path, tiny_config)
    data, wav = wav_data_dir(tmp_path, speakers=1, utts=3)
    (tmp_path / "fbank").mkdir()
    make_fbank_job(wav, tmp_path / "fbank" / "raw_fbank.1.ark")  # stage 1's job: compressed features
    feats = read_kv(tmp_path / "fbank" / "raw_fbank.1.scp", check_sorted=False)
    frames = read_kv(tmp_path / "fbank" / "raw_fbank.1.utt2num_frames", check_sorted=False)
    model = purl.load_model(final)
    stage6 = embed_utterances(model.encoder, [feats[u] for u in wav], [int(frames[u]) for u in wav])
    ours = np.stack([model.embed(path) for path in wav.values()])
    np.testing.assert_allclose(ours, stage6, rtol=1e-5, atol=1e-6)
    samples, rate = sf.read(wav["spk0-u0"], dtype="int16")
    np.testing.assert_allclose(model.embed(samples, sample_rate=rate), ours[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.embed(samples / 32768.0, sample_rate=rate), ours[0], rtol=1e-4, atol=1e-5)


def test_other_sample_rates_are_resampled_to_16k(tmp_path, tiny_config):
    model = purl.load_model(tiny_exp(tmp_path, tiny_config))
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 2) / 16000
    # energy in every mel band below 3.5 kHz, what an 8 kHz file keeps
    x = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 7)) for f in range(100, 3500, 37)) * 0.006
    x *= 1 + 0.8 * np.sin(2 * np.pi * 3 * t)
    sf.write(tmp_path / "8k.wav", resample_poly(x, 1, 2), 8000, subtype="PCM_16")
    at16k = features_of(model.load_audio(x.astype(np.float32), sample_rate=16000))
    from8k = features_of(model.load_audio(tmp_path / "8k.wav"))
    assert from8k.shape == at16k.shape
    low_bands = slice(0, 45)  # centres below about 2.4 kHz
    assert np.abs(from8k[:, low_bands] - at16k[:, low_bands]).mean() < 0.01 * np.abs(at16k[:, low_bands]).mean()
    assert model.embed(tmp_path / "8k.wav").shape == (16,)
    with pytest.raises(ModelError, match="needs its sample_rate"):
        model.embed(x)


def test_without_stage_6_there_is_no_decision(tmp_path, tiny_config):
    model = purl.load_model(tiny_exp(tmp_path, tiny_config))
    assert model.threshold is None and model.mean is None and not model.calibrated
    with pytest.raises(ModelError, match="no threshold stored"):
        model.accept(0.5)


def test_a_threshold_file_without_calibration_loads_and_says_so(tmp_path, tiny_config, caplog):
    final = tiny_exp(tmp_path, tiny_config)
    info = write_threshold(final)  # stage 6 as it was before calibration: no "calibration" entry
    assert "calibration" not in info
    model = purl.load_model(final)
    assert "has no calibration" in caplog.text and "calibration: missing" in repr(model)
    a, b = np.ones(16, np.float32), np.linspace(-1, 1, 16).astype(np.float32)
    assert model.score(a, b) == model.cosine(a, b)  # scores stay cosines
    assert model.accept(info["threshold"]) and model.accept(info["threshold"], at="eer")
    with pytest.raises(ModelError, match="no calibration stored for this model, so no decision at a prior"):
        model.accept(0.3, p_target=0.01)
    with pytest.raises(ModelError, match="no calibration stored"):
        model.llr(0.3)


def test_a_calibrated_model_scores_llrs_and_decides_at_the_bayes_threshold(tmp_path, tiny_config):
    final = tiny_exp(tmp_path, tiny_config)
    info = write_threshold(final, calibration=(10.0, -4.0, 0.05))
    model = purl.load_model(final)
    assert model.calibrated and model.calibration["p_target"] == 0.05
    a, b = np.ones(16, np.float32), np.linspace(-1, 2, 16).astype(np.float32)
    cosine = model.cosine(a, b)
    assert model.score(a, b) == pytest.approx(10.0 * cosine - 4.0)
    # the Bayes threshold of the fitted prior by default, of any prior on request
    assert model.decision_threshold() == pytest.approx(np.log(19))
    assert model.accept(np.log(19)) and not model.accept(np.log(19) - 1e-9)
    assert model.accept(4.0, p_target=0.05) and not model.accept(4.0, p_target=0.01)  # log 99 = 4.6
    assert model.accept(1.0, p_target=0.01, c_fa=1.0, c_miss=200.0)  # log(99 / 200) < 0
    # the EER threshold stays available, in LLR units
    eer_llr = 10.0 * info["threshold"] - 4.0
    assert model.accept(eer_llr, at="eer") and not model.accept(eer_llr - 1e-6, at="eer")
    with pytest.raises(ModelError, match="at='median'"):
        model.accept(0.0, at="median")
    np.testing.assert_allclose(model.score_embeddings(np.stack([a, b]), np.stack([b, b])),
                               model.llr(model.cosines(np.stack([a, b]), np.stack([b, b]))))


def test_a_threshold_file_with_a_broken_calibration_is_refused(tmp_path, tiny_config):
    final = tiny_exp(tmp_path, tiny_config)
    write_threshold(final, calibration=(-1.0, 0.0, 0.05))  # a falling LLR: a sign error somewhere
    with pytest.raises(ModelError, match="rerun steps/calibrate.py"):
        purl.load_model(final)


def test_the_scoring_checkpoint_alone_scores_as_stage_6(tmp_path, tiny_config):
    from purl.stages.calibrate import write_scoring_checkpoint

    final = tiny_exp(tmp_path, tiny_config)
    write_threshold(final, np.linspace(-1, 1, 16).astype(np.float32), calibration=(10.0, -4.0, 0.05))
    exp = final.parent.parent
    elsewhere = tmp_path / "elsewhere" / "model.pt"  # only the one file, away from exp/
    elsewhere.parent.mkdir()
    shutil.copy(write_scoring_checkpoint(exp / "scores"), elsewhere)
    bare, stage6 = purl.load_model(elsewhere), purl.load_model(final)
    assert bare.calibrated and bare.calibration == stage6.calibration and bare.threshold == stage6.threshold
    emb = kaldiio.load_scp(str(exp / "emb.scp"))
    lines = (exp / "scores" / "tiny.cosine.score").read_text().splitlines()
    for a, b, score in (line.split()[:3] for line in lines):
        assert bare.cosine(emb[a], emb[b]) == pytest.approx(float(score), abs=1e-5)
        assert bare.score(emb[a], emb[b]) == stage6.score(emb[a], emb[b])
    # exports carry the same: the mean, the EER threshold and the calibration
    import onnx

    assert purl_main(["export", str(elsewhere), str(tmp_path / "m.onnx"), "--format", "onnx"]) == 0
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    stored = json.loads(meta["purl_scoring"])
    np.testing.assert_allclose(stored["mean"], stage6.mean, rtol=1e-6)
    assert stored["threshold"] == stage6.threshold and stored["calibration"] == stage6.calibration
    assert purl_main(["export", str(elsewhere), str(tmp_path / "m.ts"), "--format", "torchscript"]) == 0
    extra = {"purl_scoring": ""}
    with pytest.warns(DeprecationWarning):
        torch.jit.load(str(tmp_path / "m.ts"), _extra_files=extra)
    assert json.loads(extra["purl_scoring"]) == stored


def test_an_exp_dir_or_its_models_dir_loads_the_scoring_checkpoint_and_a_bare_final_pt_says_so(
        tmp_path, tiny_config, caplog, capsys):
    import os

    from purl.api import checkpoint_path
    from purl.stages.calibrate import write_scoring_checkpoint

    final = tiny_exp(tmp_path, tiny_config)
    exp = final.parent.parent
    assert checkpoint_path(exp) == final  # before stage 6
    write_threshold(final, np.linspace(-1, 1, 16).astype(np.float32), calibration=(10.0, -4.0, 0.05))
    scoring = write_scoring_checkpoint(exp / "scores")
    before = final.read_bytes()
    assert checkpoint_path(exp) == checkpoint_path(exp / "models") == scoring
    assert final.read_bytes() == before  # final.pt as training left it
    # a copied final.pt alone: no mean, a warning at its first score (not at embedding) naming the file to copy
    bare = tmp_path / "copied" / "final.pt"
    bare.parent.mkdir()
    shutil.copy(final, bare)
    caplog.clear()
    model = purl.load_model(bare)
    assert model.mean is None
    a, b = (str(write_tone(tmp_path / f"{n}.wav", seconds=1.5, seed=n)) for n in range(2))
    emb = model.embed(a)
    assert "final_scoring.pt" not in caplog.text
    model.score(emb, emb)
    assert "final_scoring.pt" in caplog.text and "plain cosines" in caplog.text
    capsys.readouterr()
    assert purl_main(["compare", str(bare), a, b]) == 0
    assert "final_scoring.pt" in capsys.readouterr().out
    # a copied final_scoring.pt decides as the exp dir does
    copied = tmp_path / "copied" / "model.pt"
    shutil.copy(scoring, copied)
    outputs = []
    for model in (exp, exp / "models", copied):
        assert purl_main(["compare", str(model), a, b]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] == outputs[2] and outputs[0].startswith("llr ")
    # a final.pt newer than final_scoring.pt (retrained, not yet scored) is the one loaded
    os.utime(final, ns=(scoring.stat().st_mtime_ns + 10**9,) * 2)
    assert checkpoint_path(exp) == final


def test_purl_lists_its_api_names_and_imports_them_on_first_use():
    code = ("import sys, purl, purl.api as api; names = set(dir(purl)); "
            "print('torch' in sys.modules, set(purl.__all__) <= names, sorted(purl.__all__) == sorted(api.__all__))")
    proc = subprocess.run([sys.executable, "-c", code], env=recipe_env(), capture_output=True, text=True)
    assert proc.stdout.split() == ["True", "True", "True"], proc.stderr
    code = "import sys, purl; print(sorted(set(purl.__all__) & set(dir(purl))), 'torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], env=recipe_env(), capture_output=True, text=True)
    assert proc.stdout.strip() == "['AudioError', 'ModelError', 'SpeakerModel', 'load_model'] False", proc.stderr
    assert purl.load_model is purl.api.load_model


def test_compare_and_score_import_no_heavy_module_they_do_not_use():
    """torch is needed; sklearn, matplotlib, scipy.signal and scipy.special (seconds together) are not."""
    code = ("import sys, purl.cli, purl.api; "
            "print(sorted(m for m in ('sklearn', 'matplotlib', 'scipy.signal', 'scipy.special') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert proc.stdout.strip() == "[]"


def test_the_command_sets_passive_openmp_threads_before_torch_loads():
    code = "import os; os.environ.pop('OMP_WAIT_POLICY', None); import purl.cli; print(os.environ['OMP_WAIT_POLICY'])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert proc.stdout.strip() == "PASSIVE"


def test_import_purl_leaves_the_allocator_alone():
    code = "import ctypes, purl, purl.api; assert 'purl.allocator' not in __import__('sys').modules; print('ok')"
    proc = subprocess.run([sys.executable, "-c", code], env=recipe_env(), capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


OWN_DATA_DOC = ROOT / "docs" / "own_data.md"  # "Your own corpus" and "Use a trained model" in full


def doc_section(path, section: str) -> str:
    """The text under the heading ``## {section}`` of the markdown file ``path``, up to the next ``## ``."""
    text = path.read_text()
    assert f"## {section}\n" in text, f"{path} has no section '## {section}'"
    return text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]


def readme_example() -> str:
    """The Python block of the "Use a trained model" section (docs/own_data.md; the README shows it too)."""
    return re.search(r"```python\n(.*?)```", doc_section(OWN_DATA_DOC, "Use a trained model"), re.S).group(1)


def run_readme_example(python: str, cwd, env) -> str:
    """Runs the README's example where its model and wav files exist; returns its output."""
    proc = subprocess.run([python, "-c", readme_example()], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def readme_example_files(cwd, final) -> None:
    """The files the README's example names, made from ``final`` and tones."""
    code = readme_example()
    model_path = cwd / re.search(r'load_model\("([^"]+)"\)', code).group(1)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    model_path.write_bytes(final.read_bytes())
    write_threshold(model_path)
    for n, name in enumerate(re.findall(r'embed\("([^"]+)"\)', code)):
        x = np.sin(2 * np.pi * (150 + 90 * n) * np.arange(24000) / 16000) * 0.3
        sf.write(cwd / name, x, 16000, format=name.rsplit(".", 1)[1].upper(), subtype="PCM_16")


def test_readme_example_runs(tmp_path, tiny_config):
    final = tiny_exp(tmp_path, tiny_config)
    readme_example_files(tmp_path, final)
    out = run_readme_example(sys.executable, tmp_path, recipe_env())
    assert re.fullmatch(r"score -?\d+\.\d{3}: (same|different) speakers?\n", out)


# --- the purl command, in process (tests/test_install.py runs the installed one)

def test_embed_writes_kaldi_vectors_and_npy_in_input_order(tmp_path, tiny_config, capsys):
    final = tiny_exp(tmp_path, tiny_config)
    _, wav = wav_data_dir(tmp_path, speakers=1, utts=2)
    files = list(wav.values())[::-1]
    assert purl_main(["embed", str(final), *files, "--out", str(tmp_path / "e" / "x.ark")]) == 0
    vectors = kaldiio.load_scp(str(tmp_path / "e" / "x.scp"))
    assert list(vectors) == files
    assert purl_main(["embed", str(final), "--out", str(tmp_path / "x.npy"), *files]) == 0  # options anywhere
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), np.stack([vectors[f] for f in files]))
    assert (tmp_path / "x.utts").read_text().split() == files


def test_unreadable_audio_is_named_and_nothing_is_written(tmp_path, tiny_config, capsys):
    final = tiny_exp(tmp_path, tiny_config)
    good = write_tone(tmp_path / "good.wav")
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really")
    scp = tmp_path / "wav.scp"
    scp.write_text(f"a {good}\nb {tmp_path / 'bad.wav'}\n")
    assert purl_main(["embed", str(final), "--wav-scp", str(scp), "--out", str(tmp_path / "x.ark")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"purl embed: {scp}: b: ") and "bad.wav" in err
    assert not list(tmp_path.glob("x.*"))


def wav_trials(tmp_path, lines: list[str]) -> tuple[Path, dict[str, str], list[str]]:
    """wav files of 2 speakers x 2 utterances under tmp_path/wav, and tmp_path/trials.txt of
    ``lines`` with {0}..{3} standing for the files' paths relative to tmp_path/wav."""
    _, wav = wav_data_dir(tmp_path, speakers=2, utts=2)
    rel = [str(Path(p).relative_to(tmp_path / "wav")) for p in wav.values()]
    trials = tmp_path / "trials.txt"
    trials.write_text("".join(line.format(*rel) + "\n" for line in lines))
    return trials, wav, rel


def test_score_writes_scores_and_metrics_and_names_a_bad_trial_line(tmp_path, tiny_config, capsys):
    final = tiny_exp(tmp_path, tiny_config)
    trials, wav, rel = wav_trials(tmp_path, ["{0} {1} target", "{0} {2} nontarget", "{3} {2} target"])
    out = tmp_path / "s.score"
    assert purl_main(["score", str(final), str(trials), "--wav-root", str(tmp_path / "wav"), "--out", str(out)]) == 0
    lines = [line.split() for line in out.read_text().splitlines()]
    assert lines == [[rel[0], rel[1], lines[0][2]], [rel[0], rel[2], lines[1][2]], [rel[3], rel[2], lines[2][2]]]
    model = purl.load_model(final)
    assert float(lines[1][2]) == pytest.approx(model.score(wav["spk0-u0"], wav["spk1-u0"]), abs=1e-6)
    assert set(json.loads((tmp_path / "s.score.json").read_text())) >= {"eer_percent", "min_dcf_0.01", "min_dcf_0.05"}
    printed = capsys.readouterr().out
    assert "EER" in printed and "no decision: this model has no scores/threshold.json" in printed  # no column
    assert not (tmp_path / "s.llr").exists()
    # a calibrated model: the same cosines with a decision at the Bayes threshold, and their LLRs beside
    # them with Cllr and the actual DCF
    write_threshold(final, calibration=(10.0, -4.0, 0.05))
    assert purl_main(["score", str(final), str(trials), "--wav-root", str(tmp_path / "wav"), "--out", str(out)]) == 0
    again = [line.split() for line in out.read_text().splitlines()]
    assert [line[:3] for line in again] == lines
    llrs = [float(line.split()[2]) for line in (tmp_path / "s.llr").read_text().splitlines()]
    assert llrs == pytest.approx([10.0 * float(line[2]) - 4.0 for line in lines], abs=1e-4)
    assert [line[3] for line in again] == ["accept" if v >= np.log(19) else "reject" for v in llrs]
    assert set(json.loads((tmp_path / "s.score.json").read_text())) >= {"cllr", "min_cllr", "act_dcf_0.05"}
    printed = capsys.readouterr().out
    assert "Cllr" in printed and "trials accepted (same speaker): llr >= 2.9444, the Bayes threshold" in printed
    trials.write_text(f"{rel[0]} {rel[1]}\n{rel[0]} {rel[2]} maybe\n")
    assert purl_main(["score", str(final), str(trials), "--out", str(tmp_path / "t.score")]) == 1
    assert "trials.txt line 2: expected" in capsys.readouterr().err
    assert not (tmp_path / "t.score").exists()


def test_clean_finds_the_utterance_of_another_voice_and_explains_its_output(tmp_path, tiny_config, capsys):
    final = tiny_exp(tmp_path, tiny_config)
    data, wav = wav_data_dir(tmp_path, speakers=3, utts=4)
    assert purl_main(["clean", str(data), "--model", str(final)]) == 0
    out_dir = tmp_path / "data_purl_clean"
    printed = capsys.readouterr().out
    assert "look mislabelled" in printed and str(out_dir / "suspected_mislabelled") in printed
    for name in ("report.md", "suspects.png", "suspected_mislabelled", "embeddings/xvector.scp",
                 "data_clean/wav.scp", "data_clean/utt2spk", "data_clean/spk2utt"):
        assert (out_dir / name).is_file(), name
    lines = [line.split() for line in (out_dir / "suspected_mislabelled").read_text().splitlines()]
    # utterance, label, the speaker it resembles (another of the dir), margin, own cosine, robust sds
    assert all(len(f) == 6 and f[2] in {"spk0", "spk1", "spk2"} - {f[1]} for f in lines)
    suspects = [f[0] for f in lines]
    kept = (out_dir / "data_clean" / "utt2spk").read_text().split()[::2]
    assert sorted(kept + suspects) == sorted(wav)
    # the relabel proposals beside the suspects: a valid data dir and the list to act on
    relabelled = validate_data_dir(out_dir / "data_relabelled", require=["utt2spk", "utt2oldspk"])
    report = json.loads((out_dir / "data_relabelled" / "relabel.json").read_text())
    proposals = (out_dir / "data_relabelled" / "proposals").read_text().splitlines()
    assert len(proposals) == report["moved"] + report["dropped"]
    assert len(relabelled.utts) == len(wav) - report["dropped"]
    assert "sit with another speaker" in printed and str(out_dir / "data_relabelled" / "proposals") in printed
    # and the labels regrouped: every utterance, under a label of its own or another's
    regrouped = validate_data_dir(out_dir / "data_regrouped", require=["utt2spk", "utt2oldspk"])
    report = json.loads((out_dir / "data_regrouped" / "regroup.json").read_text())
    assert sorted(regrouped.utts) == sorted(wav) and report["labels_before"] == 3
    assert (out_dir / "data_regrouped" / "regroups").read_text().count("\n") == report["splits"] + report["joins"]
    assert "like two voices" in printed


def test_embedding_in_batches_equals_one_at_a_time(tmp_path, tiny_config, capsys):
    final = tiny_exp(tmp_path, tiny_config)
    _, wav = wav_data_dir(tmp_path, speakers=3, utts=2)  # each speaker's u0 (and u1) has the same length
    files = list(wav.values())
    model = purl.load_model(final)
    batches = []
    model.encoder.register_forward_hook(lambda module, inputs, output: batches.append(inputs[0].shape[0]))
    one = np.stack([model.embed(f) for f in files])
    batches.clear()
    np.testing.assert_allclose(model.embed_many(files, nj=2), one, rtol=1e-5, atol=1e-6)
    assert sorted(batches) == [3, 3]  # two lengths, three utterances each
    assert purl_main(["embed", str(final), *files, "--nj", "2", "--out", str(tmp_path / "x.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "x.npy"), one, rtol=1e-5, atol=1e-6)
    assert "purl embed: 6/6 (100%)" in capsys.readouterr().err  # the progress line


def test_clean_reruns_reuse_what_they_can_and_say_what_they_replace(tmp_path, tiny_config, capsys):
    final = tiny_exp(tmp_path, tiny_config)
    data, _ = wav_data_dir(tmp_path, speakers=3, utts=4)
    out_dir = tmp_path / "data_purl_clean"
    argv = ["clean", str(data), "--model", str(final), "--estimator", "histogram"]
    assert purl_main(argv) == 0
    first = capsys.readouterr().out
    assert "reusing" not in first and "replaces" not in first
    ark = (out_dir / "embeddings" / "xvector.ark").stat().st_mtime_ns
    suspects = (out_dir / "suspected_mislabelled").read_text()
    assert purl_main(argv) == 0
    again = capsys.readouterr().out
    assert "reusing" in again and "made with the same model from the same data" in again
    assert "reusing the fit" in again and (out_dir / "suspected_mislabelled").read_text() == suspects
    assert purl_main(argv[:-1] + ["bic"]) == 0
    other = capsys.readouterr().out
    assert (out_dir / "embeddings" / "xvector.ark").stat().st_mtime_ns == ark  # embeddings kept
    assert f"this fit replaces the one in {out_dir} (estimator: 'histogram' -> 'bic')" in other
    assert json.loads((out_dir / "report.json").read_text())["estimator"] == "bic"
    # another model embeds again and says why
    other_model = tiny_exp(tmp_path, tiny_config, name="other")
    assert purl_main(["clean", str(data), "--model", str(other_model), "--estimator", "bic"]) == 0
    assert "embedding again:" in capsys.readouterr().out


def test_clean_embeds_from_stage_1_features_when_the_dir_has_them(tmp_path, tiny_config, capsys):
    from purl.stages.fbank import MIN_FRAMES, merge_fbank_jobs

    final = tiny_exp(tmp_path, tiny_config)
    data, wav = wav_data_dir(tmp_path, speakers=2, utts=3)
    assert purl_main(["clean", str(data), "--model", str(final), "--out-dir", str(tmp_path / "audio")]) == 0
    (tmp_path / "fbank").mkdir()
    make_fbank_job(wav, tmp_path / "fbank" / "raw_fbank.1.ark")
    merge_fbank_jobs(data, tmp_path / "fbank", 1, settings={"sample_rate": 16000, "num_mel_bins": 80,
                                                            "compress": True, "min_frames": MIN_FRAMES})
    capsys.readouterr()
    assert purl_main(["clean", str(data), "--model", str(final), "--out-dir", str(tmp_path / "feats")]) == 0
    assert f"from {data / 'feats.scp'} (stage 1's" in capsys.readouterr().out
    from_audio = kaldiio.load_scp(str(tmp_path / "audio" / "embeddings" / "xvector.scp"))
    from_feats = kaldiio.load_scp(str(tmp_path / "feats" / "embeddings" / "xvector.scp"))
    for utt in wav:
        np.testing.assert_allclose(from_feats[utt], from_audio[utt], rtol=1e-5, atol=1e-6)


def simulated_clean_dir(path, sizes, noise_rate, seed=0):
    """A data dir (utt2spk, spk2utt, utt2truespk) and its xvector.scp of simulate_embeddings."""
    from purl.kaldi_io import save_embeddings
    from purl.testing import simulate_embeddings

    emb, noisy, true = simulate_embeddings(sizes, noise_rate=noise_rate, seed=seed)
    ids = [f"spk{s}-u{n:05d}" for n, s in enumerate(true)]  # ids start with the true speaker, as stage 2 keeps them
    order = np.argsort(ids, kind="stable")
    emb, noisy, true, utts = emb[order], noisy[order], true[order], [ids[n] for n in order]
    data = path / "data"
    data.mkdir(parents=True)
    utt2spk = {u: f"spk{s}" for u, s in zip(utts, noisy)}
    write_kv(data / "utt2spk", utt2spk)
    write_kv(data / "spk2utt", utt2spk_to_spk2utt(utt2spk))
    write_kv(data / "utt2truespk", {u: f"spk{s}" for u, s in zip(utts, true)})
    (path / "emb").mkdir()
    return data, save_embeddings(path / "emb" / "xvector.ark", utts, emb), noisy != true


@pytest.mark.parametrize("sizes, noise_rate", [([8], 0.0), ([12] * 10, 0.0), ([20] * 50, 0.01), ([80] * 20, 0.01)],
                         ids=["one speaker", "ten speakers", "1% wrong labels", "1% of 1,600"])
def test_clean_keeps_a_correctly_labelled_dir_by_default(tmp_path, sizes, noise_rate):
    """Stage 4's histogram estimator flags about half of these dirs (a third with 1% wrong
    labels); purl clean's default, the centroid rule, under 5% and finds 80% of the wrong labels."""
    from purl.cli import get_parsers
    from purl.stages.clean import clean_fit

    default = get_parsers()[1]["clean"].get_default("estimator")
    data, scp, wrong = simulated_clean_dir(tmp_path, sizes, noise_rate)
    report = clean_fit(scp, validate_data_dir(data), tmp_path / "out", estimator=default, threshold=0.5,
                       clean_dir=tmp_path / "out" / "data_clean", nj=1)
    assert report["n_suspected"] <= 0.05 * sum(sizes)
    kept = read_kv(tmp_path / "out" / "data_clean" / "utt2spk")
    assert len(kept) == sum(sizes) - report["n_suspected"]
    suspects = set(read_kv(tmp_path / "out" / "suspected_mislabelled", check_sorted=False))
    assert len(suspects) == report["n_suspected"] and not suspects & set(kept)
    assert report["detection"]["n_found"] >= 0.8 * wrong.sum()
    if noise_rate:  # a moved utterance resembles its true speaker (the id's prefix)
        lines = [line.split() for line in (tmp_path / "out" / "suspected_mislabelled").read_text().splitlines()]
        moved = [f for f in lines if not f[0].startswith(f[1] + "-")]
        assert moved and sum(f[0].startswith(f[2] + "-") for f in moved) >= 0.8 * len(moved)


def test_clean_plots_name_speakers_as_the_dir_does(tmp_path, monkeypatch):
    import purl.stages.reliability
    from purl.stages.clean import clean_fit

    panels = []
    monkeypatch.setattr(purl.stages.reliability, "plot_reliability",
                        lambda rel, path, *args, speaker_names=None, **kw: panels.extend(speaker_names))
    data, scp, _ = simulated_clean_dir(tmp_path, [12] * 4, 0.0)
    clean_fit(scp, validate_data_dir(data), tmp_path / "out", estimator="bic", threshold=0.5,
              clean_dir=tmp_path / "out" / "data_clean", nj=1)
    assert set(panels) == {f"spk{s}" for s in range(4)}


def test_a_model_that_does_not_separate_the_speakers_is_warned_about(tmp_path):
    from purl.stages.clean import clean_fit, flag_rate_warning

    data, scp, _ = simulated_clean_dir(tmp_path, [30] * 20, 0.0)
    # every label drawn at random: the speakers' centroids mean nothing
    utt2spk = read_kv(data / "utt2spk")
    rng = np.random.default_rng(0)
    write_kv(data / "utt2spk", {u: f"spk{rng.integers(20)}" for u in utt2spk})
    write_kv(data / "spk2utt", utt2spk_to_spk2utt(read_kv(data / "utt2spk")))
    report = clean_fit(scp, validate_data_dir(data), tmp_path / "out", estimator="centroid", threshold=0.5,
                       clean_dir=tmp_path / "out" / "data_clean", nj=1)
    warning = flag_rate_warning(report)
    assert warning is not None and "does not tell these speakers apart" in warning


def test_an_implausible_flag_rate_is_warned_about_with_what_to_try():
    from purl.stages.clean import flag_rate_warning

    def report(estimator, n_suspected):
        return {"estimator": estimator, "n_suspected": n_suspected, "detection": {"n_utts": 120}}

    assert flag_rate_warning(report("histogram", 12)) is None  # 10%: plausible
    warning = flag_rate_warning(report("histogram", 43))
    assert warning.startswith("warning: 36% of the utterances are suspected") and "--estimator centroid" in warning
    assert "--estimator centroid" not in flag_rate_warning(report("centroid", 43)) and "stronger model" in warning


def test_clean_with_sklearn_writes_the_same_files_in_one_or_two_processes(tmp_path, tiny_config, capsys, caplog):
    final = tiny_exp(tmp_path, tiny_config)
    data, _ = wav_data_dir(tmp_path, speakers=3, utts=5)
    outs = [tmp_path / f"clean_nj{nj}" for nj in (1, 2)]
    for nj, out in zip((1, 2), outs):
        argv = ["clean", str(data), "--model", str(final), "--estimator", "sklearn", "--nj", str(nj), "--out-dir", str(out)]
        caplog.clear()
        assert purl_main(argv) == 0
        assert ("sklearn: 3 speakers in 2 processes" in caplog.text) == (nj == 2)
    for name in ("gmm.npz", "embeddings.npy", "suspected_mislabelled", "reliability.png"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    assert purl_main(["clean", str(data), "--model", str(final), "--nj", "0"]) == 1
    assert capsys.readouterr().err.endswith("purl clean: --nj 0: give at least 1 process\n")


def test_clean_of_a_dir_without_spk2utt_says_what_to_do(tmp_path, tiny_config, capsys):
    final = tiny_exp(tmp_path, tiny_config)
    data, _ = wav_data_dir(tmp_path, speakers=1, utts=3)
    (data / "spk2utt").unlink()
    assert purl_main(["clean", str(data), "--model", str(final)]) == 1
    assert "spk2utt: missing" in capsys.readouterr().err
    assert not (tmp_path / "data_purl_clean").exists()


def test_compare_decides_at_the_stored_threshold(tmp_path, tiny_config, capsys):
    final = tiny_exp(tmp_path, tiny_config)
    a, b = write_tone(tmp_path / "a.wav", seconds=1.5), write_tone(tmp_path / "b.wav", seconds=1.2, seed=3)
    assert purl_main(["compare", str(final), str(a), str(b)]) == 0
    assert "no decision" in capsys.readouterr().out
    write_threshold(final)
    model = purl.load_model(final)
    score = model.score(a, b)
    assert purl_main(["compare", str(final), str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"score {score:.4f}\n")
    assert ("same speaker" if model.accept(score) else "different speakers") in out
    assert purl_main(["compare", str(final), "--threshold", "1", str(a), str(b)]) == 0
    assert "different speakers: score < threshold 1 (--threshold)" in capsys.readouterr().out
    assert "calibration: missing" in out


def test_compare_prints_the_llr_and_decides_at_a_prior(tmp_path, tiny_config, capsys):
    final = tiny_exp(tmp_path, tiny_config)
    a, b = write_tone(tmp_path / "a.wav", seconds=1.5), write_tone(tmp_path / "b.wav", seconds=1.2, seed=3)
    write_threshold(final, calibration=(10.0, -4.0, 0.05))
    model = purl.load_model(final)
    llr, cosine = model.score(a, b), model.cosine(a, b)
    assert purl_main(["compare", str(final), str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"llr {llr:.4f} (cosine {cosine:.4f}; llr = 10 x cosine -4, fitted at p_target 0.05)\n")
    assert f"{'>=' if llr >= np.log(19) else '<'} 2.9444, the Bayes threshold at p_target 0.05" in out
    assert purl_main(["compare", str(final), str(a), str(b), "--p-target", "0.5"]) == 0
    out = capsys.readouterr().out
    assert ("same speaker: llr >= 0.0000" if llr >= 0 else "different speakers: llr < 0.0000") in out
    assert purl_main(["compare", str(final), str(a), str(b), "--at", "eer"]) == 0
    assert "stage 6's EER threshold (cosine" in capsys.readouterr().out
    assert purl_main(["compare", str(final), str(a), str(b), "--p-target", "1"]) == 1
    assert capsys.readouterr().err == ("purl compare: --p-target 1: must be in [1e-09, 0.999999999] "
                                       "(a prior probability, strictly between 0 and 1)\n")


def test_score_decides_each_trial_as_compare_does(tmp_path, tiny_config, capsys):
    final = tiny_exp(tmp_path, tiny_config)
    trials, wav, _ = wav_trials(tmp_path, ["{0} {1}", "{0} {2}"])
    write_threshold(final)
    model = purl.load_model(final)
    out = tmp_path / "s.score"
    score = ["score", str(final), str(trials), "--wav-root", str(tmp_path / "wav"), "--out", str(out)]
    assert purl_main(score) == 0
    scores = [model.score(wav["spk0-u0"], wav[utt]) for utt in ("spk0-u1", "spk1-u0")]
    decisions = [line.split()[3] for line in out.read_text().splitlines()]
    assert decisions == ["accept" if model.accept(score) else "reject" for score in scores]
    assert "trials accepted (same speaker): score >= threshold" in capsys.readouterr().out
    for threshold, decision in (("-1", "accept"), ("1", "reject")):
        assert purl_main([*score, "--threshold", threshold]) == 0
        assert [line.split()[3] for line in out.read_text().splitlines()] == [decision, decision]


POSTERIOR = "must be in [1e-09, 0.999999999] (a posterior, strictly between 0 and 1)"
COSINE = "must be in [-1, 1] (a cosine score)"


@pytest.mark.parametrize("command, value, message", [
    ("clean", "1.5", f"--threshold 1.5: {POSTERIOR}"),
    ("clean", "nan", f"--threshold nan: {POSTERIOR}"),
    ("clean", "0", f"--threshold 0: {POSTERIOR}"),
    ("compare", "nan", f"--threshold nan: {COSINE}"),
    ("compare", "1.5", f"--threshold 1.5: {COSINE}"),
    ("score", "inf", f"--threshold inf: {COSINE}"),
])
def test_a_threshold_out_of_range_or_nan_is_refused_before_anything_is_written(tmp_path, tiny_config, capsys,
                                                                              command, value, message):
    final = tiny_exp(tmp_path, tiny_config)
    data, wav = wav_data_dir(tmp_path, speakers=2, utts=2)
    (tmp_path / "trials.txt").write_text(f"{wav['spk0-u0']} {wav['spk1-u0']}\n")
    argv = {"clean": [str(data), "--model", str(final)],
            "compare": [str(final), wav["spk0-u0"], wav["spk1-u0"]],
            "score": [str(final), str(tmp_path / "trials.txt"), "--out", str(tmp_path / "t.score")]}[command]
    before = sorted(tmp_path.rglob("*"))
    assert purl_main([command, *argv, "--threshold", value]) == 1
    assert capsys.readouterr().err == f"purl {command}: {message}\n"
    assert sorted(tmp_path.rglob("*")) == before


def test_help_texts_are_whole_and_name_each_default_once(capsys):
    from purl.reliability import ESTIMATORS

    texts = {}
    for command in ("embed", "compare", "score", "clean", "export"):
        with pytest.raises(SystemExit):
            purl_main([command, "--help"])
        texts[command] = text = capsys.readouterr().out
        assert "None" not in text, command
        options = set(re.findall(r"^  (--[a-z-]+)", text, re.M)) - {"--help"}
        assert options, command
        for option in options:
            block = text.split(f"  {option}", 1)[1].split("\n  -", 1)[0]
            assert block.count("default") <= 1 + block.count("torch's default"), (command, option)
            assert "default:" in block or "(required)" in block, (command, option)
    assert all(f in texts["embed"] for f in ("wav", "flac", "ogg", "opus", "m4a", "aac", "mp3"))
    assert all(name in texts["clean"] for name in ESTIMATORS)
    threshold = " ".join(texts["clean"].split("\n  --threshold THRESHOLD", 1)[1].split("\n  -", 1)[0].split())
    assert threshold == ("the GMM estimators': a pair is unreliable when its weight w is below this, and an "
                         "utterance is suspected when the mean w of its pairs is below it; strictly between 0 and 1 "
                         "(default: 0.5)")
    assert "centroid" in texts["clean"]
