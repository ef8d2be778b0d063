"""The shape of the code base, read from the source (ast; nothing is imported): no import cycle among the
modules of lla_jax/ and data_pipelines/, lla_jax/ never imports TensorFlow or TFDS, neither package imports
tests/, and no Python module of the repository is over MAX_LINES lines.

Imports are collected at any depth (module level, inside functions and classes, under `if`/`try`), plus
`importlib.import_module("...")` calls with a constant name. Each import becomes an edge to the deepest
project module it names: `import a.b.c` -> a.b.c; `from a.b import c` -> a.b.c when that is a module,
else a.b (c is a name defined in a/b.py or a/b/__init__.py); relative forms are resolved against the
importing module's package. The implicit import of parent packages is not an edge (a package __init__
that imports its submodules lazily would otherwise close a cycle with every submodule).
"""
from __future__ import annotations

import ast
import collections
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("lla_jax", "data_pipelines")
MAX_LINES = 600
TENSORFLOW = ("tensorflow", "tensorflow_datasets")

Import = collections.namedtuple("Import", "source target line")   # target: the full dotted name imported


def discover(root: pathlib.Path, packages=PACKAGES) -> dict[str, pathlib.Path]:
  """{dotted module name: file} of every .py file under root/<package> (package __init__ = the package)."""
  out = {}
  for package in packages:
    for path in sorted((root / package).rglob("*.py")):
      parts = path.relative_to(root).with_suffix("").parts
      if parts[-1] == "__init__":
        parts = parts[:-1]
      out[".".join(parts)] = path
  return out


