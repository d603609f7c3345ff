"""Shared fixtures: small generated audio and data dirs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from purl.audio import write_aac

ROOT = Path(__file__).resolve().parents[1]
SPEECHOCEAN = ROOT.parent / "shared" / "data" / "speechocean762-train"


def write_tone(path: Path, seconds: float = 0.5, rate: int = 16000, seed: int = 0) -> Path:
    """A short noisy tone as 16-bit wav; enough for features, not for speakers."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * (120 + 40 * seed) * t) + 0.05 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), rate, subtype="PCM_16")
    return path


def recipe_env() -> dict[str, str]:
    """The environment a recipe script sees after sourcing path.sh."""
    env = dict(os.environ)
    env["PATH"] = f"{ROOT / 'utils'}:{Path(sys.executable).parent}:{env['PATH']}"
    env["PYTHONPATH"] = str(ROOT)
    env["PURL_ROOT"] = str(ROOT)
    env["PURL_VENV"] = "none"  # the tests already run inside the environment
    env["LC_ALL"] = "C"
    return env


def run_script(*args, cwd=None, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=recipe_env(), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def copy_recipe(name: str, dest: Path) -> Path:
    """egs/<name> copied to ``dest`` without its outputs, its links pointing back at the project."""
    shutil.copytree(ROOT / "egs" / name, dest, symlinks=True,
                    ignore=shutil.ignore_patterns("data", "exp", "fbank", "corpus", "RESULTS.md"))
    # path.sh, steps/, a shared local/ or cmd.sh, and links inside a recipe's own
    # local/ (os.walk does not enter linked folders).
    links = [Path(top) / n for top, dirs, files in os.walk(dest) for n in dirs + files if (Path(top) / n).is_symlink()]
    for link in links:
        target = (ROOT / "egs" / name / link.relative_to(dest)).resolve()
        link.unlink()
        link.symlink_to(target)
    return dest


@pytest.fixture
def tiny_corpus(tmp_path) -> Path:
    """A folder-per-speaker tree: 3 speakers x 3 utterances of half a second."""
    root = tmp_path / "corpus"
    for s in range(3):
        for u in range(3):
            write_tone(root / f"spk{s}" / f"u{u}.wav", seed=s * 3 + u)
    return root


@pytest.fixture
def fake_voxceleb(tmp_path) -> dict[str, Path]:
    """VoxCeleb's real layout in miniature: vox1 wav/ with the three official
    lists, and vox2 dev/aac/ with m4a files (AAC, encoded with PyAV)."""
    vox1 = tmp_path / "voxceleb1" / "wav"
    meta = tmp_path / "voxceleb1" / "meta"
    vox2 = tmp_path / "voxceleb2" / "dev" / "aac"
    utts = [("id10001", "1zcIwhmdeo4", "00001"), ("id10001", "7gWzIy6yIIk", "00002"),
            ("id10002", "-5sXMlZvdf8", "00001"), ("id10002", "C7k7C-PDvAA", "00003")]
    for n, (spk, video, num) in enumerate(utts):
        write_tone(vox1 / spk / video / f"{num}.wav", seed=n)
    meta.mkdir(parents=True)
    lines = ("1 id10001/1zcIwhmdeo4/00001.wav id10001/7gWzIy6yIIk/00002.wav\n"
             "0 id10001/1zcIwhmdeo4/00001.wav id10002/-5sXMlZvdf8/00001.wav\n"
             "1 id10002/-5sXMlZvdf8/00001.wav id10002/C7k7C-PDvAA/00003.wav\n")
    for name in ("veri_test2.txt", "list_test_all2.txt", "list_test_hard2.txt"):
        (meta / name).write_text(lines)
    for n, (spk, video) in enumerate([("id00012", "21Uxsk56VDQ"), ("id00012", "2DLq_Kkc1r8"), ("id00015", "0fijmz4vTVU")]):
        wav = write_tone(tmp_path / "tmp" / f"{n}.wav", seed=10 + n)
        target = vox2 / spk / video / "00001.m4a"
        target.parent.mkdir(parents=True, exist_ok=True)
        samples, rate = sf.read(wav, dtype="int16")
        write_aac(target, samples, rate)
    return {"vox1": vox1, "meta": meta, "vox2": vox2}


def write_feature_dir(path: Path, num_speakers: int = 6, utts_per_speaker: int = 4, seed: int = 0,
                      frames=(80, 160), prefix: str = "spk", feature_type: str = "kaldi") -> Path:
    """A data dir with random 80-dim features (no audio): each speaker has its own
    mean spectrum, so a model can learn something in a few steps. Speakers are
    <prefix>00, <prefix>01, ... (another prefix: other utterance ids). The
    features are recorded as ``feature_type``'s, as stage 1 records them."""
    import kaldiio

    from purl.data.datadir import utt2spk_to_spk2utt, write_kv
    from purl.stages.fbank import record_features

    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    utt2spk, frames_of = {}, {}
    with kaldiio.WriteHelper(f"ark,scp:{path / 'feats.ark'},{path / 'feats.scp.unsorted'}") as writer:
        for s in range(num_speakers):
            centre = rng.normal(0, 1, 80)
            for u in range(utts_per_speaker):
                utt = f"{prefix}{s:02d}-u{u:02d}"
                n = int(rng.integers(*frames))
                writer(utt, (centre + rng.normal(0, 1, (n, 80))).astype(np.float32))
                utt2spk[utt], frames_of[utt] = f"{prefix}{s:02d}", n
    scp = dict(line.split(maxsplit=1) for line in (path / "feats.scp.unsorted").read_text().splitlines())
    (path / "feats.scp.unsorted").unlink()
    write_kv(path / "feats.scp", scp)
    write_kv(path / "utt2spk", utt2spk)
    write_kv(path / "spk2utt", utt2spk_to_spk2utt(utt2spk))
    write_kv(path / "utt2num_frames", frames_of)
    kind = {} if feature_type == "kaldi" else {"feature_type": feature_type}
    record_features(path, {"foreign": True, **kind})  # as stage 1 adopts a feats.scp made elsewhere
    return path


TINY_CONFIG = """
model:
  name: ecapa_tdnn
  args: {channels: [16, 16, 16, 16, 48], attention_channels: 8, se_channels: 8, res2net_scale: 2, embed_dim: 16}
data: {chunk_frames: 50, speakers_per_batch: 4, utts_per_speaker: 2, samples_per_epoch: 32, num_workers: 0}
optim: {epochs: 2, lr: 0.01}
train: {threads: 1, log_every: 1, average_last: 2}
"""


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_CONFIG)
    return path
