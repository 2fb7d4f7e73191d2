"""The package surface: ``__all__`` resolves, the pure core imports no Kafka client,
``py.typed`` ships, and nothing unpickles."""

from __future__ import annotations

import ast
import importlib.resources
import io
import pkgutil
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

import stream
import stream.core

PACKAGE_DIR = Path(stream.__file__).resolve().parent
CORE_MODULES = sorted(
    f"stream.core.{m.name}" for m in pkgutil.iter_modules(stream.core.__path__))
#: Every module but ``__main__`` (imported in a subprocess below).
ALL_MODULES = sorted(
    m.name for m in pkgutil.walk_packages(stream.__path__, "stream.")
    if m.name != "stream.__main__")
SOURCES = sorted(PACKAGE_DIR.rglob("*.py"))
KAFKA_CLIENTS = ("faust", "aiokafka", "mode", "kafka", "confluent_kafka")


def test_core_modules_found() -> None:
    assert {"stream.core.monitor", "stream.core.registry", "stream.core.psi",
            "stream.core.reference"} <= set(CORE_MODULES)
    assert len(SOURCES) >= 20


@pytest.mark.parametrize("name", stream.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(stream, name) is not None


def test_all_has_no_duplicates_and_names_the_version() -> None:
    assert len(stream.__all__) == len(set(stream.__all__))
    assert "__version__" in stream.__all__
    assert isinstance(stream.__version__, str) and stream.__version__.count(".") == 2


def test_every_public_class_and_function_is_documented() -> None:
    for name in stream.__all__:
        obj = getattr(stream, name)
        if callable(obj):
            assert (obj.__doc__ or "").strip(), name


def test_error_classes_share_one_root() -> None:
    errors = [getattr(stream, n) for n in stream.__all__ if n.endswith("Error") or n == "InvalidEvent"]
    assert len(errors) >= 5
    for cls in errors:
        assert issubclass(cls, stream.DriftstreamError), cls


def test_every_module_all_resolves() -> None:
    """Each module's own ``__all__`` names things it defines or imports (run in a
    subprocess: importing ``stream.kafka`` loads Faust)."""
    code = (
        "import importlib, sys\n"
        f"bad = []\nfor name in {ALL_MODULES!r}:\n"
        "    mod = importlib.import_module(name)\n"
        "    for n in getattr(mod, '__all__', []):\n"
        "        if not hasattr(mod, n): bad.append(f'{name}.{n}')\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stderr


def test_core_imports_no_kafka_client() -> None:
    code = (
        f"import {', '.join(CORE_MODULES)}\n"
        "import sys\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {KAFKA_CLIENTS!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_core_source_imports_no_kafka_client() -> None:
    """The static counterpart: no import of a Kafka client anywhere in stream/core, even
    inside a function."""
    for path in sorted((PACKAGE_DIR / "core").glob("*.py")):
        for name in imported_modules(path):
            assert name.split(".")[0] not in KAFKA_CLIENTS, f"{path.name} imports {name}"
            assert not name.startswith("stream.kafka"), f"{path.name} imports {name}"


def test_py_typed_is_shipped() -> None:
    assert importlib.resources.files("stream").joinpath("py.typed").is_file()
    pyproject = (PACKAGE_DIR.parent / "pyproject.toml").read_text()
    assert 'stream = ["py.typed"]' in pyproject


def imported_modules(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name)
              and getattr(node.func, "attr", getattr(node.func, "id", None))
              in ("import_module", "__import__")
              and node.args and isinstance(node.args[0], ast.Constant)):
            names.append(str(node.args[0].value))
    return names


UNSAFE_DESERIALISERS = ("pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "marshal",
                        "joblib")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE_DIR)))
def test_no_module_imports_pickle(path: Path) -> None:
    for name in imported_modules(path):
        assert name.split(".")[0] not in UNSAFE_DESERIALISERS, f"{path.name} imports {name}"
    # nor any name from them in code (docstrings and comments may say "never pickles")
    names = {tok.string for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
             if tok.type == tokenize.NAME}
    assert not names & set(UNSAFE_DESERIALISERS), f"{path.name}: {names & set(UNSAFE_DESERIALISERS)}"


def test_import_scan_finds_every_import_form(tmp_path: Path) -> None:
    """The AST scan above must be able to fail."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os, pickle as p\n"
        "from dill import loads\n"
        "from . import sibling\n"
        "def f():\n"
        "    import marshal\n"
        "    import importlib\n"
        "    return importlib.import_module('cloudpickle'), __import__('shelve')\n"
    )
    assert sorted(imported_modules(sample)) == sorted(
        ["os", "pickle", "dill", "marshal", "importlib", "cloudpickle", "shelve"])