def _package_of(name: str, path: pathlib.Path) -> str:
  return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _resolve_from(name: str, path: pathlib.Path, node: ast.ImportFrom) -> str:
  """The absolute module name of a `from X import ...` (relative levels resolved)."""
  if not node.level:
    return node.module
  base = _package_of(name, path).split(".")
  if node.level - 1 > len(base) - 1:
    raise ValueError(f"{path}:{node.lineno}: relative import beyond the top-level package")
  base = base[:len(base) - (node.level - 1)]
  return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, path: pathlib.Path, modules) -> list[Import]:
  """Every import of one module, at any depth: full dotted names (project or not), with line numbers.
  `from a import b` yields a.b when a.b is a module of `modules`, else a."""
  tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out.extend(Import(name, alias.name, node.lineno) for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = _resolve_from(name, path, node)
      for alias in node.names:
        sub = f"{base}.{alias.name}"
        out.append(Import(name, sub if sub in modules else base, node.lineno))
    elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
          and isinstance(node.func.value, ast.Name) and node.func.value.id == "importlib" and node.args
          and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
      out.append(Import(name, node.args[0].value, node.lineno))
  return out


def project_module(target: str, modules) -> str | None:
  """The deepest module of `modules` that the dotted name `target` names (None: not a project module)."""
  parts = target.split(".")
  for k in range(len(parts), 0, -1):
    candidate = ".".join(parts[:k])
    if candidate in modules:
      return candidate
  return None


def import_graph(modules: dict[str, pathlib.Path]) -> dict[str, dict[str, int]]:
  """{module: {imported project module: first line}} (self-imports dropped)."""
  graph = {m: {} for m in modules}
  for name, path in modules.items():
    for imp in imports_of(name, path, modules):
      target = project_module(imp.target, modules)
      if target is not None and target != name:
        graph[name].setdefault(target, imp.line)
  return graph


def strongly_connected(graph) -> list[list[str]]:
  """Tarjan's strongly connected components with more than one module, each sorted; sorted list."""
  index, low, stack, on_stack, out = {}, {}, [], set(), []
  counter = [0]

  def visit(v):
    # Iterative DFS (deep import chains must not hit the recursion limit).
    work = [(v, iter(sorted(graph[v])))]
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on_stack.add(v)
    while work:
      node, children = work[-1]
      for w in children:
        if w not in index:
          index[w] = low[w] = counter[0]
          counter[0] += 1
          stack.append(w)
          on_stack.add(w)
          work.append((w, iter(sorted(graph[w]))))
          break
        if w in on_stack:
          low[node] = min(low[node], index[w])
      else:
        work.pop()
        if work:
          low[work[-1][0]] = min(low[work[-1][0]], low[node])
        if low[node] == index[node]:
          comp = []
          while True:
            w = stack.pop()
            on_stack.discard(w)
            comp.append(w)
            if w == node:
              break
          if len(comp) > 1:
            out.append(sorted(comp))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return sorted(out)


def shortest_cycle(graph, component) -> list[str]:
  """A shortest import cycle through the first module of a strongly connected component: [m0, m1, ..., m0]."""
  members = set(component)
  start = component[0]
  parent = {start: None}
  queue = collections.deque([start])
  while queue:
    v = queue.popleft()
    for w in sorted(graph[v]):
      if w == start:
        path = [v]
        while parent[path[-1]] is not None:
          path.append(parent[path[-1]])
        return [start] + path[::-1][1:] + [start]
      if w in members and w not in parent:
        parent[w] = v
        queue.append(w)
  raise AssertionError(f"{component} is not strongly connected")


def describe_cycles(graph) -> list[str]:
  """One entry per import cycle (strongly connected component): its members, a shortest cycle with the line
  of each import (e.g. 'a.x:12 -> a.y:40 -> a.x'), and every import inside the component (what to cut)."""
  out = []
  for comp in strongly_connected(graph):
    cycle = shortest_cycle(graph, comp)
    hops = " -> ".join(f"{a}:{graph[a][b]}" for a, b in zip(cycle, cycle[1:]))
    edges = ", ".join(f"{a}:{line} -> {b}" for a in comp for b, line in sorted(graph[a].items()) if b in comp)
    out.append(f"cycle among {comp}: {hops} -> {cycle[-1]}\n  imports inside it: {edges}")
  return out


def python_files(root: pathlib.Path) -> list[pathlib.Path]:
  """Every .py file of the repository (not under hidden folders)."""
  return sorted(p for p in root.rglob("*.py") if not any(part.startswith(".") for part in p.relative_to(root).parts))


# ---------------------------------------------------------------------------------------------------
# The checks on this repository.


@pytest.fixture(scope="module")
def modules():
  return discover(ROOT)


@pytest.fixture(scope="module")
def all_imports(modules):
  return [imp for name, path in modules.items() for imp in imports_of(name, path, modules)]


def test_both_packages_are_found(modules):
  assert {"lla_jax", "data_pipelines", "data_pipelines.input_pipeline", "lla_jax.train"} <= set(modules)


def test_no_import_cycles(modules):
  cycles = describe_cycles(import_graph(modules))
  assert not cycles, "import cycles (module:line of the import):\n" + "\n".join(cycles)


def test_data_pipelines_have_no_import_cycles(modules):
  data = {m: p for m, p in modules.items() if m.split(".")[0] == "data_pipelines"}
  cycles = describe_cycles(import_graph(data))
  assert not cycles, "\n".join(cycles)


def test_lla_jax_never_imports_tensorflow(all_imports):
  bad = [f"{imp.source}:{imp.line} imports {imp.target}" for imp in all_imports
         if imp.source.split(".")[0] == "lla_jax" and imp.target.split(".")[0] in TENSORFLOW]
  assert not bad, "TensorFlow belongs in data_pipelines/ only:\n" + "\n".join(bad)


def test_packages_never_import_tests(all_imports):
  bad = [f"{imp.source}:{imp.line} imports {imp.target}" for imp in all_imports if imp.target.split(".")[0] == "tests"]
  assert not bad, "the packages must not depend on tests/ (oracles live in tests/reference/):\n" + "\n".join(bad)


def test_no_module_over_the_size_limit():
  sizes = {p.relative_to(ROOT): len(p.read_text(encoding="utf-8").splitlines()) for p in python_files(ROOT)}
  big = [f"{p}: {n} lines" for p, n in sorted(sizes.items()) if n > MAX_LINES]
  assert not big, f"modules over {MAX_LINES} lines:\n" + "\n".join(big)


# ---------------------------------------------------------------------------------------------------
# The checker itself, on small packages written to tmp_path.


def _write(root: pathlib.Path, files: dict[str, str]):
  for rel, text in files.items():
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_checker_finds_a_cycle_through_every_import_form(tmp_path):
  _write(tmp_path, {
      "pkg/__init__.py": "",
      "pkg/a.py": "from pkg import b\n",                               # from-package-import-module
      "pkg/b.py": "def f():\n  from .sub import c\n  return c\n",      # relative, inside a function
      "pkg/sub/__init__.py": "",
      "pkg/sub/c.py": "import importlib\n\n\nclass K:\n  def m(self):\n    import pkg.d\n",   # in a method
      "pkg/d.py": "if True:\n  try:\n    from . import x\n  except ImportError:\n    pass\n"
                  "import importlib\nM = importlib.import_module('pkg.a')\n",            # a constant import_module
      "pkg/x.py": "",
      "other/__init__.py": "",
      "other/y.py": "import tests.reference\nfrom tensorflow import io\n",
  })
  modules = discover(tmp_path, ("pkg", "other"))
  assert set(modules) == {"pkg", "pkg.a", "pkg.b", "pkg.sub", "pkg.sub.c", "pkg.d", "pkg.x", "other", "other.y"}
  graph = import_graph(modules)
  assert graph["pkg.b"] == {"pkg.sub.c": 2} and graph["pkg.sub.c"] == {"pkg.d": 6}
  assert graph["pkg.d"] == {"pkg.x": 3, "pkg.a": 7}
  assert strongly_connected(graph) == [["pkg.a", "pkg.b", "pkg.d", "pkg.sub.c"]]
  assert describe_cycles(graph) == [
      "cycle among ['pkg.a', 'pkg.b', 'pkg.d', 'pkg.sub.c']: pkg.a:1 -> pkg.b:2 -> pkg.sub.c:6 -> pkg.d:7 -> pkg.a\n"
      "  imports inside it: pkg.a:1 -> pkg.b, pkg.b:2 -> pkg.sub.c, pkg.d:7 -> pkg.a, pkg.sub.c:6 -> pkg.d"]
  targets = {imp.target for imp in imports_of("other.y", modules["other.y"], modules)}
  assert targets == {"tests.reference", "tensorflow"}


def test_checker_no_false_positive(tmp_path):
  # A package __init__ that imports a submodule lazily, submodules importing siblings through the package
  # (`from pkg import b`, relative forms) and a name from the package __init__: a tree, no cycle.
  files = {
      "pkg/__init__.py": "VERSION = 1\n\n\ndef run():\n  from pkg import a\n  return a\n",
      "pkg/a.py": "from pkg import b\nfrom .b import helper\n",
      "pkg/b.py": "import os\nimport numpy as np\n\n\ndef helper():\n  return os, np\n",
      "pkg/v.py": "from pkg import VERSION\n",
      "pkg/sub/__init__.py": "from .. import b\n",
      "pkg/sub/c.py": "from ..sub import d\nfrom . import d as d2\n",
      "pkg/sub/d.py": "",
  }
  _write(tmp_path, files)
  modules = discover(tmp_path, ("pkg",))
  graph = import_graph(modules)
  assert graph == {"pkg": {"pkg.a": 5}, "pkg.a": {"pkg.b": 1}, "pkg.b": {}, "pkg.v": {"pkg": 1},
                   "pkg.sub": {"pkg.b": 1}, "pkg.sub.c": {"pkg.sub.d": 1}, "pkg.sub.d": {}}
  assert describe_cycles(graph) == []
  # The same tree with one back edge (a imports the name `run` of the package) is a cycle.
  (tmp_path / "pkg/a.py").write_text(files["pkg/a.py"] + "from pkg import run\n")
  assert describe_cycles(import_graph(discover(tmp_path, ("pkg",)))) == [
      "cycle among ['pkg', 'pkg.a']: pkg:5 -> pkg.a:3 -> pkg\n  imports inside it: pkg:5 -> pkg.a, pkg.a:3 -> pkg"]


def test_checker_shortest_cycle_and_self_contained_components():
  graph = {"a": {"b": 1}, "b": {"c": 2, "a": 5}, "c": {"a": 3}, "d": {"a": 1}, "e": {"f": 1}, "f": {"e": 2}}
  assert strongly_connected(graph) == [["a", "b", "c"], ["e", "f"]]
  assert shortest_cycle(graph, ["a", "b", "c"]) == ["a", "b", "a"]
  assert [d.splitlines()[0] for d in describe_cycles(graph)] == ["cycle among ['a', 'b', 'c']: a:1 -> b:5 -> a",
                                                                 "cycle among ['e', 'f']: e:1 -> f:2 -> e"]
  assert describe_cycles(graph)[0].endswith("imports inside it: a:1 -> b, b:5 -> a, b:2 -> c, c:3 -> a")
