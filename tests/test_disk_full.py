"""A full disk at a real write point (the output's temporary file made a link
to /dev/full, whose writes fail with ENOSPC): the stage stops with a message
naming the file, the bytes written and needed and "disk full", exits 1, and
leaves nothing a later stage takes for complete."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from purl.cli import main as purl_main
from purl.data.datadir import DataDirError
from purl.data.prepare import prepare_folder_corpus
from purl.fileio import DiskFullError, temp_path
from purl.stages.fbank import check_features, fbank_dir_for, make_fbank_job
from purl.stages.reliability import check_reliability_dir
from tests.conftest import ROOT, recipe_env, run_script, write_tone
from tests.test_reliability_stage import noisy_dir_with_embeddings
from tests.test_use_model import tiny_exp

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")

# Runs a step as its own script, the temporary name of one output (known
# once the pid is) linked to /dev/full first.
FULL_DISK_RUN = """
import os, runpy, sys
out, script = sys.argv[1], sys.argv[2]
os.symlink("/dev/full", f"{out}.{os.getpid()}.tmp")
sys.argv = sys.argv[2:]
runpy.run_path(script, run_name="__main__")
"""


def run_on_full_disk(output, script, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", FULL_DISK_RUN, str(output), str(script), *map(str, args)],
                          env=recipe_env(), capture_output=True, text=True)


def test_a_full_disk_under_a_fbank_job_names_the_ark_and_leaves_no_job(tmp_path):
    wav = {f"spk0-u{n}": str(write_tone(tmp_path / f"u{n}.wav", seconds=1, seed=n)) for n in range(3)}
    ark = tmp_path / "fbank" / "raw_fbank.1.ark"
    ark.parent.mkdir()
    ark.with_name(ark.name + ".tmp").symlink_to("/dev/full")
    with pytest.raises(DiskFullError, match=rf"{ark}: disk full: \d+ bytes written when"):
        make_fbank_job(wav, ark)
    assert sorted(os.listdir(ark.parent)) == []  # no ark, scp, settings record, nor the temporary link


def test_a_full_disk_under_stage_1_fails_it_and_its_features_are_refused(tmp_path, tiny_corpus):
    data = tmp_path / "data" / "train"
    prepare_folder_corpus(tiny_corpus, data)
    job_dir = fbank_dir_for(data, tmp_path / "fbank")
    job_dir.mkdir(parents=True)
    (job_dir / "raw_fbank.1.ark.tmp").symlink_to("/dev/full")
    proc = run_script(ROOT / "steps" / "make_fbank.sh", "--nj", "1", data, data / "log", tmp_path / "fbank",
                      cwd=tmp_path, check=False)
    assert proc.returncode != 0
    log = (data / "log" / "make_fbank.1.log").read_text()
    assert f"{job_dir / 'raw_fbank.1.ark'}: disk full" in log, log
    assert not (data / "feats.scp").exists() and not (job_dir / "raw_fbank.1.settings").exists()
    with pytest.raises(DataDirError, match="feats"):
        check_features(data, "test")


def test_a_full_disk_under_stage_4_names_the_file_and_the_fit_is_refused(tmp_path):
    data, scp, _ = noisy_dir_with_embeddings(tmp_path)
    out = tmp_path / "reliability"
    out.mkdir()
    proc = run_on_full_disk(out / "embeddings.npy", ROOT / "steps" / "reliability.py", scp, data, out)
    assert proc.returncode == 1, proc.stderr
    size = 12 * 30 * 32 * 4 + 128
    assert f"{out / 'embeddings.npy'}: disk full: 0 bytes written of the {size} bytes it needs" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not any(p.name.startswith("embeddings.npy") for p in out.iterdir())
    assert not (out / "reliability.json").exists() and not (out / "reliability.settings").exists()
    with pytest.raises(DataDirError):
        check_reliability_dir(out, "train (purl.reliability)")


def test_a_full_disk_under_stage_6_names_the_ark_and_leaves_no_job_record(tmp_path, tiny_config):
    from tests.conftest import write_feature_dir

    final = tiny_exp(tmp_path, tiny_config)
    data = write_feature_dir(tmp_path / "data", num_speakers=2, utts_per_speaker=2)
    ark = tmp_path / "emb" / "xvector.1.ark"
    ark.parent.mkdir()
    proc = run_on_full_disk(ark, ROOT / "steps" / "extract_embeddings.py", final, data, ark)
    assert proc.returncode == 1, proc.stderr
    assert f"{ark}: disk full: 0 bytes written of the " in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(os.listdir(ark.parent)) == []  # neither ark, scp, settings record nor temporary file


@pytest.mark.parametrize("suffix", [".npy", ".ark"])
def test_purl_embed_on_a_full_disk_says_so_and_writes_nothing(tmp_path, tiny_config, capsys, suffix):
    final = tiny_exp(tmp_path, tiny_config)
    wav = write_tone(tmp_path / "a.wav", seconds=1)
    out = tmp_path / "out" / f"e{suffix}"
    out.parent.mkdir()
    temp_path(out).symlink_to("/dev/full")
    assert purl_main(["embed", str(final), str(wav), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"purl embed: {out}: disk full: 0 bytes written of the " in err and "bytes it needs" in err
    assert os.listdir(out.parent) == []
