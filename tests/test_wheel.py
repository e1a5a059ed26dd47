"""The wheel carries everything it needs: built offline from this checkout, it holds every module
and language file and declares every third-party import; installed alone into a fresh virtual
environment that sees the already-installed dependencies but not this checkout, `xdner` works
there (`tests/wheel_smoke.py`, run from a folder outside the repository)."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Sequence

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "xtremedistil_ner"
LANGUAGE_FILES = f"{PACKAGE}/language_files"  # where pyproject.toml maps languages/
# What the build reads. Building a copy keeps build/ and *.egg-info out of the checkout, and a
# stale build/lib there (files since deleted) out of the wheel.
BUILD_INPUTS = ("pyproject.toml", "README.md", PACKAGE, "languages")
OPTIONAL = {"onnx"}  # extras whose imports must say how to install them
RUNTIME = REPO / "runtime"  # the torch-free distribution the package depends on
RUNTIME_INPUTS = ("pyproject.toml", "README.md", "xdner_runtime")


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def _pip(*args: str) -> list[str]:
    return [sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "--no-index", "--no-deps", "-q"]


def _build(root: Path, inputs: Sequence[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools installed (--no-build-isolation)")
    src = tmp_path_factory.mktemp("src")
    for name in inputs:
        if (root / name).is_dir():
            shutil.copytree(root / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(root / name, src / name)
    out = tmp_path_factory.mktemp("dist")
    _run(_pip("wheel", "--no-build-isolation", "-w", str(out), str(src)))
    (built,) = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(REPO, BUILD_INPUTS, tmp_path_factory)


@pytest.fixture(scope="module")
def runtime_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(RUNTIME, RUNTIME_INPUTS, tmp_path_factory)


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


def test_wheel_in_fresh_venv(wheel: Path, runtime_wheel: Path, tmp_path: Path) -> None:
    """A venv without system site-packages, the wheel installed into it, then a `.pth` naming the
    current site-packages so the dependencies (torch, ...) import without reinstalling them.
    Directories added by a `.pth` line are not scanned for `.pth` files themselves, so this
    checkout's editable install (a `.pth` plus import finder) stays out, unlike with
    --system-site-packages, where its finder would supply anything missing from the wheel."""
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    _run(_pip("--python", str(python), "install", str(wheel), str(runtime_wheel)))
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


def test_runtime_wheel_holds_its_modules_and_page(runtime_wheel: Path) -> None:
    package = RUNTIME / "xdner_runtime"
    expected = {f"xdner_runtime/{p.name}" for p in package.iterdir() if p.suffix in (".py", ".html")}
    with zipfile.ZipFile(runtime_wheel) as whl:
        files = {n for n in whl.namelist() if not n.split("/")[0].endswith(".dist-info")}
    assert files == expected, f"missing: {sorted(expected - files)}; unexpected: {sorted(files - expected)}"


def _requirement_closure(roots: Sequence[str]) -> dict[str, importlib.metadata.Distribution]:
    """The installed distributions that `roots` (requirement strings) need, transitively."""
    from packaging.requirements import Requirement

    found: dict[str, importlib.metadata.Distribution] = {}
    todo = [(Requirement(r), "") for r in roots]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        dist = importlib.metadata.distribution(req.name)
        for wanted in req.extras or {""}:
            key = f"{_distribution_name(req.name)}[{wanted}]"
            if key not in found:
                found[key] = dist
                todo += [(Requirement(r), wanted) for r in dist.requires or []]
    return {_distribution_name(d.metadata["Name"]): d for d in found.values()}


def test_runtime_tags_in_a_venv_without_torch(runtime_wheel: Path, tmp_path: Path, tiny_tokenizer) -> None:
    """The runtime wheel (with its `serve` extra) installed offline into a fresh venv that holds
    only what it declares (each needed distribution linked in from this environment; torch and
    transformers are not among them): pip finds every requirement met, and a graph exported
    here tags there exactly as the PyTorch student does here, torch never imported."""
    from test_tagger import make_student

    from xtremedistil_ner.export import export_onnx
    from xtremedistil_ner.students import save_student
    from xtremedistil_ner.tagger import Tagger

    model = tmp_path / "model"
    save_student(make_student(tiny_tokenizer, max_length=16), model, tiny_tokenizer)
    graph = export_onnx(Tagger.load(model).student, model / "model.onnx")
    texts = ["Anna Schmidt flew from Berlin to Paris on Monday.", "", " ".join(["Straße", "東京", "<s>", "x"] * 12)]
    expected = Tagger.load(model)(texts)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    needed = _requirement_closure(["xtremedistil-ner-runtime[serve]"])
    needed.pop("xtremedistil-ner-runtime")
    assert not {"torch", "transformers"} & set(needed), sorted(needed)
    for dist in needed.values():
        for top in {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}:
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (purelib / top).exists():
                (purelib / top).symlink_to(source)
    # With dependencies (no --no-deps), from no index: pip must find every requirement already met.
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "--disable-pip-version-check", "-q",
          f"{runtime_wheel}[serve]"])

    script = tmp_path / "tag.py"
    script.write_text(
        "import importlib.util, json, sys\n"
        "assert importlib.util.find_spec('torch') is None and importlib.util.find_spec('transformers') is None\n"
        "from xdner_runtime import Tagger\n"
        "from xdner_runtime.serve import create_app\n"
        "tagger = Tagger.load(sys.argv[1], sys.argv[2])\n"
        "create_app(tagger, {'name': 'installed'})  # renders page.html from the installed package\n"
        "print(json.dumps(tagger(json.loads(sys.argv[3]))))\n"
        "assert not {'torch', 'transformers'} & set(sys.modules), 'torch was imported'\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    proc = subprocess.run([str(python), str(script), str(model), str(graph), json.dumps(texts)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert [[(e["label"], e["start"], e["end"]) for e in doc] for doc in got] == \
        [[(e["label"], e["start"], e["end"]) for e in doc] for doc in expected]
    assert any(got), "the check needs a student that finds entities"
    for doc_got, doc_want in zip(got, expected):
        assert all(abs(a["score"] - b["score"]) < 1e-4 for a, b in zip(doc_got, doc_want))
    serve_help = subprocess.run([str(venv / "bin" / "xdner-serve"), "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert serve_help.returncode == 0 and "--onnx" in serve_help.stdout, serve_help.stderr
