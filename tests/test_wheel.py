"""The wheel carries everything it needs: built offline from this checkout, it holds every module
and language file and declares every third-party import; installed alone into a fresh virtual
environment that sees the already-installed dependencies but not this checkout, `xdner` works
there (`tests/wheel_smoke.py`, run from a folder outside the repository)."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "xtremedistil_ner"
LANGUAGE_FILES = f"{PACKAGE}/language_files"  # where pyproject.toml maps languages/
# What the build reads. Building a copy keeps build/ and *.egg-info out of the checkout, and a
# stale build/lib there (files since deleted) out of the wheel.
BUILD_INPUTS = ("pyproject.toml", "README.md", PACKAGE, "languages")
OPTIONAL = {"onnx"}  # extras whose imports must say how to install them


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def _pip(*args: str) -> list[str]:
    return [sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "--no-index", "--no-deps", "-q"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools installed (--no-build-isolation)")
    src = tmp_path_factory.mktemp("src")
    for name in BUILD_INPUTS:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, src / name)
    out = tmp_path_factory.mktemp("dist")
    _run(_pip("wheel", "--no-build-isolation", "-w", str(out), str(src)))
    (built,) = out.glob("*.whl")
    return built


def _distribution_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_wheel_holds_every_module_and_language_file(wheel: Path) -> None:
    expected = {p.relative_to(REPO).as_posix() for p in (REPO / PACKAGE).rglob("*.py") if "__pycache__" not in p.parts}
    languages = REPO / "languages"
    data = [*languages.glob("*.yaml"), *languages.glob("sets/*.yaml"), languages / "README.md", languages / "__init__.py"]
    expected |= {f"{LANGUAGE_FILES}/{p.relative_to(languages).as_posix()}" for p in data}
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
    files = {n for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert files == expected, (
        f"missing from the wheel (a package not listed in pyproject.toml [tool.setuptools] packages?): "
        f"{sorted(expected - files)}; unexpected: {sorted(files - expected)}"
    )


def test_every_import_is_a_declared_dependency(wheel: Path) -> None:
    """Third-party imports anywhere in the package, also inside functions, are in Requires-Dist
    (the `onnx` extra counts: onnxruntime is imported only where it is needed)."""
    with zipfile.ZipFile(wheel) as whl:
        metadata = whl.read(next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    declared = set()
    for line in metadata.splitlines():
        if line.startswith("Requires-Dist:"):
            requirement = line.split(":", 1)[1].strip()
            extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)", requirement)
            if extra is None or extra.group(1) in OPTIONAL:
                declared.add(_distribution_name(re.match(r"[A-Za-z0-9._-]+", requirement).group()))
    modules: dict[str, set[str]] = {}
    for path in (REPO / PACKAGE).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            else:
                continue
            for top in {n.split(".")[0] for n in names} - set(sys.stdlib_module_names) - {PACKAGE}:
                modules.setdefault(top, set()).add(path.relative_to(REPO).as_posix())
    provided = importlib.metadata.packages_distributions()
    undeclared = {
        module: sorted(where) for module, where in modules.items()
        if not {_distribution_name(d) for d in provided.get(module, [module])} & declared
    }
    assert not undeclared, f"imported but not in pyproject.toml [project] dependencies: {undeclared}"


def test_wheel_in_fresh_venv(wheel: Path, tmp_path: Path) -> None:
    """A venv without system site-packages, the wheel installed into it, then a `.pth` naming the
    current site-packages so the dependencies (torch, ...) import without reinstalling them.
    Directories added by a `.pth` line are not scanned for `.pth` files themselves, so this
    checkout's editable install (a `.pth` plus import finder) stays out, unlike with
    --system-site-packages, where its finder would supply anything missing from the wheel."""
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    _run(_pip("--python", str(python), "install", str(wheel)))
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip()
    deps = [*site.getsitepackages(), *([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])]
    Path(purelib, "_test_wheel_dependencies.pth").write_text("".join(f"{d}\n" for d in deps if Path(d).is_dir()))

    work = tmp_path / "work"  # outside the repository, so nothing there can shadow the venv's copy
    work.mkdir()
    smoke = shutil.copy(REPO / "tests" / "wheel_smoke.py", work / "wheel_smoke.py")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "XDNER_LANGUAGES_DIR")}
    proc = subprocess.run([str(python), str(smoke)], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"wheel smoke checks failed:\n{proc.stdout}\n{proc.stderr}"
    print(proc.stdout)
