"""Imports point one way, down the pipeline: no import cycle among hpc_mle's modules.

The graph is read from the source with `ast` (nothing is imported): every `import` and `from ... import`
of an hpc_mle module, at the top of a file or inside a function (a lazy import closes a cycle just the
same, only later), except those under `if TYPE_CHECKING:`, which never run. `from hpc_mle.x import y`
is an edge to hpc_mle.x, and to hpc_mle.x.y when that is a module.

`python tests/test_import_graph.py` prints any cycle and the edges that close it, with file and line.
There is no allow-list: a new cycle is broken where it is made.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections import defaultdict, deque
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hpc_mle"

# The direction each fixed pair must keep: the lower module never reaches the higher one, even through others.
LAYERS = [
    ("hpc_mle.boxes", "hpc_mle.metrics"),  # box arithmetic under the metric registry
    ("hpc_mle.metric_types", "hpc_mle.metrics"),
    ("hpc_mle.metrics", "hpc_mle.competitions"),  # specs are checked against the registry
    ("hpc_mle.config", "hpc_mle.plan"),  # config -> plan -> jobs ...
    ("hpc_mle.upstream", "hpc_mle.kaggle"),  # a fact source under the download layer
    ("hpc_mle.upstream", "hpc_mle.prepare"),
    ("hpc_mle.extra_downloads", "hpc_mle.kaggle"),
    ("hpc_mle.extra_downloads", "hpc_mle.prepare"),
    ("hpc_mle.prepared", "hpc_mle.prepare"),
    ("hpc_mle.kaggle", "hpc_mle.prepare"),  # preparing downloads; the Slurm prepare job is prepare's
    ("hpc_mle.kaggle", "hpc_mle.plan"),
    ("hpc_mle.doctor", "hpc_mle.preflight"),  # the preflight runs the doctor's cheap checks
    ("hpc_mle.slurm", "hpc_mle.preflight"),  # the preflight checks what slurm would submit
    ("hpc_mle.slurm_nodes", "hpc_mle.slurm"),
    ("hpc_mle.launch_log", "hpc_mle.slurm"),  # the launch log and job names, read by status
    ("hpc_mle.attempt_state", "hpc_mle.status"),  # an attempt's own word under the queue reconciliation
    ("hpc_mle.status", "hpc_mle.slurm"),  # the analysis job (slurm submits it) settles states through status
    ("hpc_mle.slurm_queue", "hpc_mle.slurm"),  # the queue reader under both the server's teardown and slurm
    ("hpc_mle.slurm_queue", "hpc_mle.llm.serve"),
    ("hpc_mle.llm.serve", "hpc_mle.slurm"),  # slurm submits the server's jobs, never the other way
]

Edges = dict[str, dict[str, list[str]]]  # importer -> imported -> ["file:line", ...]


def module_names(root: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, not `.__init__`)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


STATEMENT = re.compile(r"[ \t]*(?:from[ \t]+[\w.]+[ \t]+import\b|import[ \t]+\w)")
TYPE_CHECKING = re.compile(r"if[ \t]+(?:typing\.)?TYPE_CHECKING[ \t]*:")


def _statement_at(lines: list[str], i: int) -> tuple[int, str]:
    """The import statement starting at line i (parenthesised or continued lines joined), and its last line."""
    j, text = i, lines[i]
    while (text.count("(") > text.count(")") or text.rstrip().endswith("\\")) and j + 1 < len(lines):
        j += 1
        text += "\n" + lines[j]
    return j, textwrap.dedent(text)


def _scan(text: str) -> tuple[list[tuple[int, str]], bool]:
    """(line, statement) of each import outside triple-quoted strings and `if TYPE_CHECKING:` blocks, and
    whether the string tracking ended balanced. Reading lines is ~20x faster than parsing every file."""
    lines, found = text.splitlines(), []
    in_string, guard, i = False, None, 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if not in_string and stripped and guard is not None and indent <= guard:
            guard = None
        if not in_string and guard is None and STATEMENT.match(line):
            last, statement = _statement_at(lines, i)
            found.append((i + 1, statement))
            i = last + 1
            continue
        if not in_string and TYPE_CHECKING.match(stripped):
            guard = indent
        if in_string or not stripped.startswith("#"):
            in_string ^= (line.count('"""') + line.count("'''")) % 2 == 1
        i += 1
    return found, not in_string


