"""The package's layers (``segdino_monai.LAYERS``): each sub-package imports only from the ones before it.

Every module is parsed with ``ast``: imports at module level and inside functions, relative imports resolved, and
``importlib.import_module("segdino_monai.x")`` calls with a literal name. A module's layer is its first sub-package
name; the root ``__init__.py`` may import no sub-package (its lazy ``__getattr__`` builds the name at run time). No
exceptions list.

Also checked: no module uses another module's private name (``from segdino_monai.x import _name``, or ``m._name`` of a
module ``m`` of the package); what several modules share is public, in the lowest layer that needs it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import segdino_monai

PACKAGE = Path(__file__).resolve().parents[1] / "segdino_monai"


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path, module: str) -> list[tuple[int, str]]:
    """``(line, absolute dotted name)`` of everything ``path`` (the module ``module``) imports, anywhere in it."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], base]).strip(".")
            found += [(node.lineno, f"{base}.{alias.name}" if alias.name != "*" else base) for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__"))
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def layer_violations(root: Path, layers: tuple[str, ...]) -> list[str]:
    """Every import of ``root`` (a package folder) that goes up or sideways out of the layer order, as text.

    Also reported: a sub-package not in ``layers``, a one-file module at the package top, and any import of a
    sub-package by the root ``__init__.py``.
    """
    name = root.name
    rank = {layer: i for i, layer in enumerate(layers)}
    problems = []
    for child in sorted(root.iterdir()):
        if child.suffix == ".py" and child.name != "__init__.py":
            problems.append(f"{name}/{child.name}: a one-file module at the package top (put it in a layer)")
        elif child.is_dir() and (child / "__init__.py").is_file() and child.name not in rank:
            problems.append(f"{name}/{child.name}/: a sub-package that is not in LAYERS")
    for path in sorted(root.rglob("*.py")):
        module = _module_name(path, root)
        parts = module.split(".")
        own = parts[1] if len(parts) > 1 else None
        for line, target in imported_names(path, module):
            target_parts = target.split(".")
            if target_parts[0] != name or len(target_parts) < 2:
                continue
            other = target_parts[1]
            where = f"{path.relative_to(root.parent)}:{line}"
            if own is None:
                problems.append(f"{where}: the package's __init__ imports {target} (only its lazy __getattr__ may)")
            elif other not in rank:
                if (root / f"{other}.py").is_file() or (root / other).is_dir():
                    problems.append(f"{where}: {module} imports {target}, which is in no layer")
            elif own in rank and rank[other] > rank[own]:
                problems.append(f"{where}: {module} ({own}) imports {target} from a higher layer ({other})")
    return problems


def test_every_import_goes_down_the_layers():
    assert len(list(PACKAGE.rglob("*.py"))) > 80  # the whole package is read
    problems = layer_violations(PACKAGE, segdino_monai.LAYERS)
    assert not problems, "\n".join(problems)


def test_the_layers_are_the_sub_packages():
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(segdino_monai.LAYERS)
    assert len(set(segdino_monai.LAYERS)) == len(segdino_monai.LAYERS)


def test_the_checker_reports_an_upward_import(tmp_path):
    root = tmp_path / "pkg"
    for sub in ("low", "high", "extra"):
        (root / sub).mkdir(parents=True)
        (root / sub / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "high" / "a.py").write_text("from pkg.low import b\n")  # down: fine
    (root / "low" / "b.py").write_text("import os\n\n\ndef f():\n    from ..high.a import x\n")  # up, lazy, relative
    (root / "low" / "c.py").write_text("import importlib\n\nimportlib.import_module('pkg.high.a')\n")  # up, string
    (root / "loose.py").write_text("")
    problems = layer_violations(root, ("low", "high"))
    assert any("pkg/low/b.py:5" in p and "pkg.high.a" in p for p in problems), problems
    assert any("pkg/low/c.py:3" in p for p in problems), problems
    assert any("loose.py" in p and "one-file module" in p for p in problems), problems
    assert any("extra/" in p and "not in LAYERS" in p for p in problems), problems
    assert not any("pkg/high/a.py" in p for p in problems), problems
    (root / "__init__.py").write_text("from pkg import low\n")
    assert any("package's __init__ imports pkg.low" in p for p in layer_violations(root, ("low", "high", "extra")))


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_name_uses(root: Path) -> list[str]:
    """Every private name (``_x``, not ``__x__``) of one module of ``root`` that another module uses, as text.

    Caught: ``from pkg.a import _x`` (relative forms too) and, for a module bound by ``import pkg.a as m`` or
    ``from pkg import a``, an attribute ``m._x``. A module's use of its own names is fine, and so is importing a
    submodule (``from pkg import _mod``): that names a module, not another module's name.
    """
    name = root.name
    problems = []

    def is_module(dotted: str) -> bool:
        path = root.parent.joinpath(*dotted.split("."))
        return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()

    for path in sorted(root.rglob("*.py")):
        module = _module_name(path, root)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        modules: dict[str, str] = {}  # local name -> a module of the package it is bound to
        for node in ast.walk(tree):
            where = f"{path.relative_to(root.parent)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == name and alias.asname:
                        modules[alias.asname] = alias.name
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join([*parts[: len(parts) - node.level + 1], base]).strip(".")
                if base.split(".")[0] != name:
                    continue
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    if is_module(target):
                        modules[alias.asname or alias.name] = target
                    elif _private(alias.name) and base != module:
                        problems.append(f"{where}: {module} imports the private {alias.name} of {base}")
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in modules
                and _private(node.attr)
                and modules[node.value.id] != module
            ):
                where = f"{path.relative_to(root.parent)}:{node.lineno}"
                problems.append(f"{where}: {module} uses the private {node.attr} of {modules[node.value.id]}")
    return problems


def test_no_private_name_is_used_across_modules():
    problems = private_name_uses(PACKAGE)
    assert not problems, "\n".join(problems)


def test_the_checker_reports_a_private_name_used_across_modules(tmp_path):
    root = tmp_path / "pkg"
    (root / "low").mkdir(parents=True)
    (root / "__init__.py").write_text("__version__ = '1'\n")
    (root / "low" / "__init__.py").write_text("from pkg.low.a import public\n")
    (root / "low" / "a.py").write_text(
        "from pkg import __version__\n\n\ndef _hidden(): ...\n\n\ndef public(): _hidden()\n"
    )
    (root / "low" / "b.py").write_text("def f():\n    from .a import _hidden, public\n")  # lazy, relative
    (root / "low" / "c.py").write_text("import pkg.low.a as m\nfrom pkg.low import a\n\nm._hidden()\na.public()\n")
    (root / "low" / "d.py").write_text("from pkg.low import a\n\nprint(a._hidden)\n")
    problems = private_name_uses(root)
    assert any("pkg/low/b.py:2" in p and "_hidden of pkg.low.a" in p for p in problems), problems
    assert any("pkg/low/c.py:4" in p and "_hidden of pkg.low.a" in p for p in problems), problems
    assert any("pkg/low/d.py:3" in p for p in problems), problems
    assert len(problems) == 3, problems  # the public names, __version__ and the module's own names are fine
