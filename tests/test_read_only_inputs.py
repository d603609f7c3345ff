"""Reading a data dir needs no write access: stage 6 embeds a read-only data
dir that has features (its split goes under the output dir), and leaves the
dir as it found it."""

from __future__ import annotations

import shutil
import subprocess

import kaldiio

from tests.conftest import ROOT, recipe_env, run_script, write_feature_dir
from tests.test_use_model import tiny_exp


def snapshot(directory) -> dict:
    """Every path under ``directory`` with its size and modification time."""
    return {str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns) for p in directory.rglob("*")}


def read_only_mount_works(directory) -> bool:
    """Whether a read-only bind mount in a private mount namespace is allowed here."""
    if shutil.which("unshare") is None:
        return False
    probe = (f"mount --bind {directory} {directory} && mount -o remount,bind,ro {directory} {directory} "
             f"&& ! touch {directory}/probe 2>/dev/null")
    return subprocess.run(["unshare", "-rm", "sh", "-c", probe], capture_output=True).returncode == 0


def test_stage_6_embeds_a_read_only_data_dir_and_writes_nothing_there(tmp_path, tiny_config):
    final = tiny_exp(tmp_path, tiny_config)
    data = write_feature_dir(tmp_path / "ro_feat", num_speakers=2, utts_per_speaker=3)
    out = tmp_path / "emb"
    before = snapshot(data)
    command = [str(ROOT / "steps" / "extract_embeddings.sh"), "--nj", "2", str(final), str(data), str(out)]
    if read_only_mount_works(data):  # the data dir really read-only for the stage (root ignores chmod)
        script = (f'mount --bind "{data}" "{data}" && mount -o remount,bind,ro "{data}" "{data}" && exec "$@"')
        proc = subprocess.run(["unshare", "-rm", "bash", "-c", script, "ro", *command], cwd=tmp_path,
                              env=recipe_env(), capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    else:
        run_script(*command, cwd=tmp_path)
    assert snapshot(data) == before
    assert len(kaldiio.load_scp(str(out / "xvector.scp"))) == 6
    assert (out / "split2" / "1" / "feats.scp").is_file()
    rerun = run_script(*command, cwd=tmp_path)
    assert "skipping" in rerun.stdout and snapshot(data) == before
