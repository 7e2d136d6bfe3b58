"""Which test module runs which scenario, and under which test name.

Read statically from the test modules' source: ``@scenario("file.feature",
"name")`` makes the decorated function that scenario's test, and
``scenarios("file.feature", "dir/", ...)`` creates a test for every other
scenario of those files, named the way pytest-bdd names them.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .features import Scenario

PYTHON_REPLACE = re.compile(r"\W")
LEADING_DIGITS = re.compile(r"^\d+_*")


def python_name(name: str) -> str:
    """pytest-bdd's ``make_python_name``: the test name stem of a scenario."""
    return LEADING_DIGITS.sub("", PYTHON_REPLACE.sub("", name.replace(" ", "_"))).lower()


@dataclass
class Binding:
    module: str  # dotted, as JUnit's classname has it: tests.acceptance.test_auth
    test_name: str  # test_... without parameters


Bindings = dict[tuple[str, str], list[Binding]]  # scenario key (feature, name) -> its tests


def _str_args(call: ast.Call) -> list[str]:
    return [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]


def _call_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _module_level_names(tree: ast.Module) -> set[str]:
    """Names a module defines at its top level: pytest-bdd does not reuse them for generated tests."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names.add(target.id)
    return names


def _resolve_feature(arg: str, module_path: Path, base: Path) -> str | None:
    """A feature file argument as a path relative to the features directory, if it names a file there."""
    for candidate in (Path(arg), base / arg, module_path.parent / arg):
        if candidate.is_file():
            try:
                return candidate.resolve().relative_to(base).as_posix()
            except ValueError:
                return None
    return None


def _module_name(path: Path, repo: Path) -> str:
    try:
        return ".".join(path.resolve().relative_to(repo).with_suffix("").parts)
    except ValueError:  # a test directory outside the repository
        return path.stem


def _read_module(path: Path, warnings: list[str]) -> ast.Module | None:
    """The syntax tree of a test module that may bind scenarios; None for any other file."""
    try:
        source = path.read_text(encoding="utf-8")
    except OSError:
        return None
    if "scenario" not in source:
        return None
    try:
        return ast.parse(source, str(path))
    except SyntaxError as exc:
        warnings.append(f"{path}: cannot parse ({exc.msg})")
        return None


class _ModuleReader:
    """Adds the bindings of one test module to a shared table."""

    def __init__(
        self, path: Path, module: str, base: Path, by_feature: dict[str, list[Scenario]], bindings: Bindings
    ) -> None:
        self.path = path
        self.module = module
        self.base = base
        self.by_feature = by_feature
        self.bindings = bindings
        self.warnings: list[str] = []

    def read(self, tree: ast.Module) -> None:
        explicit = self._decorated(tree)
        self._generated(tree, explicit, _module_level_names(tree))

    def _decorated(self, tree: ast.Module) -> set[tuple[str, str]]:
        """``@scenario("file.feature", "name")`` on a function: that function is the test."""
        explicit: set[tuple[str, str]] = set()
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for deco in node.decorator_list:
                if not (isinstance(deco, ast.Call) and _call_name(deco.func) == "scenario"):
                    continue
                args = _str_args(deco)
                if len(args) < 2:
                    continue
                rel = _resolve_feature(args[0], self.path, self.base)
                if rel is None:
                    self.warnings.append(f"{self.path}: feature file {args[0]!r} not found under {self.base}")
                    continue
                explicit.add((rel, args[1]))
                self.bindings.setdefault((rel, args[1]), []).append(Binding(self.module, node.name))
        return explicit

    def _feature_files(self, arg: str) -> list[str]:
        """The feature files a ``scenarios(...)`` argument names: one file, or every file below a directory."""
        rel = _resolve_feature(arg, self.path, self.base)
        if rel is not None:
            return [rel]
        found = [f for f in self.by_feature if f == arg or f.startswith(arg.rstrip("/") + "/")]
        if not found:
            self.warnings.append(f"{self.path}: feature path {arg!r} not found under {self.base}")
        return found

    def _generated(self, tree: ast.Module, explicit: set[tuple[str, str]], taken: set[str]) -> None:
        """``scenarios(...)``: every other scenario of those files, named as pytest-bdd names them."""
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and _call_name(node.func) == "scenarios"):
                continue
            for arg in _str_args(node):
                for rel_file in self._feature_files(arg):
                    for s in self.by_feature.get(rel_file, []):
                        if s.key in explicit:
                            continue
                        # pytest-bdd numbers a name that is taken already: test_x, test_x_1, ...
                        stem = "test_" + python_name(s.name)
                        name, index = stem, 0
                        while name in taken:
                            index += 1
                            name = f"{stem}_{index}"
                        taken.add(name)
                        self.bindings.setdefault(s.key, []).append(Binding(self.module, name))


def discover_bindings(
    repo: Path, test_dirs: Iterable[Path], base: Path, scenarios: list[Scenario]
) -> tuple[Bindings, list[str]]:
    """Which test module binds which scenario, under which test name (static reading of the modules)."""
    by_feature: dict[str, list[Scenario]] = {}
    for s in scenarios:
        by_feature.setdefault(s.feature, []).append(s)
    bindings: Bindings = {}
    warnings: list[str] = []
    for test_dir in test_dirs:
        for path in sorted(test_dir.rglob("*.py")):
            tree = _read_module(path, warnings)
            if tree is None:
                continue
            reader = _ModuleReader(path, _module_name(path, repo), base, by_feature, bindings)
            reader.read(tree)
            warnings.extend(reader.warnings)
    return bindings, warnings
