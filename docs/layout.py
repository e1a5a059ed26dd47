"""Draw the package's layout: its modules grouped by the stage of the data flow they serve, and
their load-time imports (those tests/test_structure.py keeps acyclic), thinned to a transitive
reduction so each arrow that is drawn is one no other path implies. Writes docs/layout.dot and,
where Graphviz's `dot` is installed, docs/layout.svg.

    python docs/layout.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import networkx as nx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from test_structure import PACKAGE, load_time_imports, module_name  # noqa: E402  (one parser of imports)

GROUPS = {  # cluster label -> module name prefixes (after "xtremedistil_ner."), in the data flow's order
    "commands": ["cli", "validate", "predict", "export", "serving", "demo", "demo_data", "tagger"],
    "run": ["pipeline", "steps"],
    "data": ["data", "encoding", "languages", "batching"],
    "teacher": ["teacher", "backbones"],
    "transfer cache": ["cache"],
    "students": ["students", "stages", "distiller", "training"],
    "evaluation": ["scoring", "speed", "report", "card", "figures"],
    "foundations": ["config", "preflight", "provenance", "layout", "io", "files", "errors", "log", "threads"],
}


def group_of(module: str) -> str:
    short = module.removeprefix("xtremedistil_ner.")
    for label, prefixes in GROUPS.items():
        if any(short == p or short.startswith(p + ".") for p in prefixes):
            return label
    return "other"


def graph() -> nx.DiGraph:
    g = nx.DiGraph()
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        if name == "xtremedistil_ner" or path.name == "__init__.py" and name.count(".") > 0:
            continue  # packages re-export their modules; draw the modules
        g.add_node(name)
        for dep in load_time_imports(path):
            if dep != "xtremedistil_ner" and not dep.startswith(name + "."):
                g.add_edge(name, dep)
    g.remove_nodes_from([n for n in list(g) if (PACKAGE.parent / Path(*n.split("."))).is_dir()])  # package nodes
    return nx.transitive_reduction(g)


def dot_source(g: nx.DiGraph) -> str:
    lines = ["digraph layout {", '  rankdir=TB; node [shape=box, fontname="Helvetica", fontsize=10]; edge [color="#888888"];']
    for i, label in enumerate([*GROUPS, "other"]):
        members = sorted(n for n in g if group_of(n) == label)
        if members:
            lines.append(f'  subgraph cluster_{i} {{ label="{label}"; style=rounded; color="#4477aa";')
            lines += [f'    "{m}" [label="{m.removeprefix("xtremedistil_ner.")}"];' for m in members]
            lines.append("  }")
    lines += [f'  "{a}" -> "{b}";' for a, b in sorted(g.edges)]
    return "\n".join(lines + ["}"]) + "\n"


def main() -> None:
    text = dot_source(graph())
    (HERE / "layout.dot").write_text(text)
    if shutil.which("dot"):
        subprocess.run(["dot", "-Tsvg", "-o", str(HERE / "layout.svg")], input=text.encode(), check=True)


if __name__ == "__main__":
    main()
