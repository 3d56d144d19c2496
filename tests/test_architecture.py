"""The folder layout is the architecture (docs/ARCHITECTURE.md): one package per concern, each
`__init__` saying its one job, and imports only ever pointing down the layers.

Imports are read from the source with `ast` (module level and inside functions alike), so a lazy
import inside a function counts as much as one at the top of the file.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

AMH = Path(__file__).resolve().parent.parent / "amh"

# What each part of amh/ may import from amh/ besides itself. "base" is amh.config + amh.errors,
# which everything may use and which import nothing of amh but each other.
ALLOWED = {
    "base": set(),
    "text": {"base"},
    "data": {"base"},
    "xtts": {"base", "text", "data"},
    "eval": {"base", "text"},
    "train": {"base", "xtts"},
    "run": {"base", "data"},
    "bench": {"base", "text", "data", "xtts", "train", "fixtures"},
    "fixtures": {"base", "text"},
    "package": {"xtts"},  # amh/__init__.py re-exports amh.load_tts
}
BASE_MODULES = {"config", "errors"}


def part_of(module: str) -> str | None:
    """amh.data.stream -> "data"; amh.config -> "base"; amh -> "package"; not amh -> None."""
    parts = module.split(".")
    if parts[0] != "amh":
        return None
    if len(parts) == 1:
        return "package"
    return "base" if parts[1] in BASE_MODULES else parts[1]


def module_name(path: Path) -> str:
    rel = path.relative_to(AMH.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Every amh module `path` imports, resolving `from amh.x import y` to amh.x.y when y is a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            for alias in node.names:
                candidate = AMH.parent / Path(*f"{node.module}.{alias.name}".split("."))
                if candidate.with_suffix(".py").exists() or (candidate / "__init__.py").exists():
                    found.add(f"{node.module}.{alias.name}")
    return {m for m in found if m == "amh" or m.startswith("amh.")}


def sources() -> list[Path]:
    return sorted(p for p in AMH.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_top_level_holds_only_packages_and_the_shared_base():
    loose = sorted(p.stem for p in AMH.glob("*.py") if p.stem != "__init__" and p.stem not in BASE_MODULES)
    assert not loose, f"modules at amh/'s top level, which belong in a package: {loose}"


def test_every_package_states_its_one_job():
    for init in sorted(AMH.rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and len(doc.split()) >= 5, f"{init.relative_to(AMH.parent)} has no docstring saying its job"


def test_every_package_has_a_place_in_the_layers():
    parts = {part_of(module_name(p)) for p in sources()}
    assert parts <= set(ALLOWED), f"packages without a layer in ALLOWED: {sorted(parts - set(ALLOWED))}"


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(AMH.parent)))
def test_imports_point_down_the_layers(path):
    here = part_of(module_name(path))
    wrong = sorted(m for m in imported_modules(path)
                   if (there := part_of(m)) not in (here, None) and there not in ALLOWED[here])
    assert not wrong, f"{path.relative_to(AMH.parent)} ({here}) imports {wrong}; {here} may import {sorted(ALLOWED[here])}"


def test_the_checker_sees_a_lazy_upward_import(tmp_path, monkeypatch):
    """The rule is only as good as the parser: an import inside a function must be seen."""
    fake = tmp_path / "amh" / "data"
    fake.mkdir(parents=True)
    (tmp_path / "amh" / "train").mkdir()
    (tmp_path / "amh" / "train" / "step.py").write_text("")
    src = fake / "x.py"
    src.write_text("def f():\n    from amh.train import step\n    return step\n")
    monkeypatch.setattr(__import__(__name__), "AMH", tmp_path / "amh")
    assert imported_modules(src) == {"amh.train", "amh.train.step"}
    assert part_of("amh.train.step") not in ALLOWED["data"]
