"""The house's boundaries (README "How it works"), checked on every import of every
module, function-level imports included.

- No module reaches into another package's private rooms (``pipeline.X._y``); the root's
  own private modules (``pipeline._gc``...) serve the whole house.
- The engine imports no wire format, no SQL and no storage library; an adapter knows no
  scheduling or state; a store backend knows no provider; only the adapters, the outputs
  layer and the emulator speak HTTP.
- A file-format library (pyarrow) serves the dataset export (``ledger/``) and the outputs
  layer only: the engine, the stores and the root import none.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "pipeline"
STORAGE_LIBS = {"sqlite3", "psycopg", "psycopg_pool", "obstore", "aiofiles"}
FORMAT_LIBS = {"pyarrow"}
HTTP_LIBS = {"aiohttp"}
# Which of the house's packages each package may import (besides the root's modules).
MAY_USE = {
    "cli": {"cli", "engine", "manifest", "emulator", "ledger", "store", "gallery"},
    "engine": {"engine", "store", "outputs", "ledger", "providers", "manifest"},
    "store": {"store"},
    "outputs": {"outputs"},
    "ledger": {"ledger", "store", "outputs"},
    "providers": {"providers"},
    "manifest": {"manifest", "providers"},
    "gallery": {"gallery"},
    "emulator": {"emulator", "providers"},
}
PACKAGES = set(MAY_USE)


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # ``from pipeline.x import _y`` reaches a private module too.
            found += [
                (node.lineno, f"{node.module}.{alias.name}")
                for alias in node.names
                if alias.name.startswith("_") and node.module.startswith("pipeline")
            ]
    return found


def _modules() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def _package(path: Path) -> str | None:
    parts = path.relative_to(ROOT).parts
    return parts[0] if len(parts) > 1 else None


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_imports_follow_the_layers(path: Path) -> None:
    """Every import of this module is one its layer may make."""
    home = _package(path)
    wrong = []
    for line, name in _imports(path):
        top, *rest = name.split(".")
        where = f"{path.name}:{line}: {name}"
        if top in STORAGE_LIBS and home not in ("store", "outputs", None):
            wrong.append(f"{where} (storage library outside store/ and outputs/)")
        if top in FORMAT_LIBS and home not in ("ledger", "outputs"):
            wrong.append(f"{where} (file-format library outside ledger/ and outputs/)")
        if top in HTTP_LIBS and home not in ("providers", "outputs", "emulator"):
            wrong.append(f"{where} (HTTP outside providers/, outputs/, emulator/)")
        if top != "pipeline" or not rest or rest[0] not in PACKAGES:
            continue
        package = rest[0]
        if home is not None and package not in MAY_USE[home]:
            wrong.append(f"{where} ({home}/ may not use {package}/)")
        if package != home and len(rest) > 1 and rest[1].startswith("_"):
            wrong.append(f"{where} (a private module of {package}/)")
    assert not wrong, "\n".join(wrong)


def test_the_root_uses_only_public_surfaces() -> None:
    """A sanity check of the checker: it sees the engine's imports."""
    names = {name for _, name in _imports(ROOT / "engine" / "_runner.py")}
    assert "pipeline.store" in names
    assert not any(n.split(".")[0] in STORAGE_LIBS | FORMAT_LIBS | HTTP_LIBS for n in names)
