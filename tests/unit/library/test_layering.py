"""The layering of the three distributions, read from the source with ``ast`` (nothing is
imported, so an import hidden inside a function counts as much as one at the top):

- the library (``mystocks_otel``) never imports the mixin or the dev tools;
- the mixin (``mystocks_otel_mixin``) imports from the library only ``mystocks_otel.catalog``;
- no module reaches into another's ``_private`` names: neither ``from x import _y`` nor
  ``x._y`` on a module it imported. One exception: the library's ``_internal`` package, which
  the library's own modules import (the dev tools and the mixin must not).

The checker is tested on a small synthetic tree with planted violations (the last tests).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
LIBRARY, MIXIN, DEV = "mystocks_otel", "mystocks_otel_mixin", "mystocks_otel_dev"
PACKAGES = {LIBRARY: ROOT / "mystocks_otel", MIXIN: ROOT / "mixin" / "mystocks_otel_mixin",
            DEV: ROOT / "devtools" / "mystocks_otel_dev"}
INTERNAL = f"{LIBRARY}._internal"
MIXIN_MAY_IMPORT = {f"{LIBRARY}.catalog"}


@dataclass(frozen=True)
class Violation:
    module: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line}: {self.what}"


def modules_of(packages: dict[str, Path]) -> dict[str, Path]:
    """{dotted module name: path} for every module of the packages (packages included)."""
    found = {}
    for name, directory in packages.items():
        for path in sorted(directory.rglob("*.py")):
            parts = path.relative_to(directory).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            found[".".join((name, *parts))] = path
    return found


def _private(segment: str) -> bool:
    return segment.startswith("_") and not (segment.startswith("__") and segment.endswith("__"))


def _top(module: str) -> str:
    return module.split(".", 1)[0]


def check(packages: dict[str, Path]) -> list[Violation]:
    """Every layering violation in ``packages`` ({top-level name: directory})."""
    modules = modules_of(packages)
    ours = set(packages)
    violations: list[Violation] = []

    for module, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        importer = _top(module)
        aliases: dict[str, str] = {}  # local name -> one of our modules

        def flag(line: int, what: str) -> None:
            violations.append(Violation(module, line, what))

        def check_target(target: str, line: int) -> None:
            """``module`` imports (from) ``target``, one of our modules or a name in one."""
            top = _top(target)
            if top not in ours or top == importer:
                if top == importer:
                    check_path(target, line)
                return
            if importer == LIBRARY:
                flag(line, f"the library imports {target}")
            elif importer == MIXIN and top == LIBRARY and not any(
                    target == allowed or target.startswith(allowed + ".") for allowed in MIXIN_MAY_IMPORT):
                flag(line, f"the mixin imports {target} (only {', '.join(sorted(MIXIN_MAY_IMPORT))})")
            check_path(target, line)

        def check_path(target: str, line: int) -> None:
            """A ``_private`` segment on the way to ``target`` (``_internal`` for the library only)."""
            parts = target.split(".")
            for i, segment in enumerate(parts[1:], start=1):
                if not _private(segment):
                    continue
                reached = ".".join(parts[:i + 1])
                if reached == INTERNAL and importer == LIBRARY:
                    continue
                if reached == module or module.startswith(reached + "."):
                    continue  # a module's own package, or itself
                flag(line, f"reaches into the private name {reached}")
                return

        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if _top(alias.name) in ours:
                        check_target(alias.name, node.lineno)
                        if alias.asname:
                            aliases[alias.asname] = alias.name
                        else:
                            aliases[_top(alias.name)] = _top(alias.name)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base_parts = module.split(".") if is_package else module.split(".")[:-1]
                    base_parts = base_parts[:len(base_parts) - (node.level - 1)]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                if _top(base) not in ours:
                    continue
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    if target in modules:  # a submodule
                        check_target(target, node.lineno)
                        aliases[alias.asname or alias.name] = target
                    else:
                        check_target(base, node.lineno)
                        if _private(alias.name):
                            flag(node.lineno, f"imports the private name {alias.name} from {base}")
        # Attribute access on a module it imported: ``mod._name`` (``mod.sub._name`` too).
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            chain, inner = [node.attr], node.value
            while isinstance(inner, ast.Attribute):
                chain.append(inner.attr)
                inner = inner.value
            if not isinstance(inner, ast.Name) or inner.id not in aliases:
                continue
            dotted = ".".join([aliases[inner.id], *reversed(chain)])
            check_path(dotted, node.lineno)
    return sorted(set(violations), key=lambda v: (v.module, v.line, v.what))


# -- the real tree -------------------------------------------------------------------------------

def test_the_three_packages_are_all_there():
    modules = modules_of(PACKAGES)
    for name in (LIBRARY, MIXIN, DEV, INTERNAL, f"{LIBRARY}.catalog"):
        assert name in modules, name
    assert len(modules) > 60


def test_the_layering_holds():
    violations = check(PACKAGES)
    assert not violations, "layering violations:\n" + "\n".join(map(str, violations))


def test_only_the_process_state_keeps_globals_and_the_fork_hook():
    """One module owns the process's singletons: no other says ``global`` or registers a fork
    hook (``os.register_at_fork``)."""
    found = []
    for module, path in modules_of({LIBRARY: PACKAGES[LIBRARY]}).items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Global):
                found.append((module, "global"))
            elif isinstance(node, ast.Attribute) and node.attr == "register_at_fork":
                found.append((module, "register_at_fork"))
    assert {module for module, _ in found} == {INTERNAL + ".state"}, found
    assert [what for _, what in found].count("register_at_fork") == 1


# -- the checker, on a synthetic tree ---------------------------------------------------------------

def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    for relative, source in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    for top in (LIBRARY, MIXIN, DEV):
        (tmp_path / top).mkdir(exist_ok=True)
        (tmp_path / top / "__init__.py").touch()
    return {top: tmp_path / top for top in (LIBRARY, MIXIN, DEV)}


CLEAN = {
    f"{LIBRARY}/catalog.py": "METRICS = ()\n",
    f"{LIBRARY}/config.py": "from ._internal import state\nfrom ._internal.state import counter\n",
    f"{LIBRARY}/_internal/__init__.py": "",
    f"{LIBRARY}/_internal/state.py": "from . import helpers\n_lock = None\ndef counter(): return helpers.public()\n",
    f"{LIBRARY}/_internal/helpers.py": "def public(): pass\ndef _hidden(): pass\n",
    f"{MIXIN}/rules.py": "from mystocks_otel import catalog\nfrom mystocks_otel.catalog import METRICS\n",
    f"{DEV}/demo.py": "import mystocks_otel as otel\nfrom mystocks_otel import config\nfrom mystocks_otel_mixin import rules\n",
}


def test_a_clean_tree_passes(tmp_path):
    assert check(_tree(tmp_path, CLEAN)) == []


PLANTED = [
    ({f"{LIBRARY}/bad.py": "def later():\n    from mystocks_otel_mixin import rules\n"},
     "the library imports mystocks_otel_mixin.rules"),
    ({f"{LIBRARY}/bad.py": "import mystocks_otel_dev.demo\n"}, "the library imports mystocks_otel_dev.demo"),
    ({f"{MIXIN}/bad.py": "from mystocks_otel import config\n"}, "the mixin imports mystocks_otel.config"),
    ({f"{MIXIN}/bad.py": "import mystocks_otel\n"}, "the mixin imports mystocks_otel (only"),
    ({f"{DEV}/bad.py": "from mystocks_otel._internal import state\n"},
     "reaches into the private name mystocks_otel._internal"),
    ({f"{DEV}/bad.py": "def f():\n    import mystocks_otel._internal.state as s\n"},
     "reaches into the private name mystocks_otel._internal"),
    ({f"{LIBRARY}/_internal/bad.py": "from .helpers import _hidden\n"},
     "imports the private name _hidden from mystocks_otel._internal.helpers"),
    ({f"{LIBRARY}/bad.py": "from ._internal import state\nstate._lock = 1\n"},
     "reaches into the private name mystocks_otel._internal.state._lock"),
    ({f"{LIBRARY}/bad.py": "import mystocks_otel._internal.helpers as h\nh._hidden()\n"},
     "reaches into the private name mystocks_otel._internal.helpers._hidden"),
    ({f"{DEV}/bad.py": "import mystocks_otel as otel\notel.config._secret\n"},
     "reaches into the private name mystocks_otel.config._secret"),
]


@pytest.mark.parametrize("files,expected", PLANTED, ids=[p[1] for p in PLANTED])
def test_a_planted_violation_is_found(tmp_path, files, expected):
    violations = check(_tree(tmp_path, {**CLEAN, **files}))
    planted = next(iter(files)).replace("/", ".").removesuffix(".py")
    assert any(v.module == planted and expected in v.what for v in violations), violations
