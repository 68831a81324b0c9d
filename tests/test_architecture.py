"""The package's import graph, derived from the code, against docs/architecture.md: every arrow
between packages is one the doc's "Imports" table allows, outside the core only
``lit_metriplector.core``'s public names are imported, and no module imports itself back."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import lit_metriplector.core

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
FILES = sorted((ROOT / "lit_metriplector").rglob("*.py"))
# Top-level modules belong to a layer of their own name (errors) or to the CLI's.
TOP_LEVEL = {"cli": "cli", "checkpoints": "cli", "__main__": "cli", "errors": "errors"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in FILES}


def layer(module: str) -> str:
    """``core``, ``networks``, ... for a module of the package; the package itself is the top."""
    parts = module.split(".")
    if len(parts) == 1:
        return "cli"
    return TOP_LEVEL.get(parts[1], parts[1])


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every import in the file, in functions too, relative ones resolved
    (``from . import x`` of a submodule ``x`` gives that submodule); package modules only."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            names = [alias.name for alias in node.names]
            submodules = [f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES]
            if submodules:
                found += [(sub, []) for sub in submodules]
            else:
                found.append((module, names))
    return [(m, names) for m, names in found if m.split(".")[0] == "lit_metriplector"]


def allowed_arrows() -> dict[str, set[str]]:
    """The doc's "Imports" table: each row a package and the packages it may import."""
    section = DOC.read_text().split("## Imports", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    table = {}
    for row in rows:
        package, targets = row.strip("|").split("|")[:2]
        table[re.findall(r"`([\w.]+)`", package)[0]] = set(re.findall(r"`(\w+)`", targets))
    return table


def test_the_doc_lists_every_layer_and_only_layers_it_lists():
    table = allowed_arrows()
    assert {layer(m) for m in MODULES} == set(table)
    assert set().union(*table.values()) <= set(table)


def test_every_import_between_packages_is_an_arrow_the_doc_allows():
    table = allowed_arrows()
    wrong = []
    for module, path in MODULES.items():
        for target, _ in imports(path):
            source, destination = layer(module), layer(target)
            if source != destination and destination not in table[source]:
                wrong.append(f"{path.relative_to(ROOT)}: {source} imports {target}")
    assert not wrong, "arrows docs/architecture.md does not allow:\n" + "\n".join(wrong)


def test_outside_the_core_only_its_public_names_are_imported():
    public = set(lit_metriplector.core.__all__)
    wrong = []
    for module, path in MODULES.items():
        if layer(module) == "core":
            continue
        for target, names in imports(path):
            if target.startswith("lit_metriplector.core."):
                wrong.append(f"{path.relative_to(ROOT)}: imports {target}")
            elif target == "lit_metriplector.core" and not set(names) <= public:
                wrong.append(f"{path.relative_to(ROOT)}: {sorted(set(names) - public)}")
    assert not wrong, "past lit_metriplector.core's __all__:\n" + "\n".join(wrong)


def test_no_import_cycle_even_through_imports_in_functions():
    graph = {
        m: {t for t, _ in imports(path) if t in MODULES and t != m} for m, path in MODULES.items()
    }
    done: set[str] = set()

    def cycle(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module) :] + [module]
        if module in done:
            return None
        for target in sorted(graph[module]):
            found = cycle(target, [*path, module])
            if found:
                return found
        done.add(module)
        return None

    for module in sorted(graph):
        found = cycle(module, [])
        assert found is None, " -> ".join(found)
