"""Imports run one way: entry points (steps/, local/, utils/, bench/, purl/cli.py,
purl/api.py) -> purl/stages/ -> training -> data, reliability, models and the
small helpers. A package lower down never imports one higher up, not even for a
type annotation: the checks read the import statements of every module with
``ast``, so an import inside a function or under ``if TYPE_CHECKING`` counts.
"""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import ROOT

# (modules the rule applies to, what they must not import, modules exempt and why)
RULES = [
    ("purl.data", "purl.training", {}),
    ("purl.data", "purl.stages", {}),
    ("purl.reliability", "purl.training", {}),
    ("purl.reliability", "purl.stages", {}),
    ("purl.models", "purl.training", {}),
    ("purl.models", "purl.stages", {}),
    ("purl.training", "purl.stages", {}),
    ("purl", "purl.stages", {
        "purl.stages": "the stages import each other (e.g. scoring reads the embeddings' layout)",
        "purl.cli": "the `purl` command is an entry point",
        "purl.api": "the library's entry point for a trained model: it finds final.pt and stage 6's "
                    "threshold.json of an exp dir through the stages that lay them out",
    }),
]


def module_name(path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module ``source`` (the text of ``module``) imports, relative imports resolved."""
    found = set()
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            found.add(base)
            # `from purl import stages` imports the package purl.stages
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def import_violations(modules: dict[str, set[str]], rules=RULES) -> list[str]:
    """'importer -> imported (rule)' for every import a rule forbids; ``modules``:
    module name -> the modules it imports."""
    found = []
    for importer, imports in sorted(modules.items()):
        for scope, forbidden, exempt in rules:
            if not within(importer, scope) or any(within(importer, e) for e in exempt):
                continue
            found += [f"{importer} -> {name} ({scope} must not import {forbidden})"
                      for name in sorted(imports) if within(name, forbidden)]
    return found


def purl_imports() -> dict[str, set[str]]:
    modules = {}
    for path in sorted((ROOT / "purl").rglob("*.py")):
        name = module_name(path)
        modules[name] = imported_modules(path.read_text(encoding="utf-8"), name, path.name == "__init__.py")
    return modules


def test_the_checker_finds_a_planted_upward_import():
    planted = {
        "purl.data.chns": imported_modules(
            "from purl.config import ConfigError\n"
            "def f():\n    from purl.training.callbacks import TrainingCallback\n", "purl.data.chns"),
        "purl.data.augment": imported_modules("from ..training import loop\n", "purl.data.augment"),
        "purl.scoring": imported_modules("import purl.stages.score\n", "purl.scoring"),
        "purl.cli": imported_modules("from purl.stages import clean\n", "purl.cli"),
        "purl.training.loop": imported_modules("from purl import stages\n", "purl.training.loop"),
    }
    violations = import_violations(planted)
    assert {v.split(" -> ")[0] for v in violations} == {
        "purl.data.chns", "purl.data.augment", "purl.scoring", "purl.training.loop"}  # not purl.cli
    assert "purl.data.chns -> purl.training.callbacks (purl.data must not import purl.training)" in violations
    assert "purl.data.augment -> purl.training.loop (purl.data must not import purl.training)" in violations
    assert "purl.training.loop -> purl.stages (purl.training must not import purl.stages)" in violations


def test_imports_run_from_the_entry_points_down_to_the_helpers():
    modules = purl_imports()
    assert "purl.data.chns" in modules and "purl.stages.training" in modules  # the walk found the tree
    assert import_violations(modules) == []


def test_the_exemptions_are_still_needed():
    modules = purl_imports()
    for _scope, forbidden, exempt in RULES:
        for name in exempt:
            if within(name, forbidden):
                continue  # a package importing its own modules
            assert any(within(i, forbidden) for i in modules[name]), \
                f"{name} no longer imports {forbidden}: drop its exemption"


def test_loading_a_model_does_not_import_the_trainer():
    code = ("import sys, purl; purl.load_model; "
            "print(' '.join(m for m in sys.modules if m.startswith(('purl.training.loop', 'purl.training.setup', "
            "'purl.training.distributed', 'purl.stages.training', 'purl.training.refit'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == []
