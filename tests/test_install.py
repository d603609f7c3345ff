"""The package installs from a clean copy of the checkout into a fresh venv, and
its command and Python API work there on a model the project's trainer made.

The venv sees this environment's packages through a .pth file (so no torch is
downloaded) and pip installs without the network (--no-index, --no-deps,
--no-build-isolation): what is proven is the package's own build and install.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import kaldiio
import pytest

from purl.config import load_config
from purl.stages.exp_layout import TrainingOutputs
from purl.training.loop import Trainer
from tests.conftest import ROOT, write_feature_dir
from tests.test_use_model import readme_example_files, run_readme_example, wav_data_dir, write_threshold


def tracked_copy(dst: Path) -> Path:
    """The files git tracks in this checkout (as a fresh clone has them)."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        src = ROOT / name
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the work tree, not yet committed
        target = dst / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target, follow_symlinks=False)
    return dst


def fresh_venv(path: Path) -> Path:
    """A venv without packages of its own that imports this environment's (torch, pip, setuptools)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    [site] = path.glob("lib/python*/site-packages")
    parents = [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and Path(p).is_dir()]
    (site / "parent_env.pth").write_text("".join(f"import site; site.addsitedir({p!r})\n" for p in parents))
    return path / "bin"


def venv_env(bin_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    return env


def run(bin_dir: Path, *args, cwd: Path) -> str:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=venv_env(bin_dir), capture_output=True, text=True)
    assert proc.returncode == 0, f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def pip_install(bin_dir: Path, *args, cwd: Path) -> None:
    run(bin_dir, bin_dir / "python", "-m", "pip", "install", "--no-index", "--no-deps", "--no-build-isolation",
        "--disable-pip-version-check", "-q", *args, cwd=cwd)


def trained_model(tmp_path: Path, tiny_config: Path) -> Path:
    """exp/tiny: a few steps of the project's trainer on generated features."""
    config = load_config(tiny_config)
    trainer = Trainer(config, write_feature_dir(tmp_path / "train"), TrainingOutputs(tmp_path / "exp" / "tiny"),
                      show_progress=False)
    try:
        return trainer.train()
    finally:
        trainer.close()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to list the checkout's files")
def test_package_installs_in_a_fresh_venv_and_its_commands_and_api_work(tmp_path, tiny_config):
    src = tracked_copy(tmp_path / "src")
    work = tmp_path / "work"
    work.mkdir()
    final = trained_model(work, tiny_config)

    # pip install .
    bin_dir = fresh_venv(tmp_path / "venv")
    pip_install(bin_dir, str(src), cwd=work)
    code = ("import importlib.metadata as m, json, purl; "
            "print(json.dumps([purl.__file__, m.requires('purl')]))")
    location, requires = json.loads(run(bin_dir, bin_dir / "python", "-c", code, cwd=work))
    assert Path(location).is_relative_to(tmp_path / "venv")  # the installed copy, not the checkout
    runtime = [r for r in requires if "extra ==" not in r]
    assert sorted(runtime) == sorted(line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
                                     if line.strip() and not line.startswith("#"))
    assert not any(r.startswith("pytest") for r in runtime) and any(r.startswith("pytest") for r in requires)
    assert "embed" in run(bin_dir, "purl", "--help", cwd=work)

    purl = bin_dir / "purl"
    data, wav = wav_data_dir(work, speakers=3, utts=4)
    files = list(wav.values())
    run(bin_dir, purl, "embed", final, *files[:2], "--out", work / "emb" / "x.ark", cwd=work)
    assert list(kaldiio.load_scp(str(work / "emb" / "x.scp"))) == files[:2]
    write_threshold(final)  # what stage 6 stores
    assert "speaker" in run(bin_dir, purl, "compare", final, files[0], files[5], cwd=work).splitlines()[1]
    (work / "trials").write_text(f"{files[0]} {files[1]} target\n{files[0]} {files[5]} nontarget\n")
    assert "EER" in run(bin_dir, purl, "score", final, work / "trials", "--out", work / "trials.score", cwd=work)
    assert len((work / "trials.score").read_text().splitlines()) == 2
    printed = run(bin_dir, purl, "clean", data, "--model", final.parent.parent, "--out-dir", work / "clean", cwd=work)
    assert "look mislabelled" in printed and (work / "clean" / "data_clean" / "utt2spk").is_file()
    run(bin_dir, purl, "export", final, work / "tiny.onnx", "--format", "onnx", cwd=work)
    assert (work / "tiny.onnx").stat().st_size > 0

    example = work / "readme"
    example.mkdir()
    readme_example_files(example, final)
    assert run_readme_example(str(bin_dir / "python"), example, venv_env(bin_dir)).startswith("score ")

    # pip install -e .: the checkout's own files
    bin_dir = fresh_venv(tmp_path / "venv_editable")
    pip_install(bin_dir, "-e", str(src), cwd=work)
    location = run(bin_dir, bin_dir / "python", "-c", "import purl.cli; print(purl.cli.__file__)", cwd=work).strip()
    assert Path(location) == src / "purl" / "cli.py"
    assert "compare" in run(bin_dir, "purl", "compare", "--help", cwd=work)
