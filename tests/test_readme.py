"""The tested blocks of docs/own_data.md (those after a '<!-- tested' comment) run as
written, in a fresh copy of the checkout, on a tiny generated corpus: "Your own
corpus" then "Use a trained model", so these sections cannot drift from the code.
The README's sections of the same names show only blocks tested here."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from tests.conftest import ROOT, recipe_env, write_tone
from tests.test_use_model import OWN_DATA_DOC, doc_section, readme_example_files, tiny_exp

SECTIONS = ("Your own corpus", "Use a trained model")


def marked_blocks(path, section: str) -> list[tuple[str, str]]:
    """(language, code) of each block the markdown file ``path`` marks as tested in ``section``."""
    return re.findall(r"<!-- tested[^>]*-->\n```(\w+)\n(.*?)```", doc_section(path, section), re.S)


def test_readme_shows_only_blocks_that_are_tested():
    """The README's short sections repeat blocks of docs/own_data.md, unchanged, never untested ones."""
    for section in SECTIONS:
        tested = [code for _, code in marked_blocks(OWN_DATA_DOC, section)]
        shown = re.findall(r"```\w+\n(.*?)```", doc_section(ROOT / "README.md", section), re.S)
        assert tested and shown, section
        assert all(code in tested for code in shown), f"README.md, '{section}': a block differs from {OWN_DATA_DOC}'s"


def fresh_copy(dest):
    """The checkout's files as git sees them (tracked, and untracked but not ignored), links kept."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src, dst = ROOT / name, dest / name
        if not os.path.lexists(src):
            continue  # deleted in the working tree
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)
    return dest


def run_block(lang: str, code: str, cwd, env) -> str:
    command = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{lang} block failed in {cwd}:\n{code}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_readme_own_corpus_and_trained_model_blocks_run_as_written(tmp_path, tiny_config):
    checkout = fresh_copy(tmp_path / "checkout")
    corpus = tmp_path / "corpus"
    for s in range(27):  # the block holds out 25 test speakers
        for u in range(2):
            write_tone(corpus / f"speaker{s:02d}" / f"take{u}.wav", seconds=0.6, seed=s)
    env = {**recipe_env(), "PYTHONPATH": str(checkout), "PURL_ROOT": str(checkout)}
    bin_dir = tmp_path / "bin"  # `purl` as `pip install` makes it (tests/test_install.py runs the real one)
    bin_dir.mkdir()
    (bin_dir / "purl").write_text(f'#!/bin/sh\nexec {sys.executable} -m purl.cli "$@"\n')
    (bin_dir / "purl").chmod(0o755)
    env["PATH"] = f"{bin_dir}:{env['PATH']}"

    [(lang, code)] = marked_blocks(OWN_DATA_DOC, "Your own corpus")
    run_block(lang, code.replace("/path/to/root", str(corpus)), checkout, env)
    recipe = checkout / "egs" / "voxceleb"
    assert (recipe / "data" / "my_train" / "feats.scp").is_file() and (recipe / "data" / "my_test" / "trials").is_file()
    assert not (checkout / "data").exists() and not (checkout / "fbank").exists()  # nothing at the top

    blocks = marked_blocks(OWN_DATA_DOC, "Use a trained model")
    assert [lang for lang, _ in blocks] == ["python", "bash"]
    readme_example_files(recipe, tiny_exp(tmp_path, tiny_config))
    assert re.fullmatch(r"score -?\d+\.\d{3}: (same|different) speakers?\n", run_block(*blocks[0], recipe, env))
    out = run_block(*blocks[1], recipe, env)
    assert "llr" in out or "score" in out
    assert (recipe / "data" / "my_train_purl_clean" / "suspected_mislabelled").is_file()
