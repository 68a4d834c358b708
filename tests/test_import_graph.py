"""The import graph of gjax, read from its own source with ``ast`` (every
``import`` statement, at module level or inside a function): data flows one
way (``gjax.math`` -> ``gjax.objectives`` -> ``gjax.models`` ->
``gjax.train`` / ``gjax.eval``), there is no circle, and the library never
imports the studies (``studies/``), which build on it."""

from __future__ import annotations

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def module_name(path: str, root: str) -> str:
  """``gjax/eval/knn.py`` -> ``gjax.eval.knn``; ``gjax/eval/__init__.py`` -> ``gjax.eval``."""
  parts = os.path.relpath(path, root)[: -len(".py")].split(os.sep)
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules(root: str, package: str) -> dict[str, str]:
  """``{module name: file}`` of every ``.py`` file under ``root/package``."""
  modules = {}
  for directory, _, files in os.walk(os.path.join(root, package)):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(directory, name)
        modules[module_name(path, root)] = path
  return modules


def imported_names(path: str, module: str) -> set[str]:
  """The absolute names that the file imports (``from a.b import c`` gives
  ``a.b.c``, whether ``c`` is a module or a name in ``a.b``; relative imports
  resolved against ``module``)."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  is_package = path.endswith("__init__.py")
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      if node.level:
        base = module.split(".")
        base = base[: len(base) - node.level + (1 if is_package else 0)]
        source = ".".join(base + ([node.module] if node.module else []))
      else:
        source = node.module
      names.update(source if alias.name == "*" else f"{source}.{alias.name}" for alias in node.names)
  return names


def import_graph(root: str, package: str) -> dict[str, set[str]]:
  """``{module: modules of the package it imports}``: an imported name that is
  a module counts as that module (``from gjax.eval import knn`` -> ``gjax.eval.knn``);
  a name from a module (a function, a class) counts as the module. Importing
  ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``, but those edges are
  left out: a package's ``__init__`` that re-exports its submodules would
  otherwise make every submodule's import of a sibling a circle."""
  modules = package_modules(root, package)
  graph = {}
  for module, path in modules.items():
    targets = set()
    for name in imported_names(path, module):
      while name and name not in modules:
        name = name.rpartition(".")[0]
      if name and name != module:
        targets.add(name)
    graph[module] = targets
  return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One circle of ``graph`` as ``[a, b, ..., a]``, or None (depth-first search)."""
  state: dict[str, int] = {}  # 1: on the current path, 2: finished
  path: list[str] = []

  def visit(node):
    state[node] = 1
    path.append(node)
    for target in sorted(graph.get(node, ())):
      if state.get(target) == 1:
        return path[path.index(target) :] + [target]
      if target not in state:
        found = visit(target)
        if found:
          return found
    path.pop()
    state[node] = 2
    return None

  for node in sorted(graph):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return None


def imports_into(graph, from_prefix: str, to_prefixes: tuple[str, ...]) -> list[tuple[str, str]]:
  """Edges from modules under ``from_prefix`` to modules under any of ``to_prefixes``."""
  under = lambda name, prefix: name == prefix or name.startswith(prefix + ".")  # noqa: E731
  return sorted(
    (a, b)
    for a, targets in graph.items()
    if under(a, from_prefix)
    for b in targets
    if any(under(b, p) for p in to_prefixes)
  )


@pytest.fixture(scope="module")
def graph():
  return import_graph(REPO, "gjax")


def test_the_graph_has_no_circle(graph):
  assert find_cycle(graph) is None, f"import circle: {' -> '.join(find_cycle(graph))}"


def test_math_imports_only_math(graph):
  outside = [(a, b) for a, b in imports_into(graph, "gjax.math", ("gjax",)) if not b.startswith("gjax.math")]
  assert outside == [], outside


def test_objectives_import_no_models_train_or_eval(graph):
  assert imports_into(graph, "gjax.objectives", ("gjax.models", "gjax.train", "gjax.eval")) == []


def test_models_import_no_train_or_eval(graph):
  assert imports_into(graph, "gjax.models", ("gjax.train", "gjax.eval")) == []


def test_the_library_imports_no_study():
  offenders = [
    (module, name)
    for module, path in package_modules(REPO, "gjax").items()
    for name in imported_names(path, module)
    if name == "studies" or name.startswith("studies.")
  ]
  assert offenders == [], offenders


def test_no_library_module_is_a_script():
  """Only the tools of ``gjax/scale`` have a ``__main__`` block; experiments live in ``studies/``."""
  scripts = []
  for module, path in package_modules(REPO, "gjax").items():
    with open(path) as f:
      tree = ast.parse(f.read(), path)
    for node in tree.body:
      if (
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and isinstance(node.test.left, ast.Name)
        and node.test.left.id == "__name__"
      ):
        scripts.append(module)
  assert sorted(m for m in scripts if not m.startswith("gjax.scale.")) == []


def test_the_checks_see_a_circle_and_a_wrong_way_import(tmp_path):
  """The graph is read right: a planted circle and an upward import are found."""
  package = tmp_path / "pkg"
  (package / "math").mkdir(parents=True)
  (package / "__init__.py").write_text("")
  (package / "math" / "__init__.py").write_text("from pkg.math import a\n")
  (package / "math" / "a.py").write_text("def f():\n  from pkg import b\n")
  (package / "b.py").write_text("from .math.a import f\nimport os\n")
  graph = import_graph(str(tmp_path), "pkg")
  assert graph["pkg.math"] == {"pkg.math.a"}
  assert graph["pkg.b"] == {"pkg.math.a"}
  assert find_cycle(graph) == ["pkg.b", "pkg.math.a", "pkg.b"]
  assert imports_into(graph, "pkg.math", ("pkg.b",)) == [("pkg.math.a", "pkg.b")]