def _imports(text: str, path: Path) -> list[ast.Import | ast.ImportFrom]:
    """The file's import nodes (lineno as in the file); a file whose strings the scan misread is parsed whole."""
    found, balanced = _scan(text)
    if not balanced:
        tree = ast.parse(text, str(path))
        guards = [n for n in ast.walk(tree) if isinstance(n, ast.If) and TYPE_CHECKING.match(
            ast.get_source_segment(text, n) or "")]
        skip = {id(n) for guard in guards for statement in guard.body for n in ast.walk(statement)}
        return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in skip]
    nodes = []
    for lineno, statement in found:
        try:
            node = ast.parse(statement).body[0]
        except SyntaxError:  # prose that starts like an import
            continue
        node.lineno = lineno
        nodes.append(node)
    return nodes


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The dotted names an import statement loads (what exists among our modules is decided by the caller)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    return [prefix, *(f"{prefix}.{alias.name}" for alias in node.names)]


def import_edges(root: Path = PACKAGE) -> Edges:
    """importer -> imported -> where, for every import between two of our modules."""
    modules = module_names(root)
    edges: Edges = defaultdict(lambda: defaultdict(list))
    for name, path in modules.items():
        for node in _imports(path.read_text(encoding="utf-8"), path):
            for target in _targets(name, path.name == "__init__.py", node):
                if target in modules and target != name:
                    edges[name][target].append(f"{path.relative_to(root.parent)}:{node.lineno}")
    return edges


def as_graph(edges: Edges) -> dict[str, set[str]]:
    return {a: set(targets) for a, targets in edges.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def path_between(graph: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    """A shortest import chain from start to goal (breadth first), or None."""
    came_from: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            chain = [node]
            while came_from[chain[-1]] is not None:
                chain.append(came_from[chain[-1]])
            return chain[::-1]
        for nxt in sorted(graph.get(node, ())):
            if nxt not in came_from:
                came_from[nxt] = node
                queue.append(nxt)
    return None


def describe(edges: Edges, components: list[list[str]]) -> str:
    """Each cycle's modules, then the edges inside it with where they are written."""
    lines = []
    for component in components:
        lines.append(f"cycle of {len(component)}: {', '.join(component)}")
        for a in component:
            for b in sorted(set(edges.get(a, {})) & set(component)):
                lines.append(f"    {a} -> {b}  ({', '.join(edges[a][b])})")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def edges() -> Edges:
    return import_edges()


def test_no_import_cycle(edges):
    left = cycles(as_graph(edges))
    assert not left, "import cycles (move the shared part into a module below both):\n" + describe(edges, left)


def test_the_fixed_pairs_keep_their_direction(edges):
    graph = as_graph(edges)
    upward = {(low, high): path_between(graph, low, high) for low, high in LAYERS}
    assert not {k: v for k, v in upward.items() if v}, upward


def test_layers_name_our_modules():
    """A misspelt pair would check nothing: both ends must be modules of ours."""
    assert {name for pair in LAYERS for name in pair} <= set(module_names())


def test_the_walk_finds_lazy_relative_and_package_imports(tmp_path):
    """The reader on a made-up package: a lazy import inside a function, a relative import, a parenthesised
    one and `from pkg import module` each make an edge; a TYPE_CHECKING import and an import written in a
    docstring do not, also in a file whose quotes the line scan cannot follow (parsed whole)."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text('"""Docs.\n\nfrom pkg import sub\n"""\n\ndef f():\n    from pkg import high\n    return high\n')
    (pkg / "high.py").write_text("from typing import TYPE_CHECKING\nfrom . import (\n    low,\n)\n"
                                 "if TYPE_CHECKING:\n    from pkg.sub import leaf\n")
    (pkg / "sub" / "__init__.py").write_text("QUOTE = '\"\"\"'\nfrom .leaf import x\nif TYPE_CHECKING:\n"
                                             "    from pkg import low\n")
    (pkg / "sub" / "leaf.py").write_text("x = 1\n")
    found = import_edges(pkg)
    assert {a: set(b) for a, b in found.items()} == {"pkg.low": {"pkg", "pkg.high"}, "pkg.high": {"pkg", "pkg.low"},
                                                      "pkg.sub": {"pkg.sub.leaf"}}
    assert _scan((pkg / "sub" / "__init__.py").read_text())[1] is False  # the whole-file parse was used
    assert cycles(as_graph(found)) == [["pkg.high", "pkg.low"]]
    assert found["pkg.low"]["pkg.high"] == ["pkg/low.py:7"] and found["pkg.high"]["pkg.low"] == ["pkg/high.py:2"]


if __name__ == "__main__":
    graph = import_edges()
    every = cycles(as_graph(graph))
    print(describe(graph, every) if every else "no import cycle")
