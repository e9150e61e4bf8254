"""Every project module a stage's entry point imports (directly or transitively, lazy imports included) is
covered by that stage's deps in dvc.yaml, so editing it re-runs the stage. Computed from the code's AST: no
hand-kept list. A module may stay out only if its first lines say `# output-neutral: <why>`."""

from __future__ import annotations

import ast
import shlex
from pathlib import Path

import pytest
import yaml

from helpers import ROOT

PACKAGE = "qlora_sentiment"
SRC = ROOT / "src"
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def module_file(name: str) -> Path | None:
    path = SRC.joinpath(*name.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Project modules `path` imports anywhere in its body, with the packages whose __init__ runs first."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    this = module_name(path) if path.is_relative_to(SRC) else ""
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != PACKAGE:
                continue
            found.add(base)
            # `from pkg import sub` imports the submodule when there is one
            found |= {f"{base}.{a.name}" for a in node.names if module_file(f"{base}.{a.name}")}
    with_parents = set()
    for name in found:
        parts = name.split(".")
        with_parents |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return {m for m in with_parents if module_file(m)}


def closure(entry: Path) -> set[Path]:
    """Modules the entry imports, transitively; an output-neutral module is listed but not followed (its
    marker vouches that nothing it does, its lazy imports included, reaches a stage's outputs)."""
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        for name in imported_modules(todo.pop()):
            path = module_file(name)
            if path not in seen:
                seen.add(path)
                if not output_neutral(path):
                    todo.append(path)
    return seen


def output_neutral(path: Path) -> bool:
    head = path.read_text(encoding="utf-8").splitlines()[:5]
    return any(line.startswith("# output-neutral:") and len(line) > len("# output-neutral:") + 3 for line in head)


def entry_point(stage: dict) -> Path:
    words = shlex.split(stage["cmd"])
    script = next(w for w in words if w.endswith(".py"))
    return ROOT / script


def dep_paths(stage: dict) -> list[Path]:
    return [(ROOT / d).resolve() for d in stage.get("deps", [])]


def gaps(name: str) -> list[str]:
    stage = STAGES[name]
    deps = dep_paths(stage)
    entry = entry_point(stage)
    missing = [] if entry.resolve() in deps else [str(entry.relative_to(ROOT))]
    for path in sorted(closure(entry)):
        covered = any(path.resolve() == d or path.resolve().is_relative_to(d) for d in deps)
        if not covered and not output_neutral(path):
            missing.append(str(path.relative_to(ROOT)))
    return missing


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_cover_every_imported_module(name):
    assert gaps(name) == [], f"dvc.yaml stage {name} misses deps it imports: {gaps(name)}"


def test_closure_sees_lazy_and_package_imports():
    # The train stage imports the scorer lazily inside a function: the closure must still find it.
    found = {module_name(p) for p in closure(entry_point(STAGES["train"]))}
    assert {"qlora_sentiment", "qlora_sentiment.model", "qlora_sentiment.model.scoring",
            "qlora_sentiment.evaluation.metrics", "qlora_sentiment.config.schema"} <= found


def test_a_missing_dep_is_reported(monkeypatch):
    stage = dict(STAGES["export"], deps=[d for d in STAGES["export"]["deps"] if "model" not in d])
    monkeypatch.setitem(STAGES, "export", stage)
    assert any(g.startswith("src/qlora_sentiment/model/") for g in gaps("export"))


def test_output_neutral_marker_needs_a_reason(tmp_path):
    marked, bare = tmp_path / "a.py", tmp_path / "b.py"
    marked.write_text("# output-neutral: only exception classes\n")
    bare.write_text("# output-neutral:\n")
    assert output_neutral(marked) and not output_neutral(bare)


def test_local_inputs_are_stage_deps():
    # A user's own data file and model folder must sit in folders that prepare / base_model depend on.
    from qlora_sentiment.core.inputs import DATA_FOLDER, MODEL_FOLDER

    assert (ROOT / DATA_FOLDER).resolve() in dep_paths(STAGES["prepare"])
    assert (ROOT / MODEL_FOLDER).resolve() in dep_paths(STAGES["base_model"])
