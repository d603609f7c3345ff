"""The folder rule (docs/layout.md): only purl/stages/ knows the data/ and exp/
layouts. A module elsewhere in purl/ that names a file or folder of a stage's
output layout in a string literal (``out / "xvector.scp"``, ``"models"``,
``"final.pt"``) is reaching into a layout.

What the check covers: string constants of purl/**/*.py outside purl/stages/
that are, or have as a '/'-separated component, one of LAYOUT_NAMES. Not
checked: docstrings and messages (text with spaces), dict keys (config keys
such as purl.reliability), ``__all__``; the Kaldi data-dir files (utt2spk,
wav.scp, feats.scp, trials) are a file format that purl/data/datadir.py reads
for every stage, and the inside of a reliability dir is the format of
purl/reliability/files.py: neither is a stage layout.
"""

from __future__ import annotations

import ast

from tests.conftest import ROOT

# Names of where stages put things, inside exp/<model>/ or beside an output.
LAYOUT_NAMES = {
    "exp", "fbank", "models", "final.pt", "last.pt", "epoch_", "embeddings", "scores", "reliability",
    "config.yaml", "train.csv", "epochs.csv", "train.png", "xvector.scp", "xvector.settings", "mean.vec",
    "report.json", "report.md", "results.json", "results.md", "threshold.json", "RESULTS.md",
    "reliability.settings", "feats.settings", "noise.settings", "filter.settings", "average.settings",
    "data.settings", "fbank_failed", "suspected_mislabelled", "scoring.json", "calibration.json", "calibration.md",
    "calibration_trials", "calibration.settings",
}

# Modules outside purl/stages/ that know a layout, and why.
# (An entry whose module becomes clean fails the test below: remove it.)
EXCEPTIONS = {
    "purl/cli.py": "the `purl` command is an entry script: it lays out its own output dir",
    "purl/data/datadir.py": "the data dir's format: feats.settings says what its features are (their type), "
                            "which every reader of features needs",
}


def _skipped_constants(tree: ast.AST) -> set[int]:
    """ids of the constants the rule does not judge: docstrings, dict keys, __all__."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skip.add(id(first.value))
        elif isinstance(node, ast.Dict):
            skip.update(id(k) for k in node.keys if k is not None)
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            skip.update(id(c) for c in ast.walk(node.value))
    return skip


def layout_literals(source: str) -> list[tuple[int, str]]:
    """(line, literal) of every string constant in ``source`` that names a layout."""
    tree = ast.parse(source)
    skip = _skipped_constants(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            if " " in node.value:
                continue  # a message, not a path
            if any(part in LAYOUT_NAMES for part in node.value.strip("/").split("/")):
                found.append((node.lineno, node.value))
    return sorted(found)


def test_layout_check_finds_a_path_literal_and_ignores_messages_and_keys():
    source = '''"""Writes exp/m/scores/results.json."""
def f(out):
    """Reads report.json."""
    print(f"{out}: no xvector.scp here; run stage 6")
    return {"reliability": 1}, out / "scores" / "results.json", out / "embeddings/train/xvector.scp"
'''
    assert layout_literals(source) == [(5, "embeddings/train/xvector.scp"), (5, "results.json"), (5, "scores")]


def test_no_module_outside_the_stages_names_a_data_or_exp_layout():
    offenders = []
    for path in sorted((ROOT / "purl").rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        if name.startswith("purl/stages/") or name in EXCEPTIONS:
            continue
        offenders += [f"{name}:{line}: {text!r}" for line, text in layout_literals(path.read_text(encoding="utf-8"))]
    assert not offenders, ("these modules name a stage's data/exp layout; move the path handling to "
                           "purl/stages/<stage>.py and pass the module files or arrays:\n" + "\n".join(offenders))


def test_every_exception_still_exists_and_names_a_layout():
    for name in EXCEPTIONS:
        assert layout_literals((ROOT / name).read_text(encoding="utf-8")), f"{name} is clean: drop it from EXCEPTIONS"
