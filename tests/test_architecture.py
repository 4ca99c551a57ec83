"""Architecture rules for the package, checked by reading its source with ast (nothing is imported)."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "lookalike"
PACKAGE_DIR = Path(__file__).resolve().parent.parent / PACKAGE

CORE = ("lookalike.index*", "lookalike.backends*", "lookalike.embedders*", "lookalike.images", "lookalike.files",
        "lookalike.ingest", "lookalike.reduction", "lookalike.search", "lookalike.settings")
SIDE = ("lookalike.organise*", "lookalike.similarity*", "lookalike.scale*", "lookalike.evaluation", "lookalike.cli*",
        "lookalike.web*")

STORE_MODULE = "lookalike.index.store"
STORE_ATTRIBUTE = re.compile(r"\.store\.|\._store\b")
INDEX_DIR = PACKAGE_DIR / "index"
MANIFEST_NAME = "manifest.json"
MANIFEST_OWNER = PACKAGE_DIR / "index" / "folder.py"

Graph = dict[str, set[str]]


def module_name(path: Path) -> str:
    """The dotted module name of a source file under the package (``__init__.py`` names its package)."""
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    return {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def is_package(path: Path) -> bool:
    """Whether the file is a package's ``__init__.py``."""
    return path.name == "__init__.py"


def is_type_checking(test: ast.expr) -> bool:
    """Whether an ``if`` test is ``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def runtime_imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements at any depth that run, skipping the bodies of ``if TYPE_CHECKING:`` blocks."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    children: list[ast.AST] = list(ast.iter_child_nodes(node))
    if isinstance(node, ast.If) and is_type_checking(node.test):
        children = list(node.orelse)
    for child in children:
        yield from runtime_imports(child)


def all_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement in a tree, including type-only ones."""
    return (node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom))


def known_prefix(name: str, modules: set[str]) -> str | None:
    """The longest dotted prefix of ``name`` that is a module of the package, if any."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def from_base(node: ast.ImportFrom, importer: str, importer_is_package: bool) -> str:
    """The absolute module a ``from ... import`` reads from, resolving relative levels."""
    if not node.level:
        return node.module or ""
    package = importer if importer_is_package else importer.rpartition(".")[0]
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def imported_modules(node: ast.Import | ast.ImportFrom, importer: str, importer_is_package: bool,
                     modules: set[str]) -> set[str]:
    """The package modules one import statement loads (``from a import b`` is ``a.b`` when that is a module)."""
    if isinstance(node, ast.Import):
        found = (known_prefix(alias.name, modules) for alias in node.names)
        return {name for name in found if name}
    base = from_base(node, importer, importer_is_package)
    targets: set[str] = set()
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        target = submodule if submodule in modules else known_prefix(base, modules)
        if target:
            targets.add(target)
    return targets


def parse(path: Path) -> ast.Module:
    """The syntax tree of one source file."""
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def import_graph() -> Graph:
    """Module -> the package modules it imports at run time (deferred imports included)."""
    files = source_files()
    modules = set(files)
    graph: Graph = {name: set() for name in files}
    for name, path in files.items():
        for node in runtime_imports(parse(path)):
            graph[name] |= imported_modules(node, name, is_package(path), modules)
    return graph


def strongly_connected(graph: Graph) -> list[list[str]]:
    """The strongly connected components of a graph (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            successor = next(successors, None)
            if successor is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
            elif successor not in index:
                index[successor] = low[successor] = len(index)
                stack.append(successor)
                on_stack.add(successor)
                work.append((successor, iter(sorted(graph.get(successor, ())))))
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
    return components


def import_cycles(graph: Graph) -> list[list[str]]:
    """Groups of modules that import each other, directly or round a loop (self-imports included)."""
    return [component for component in strongly_connected(graph)
            if len(component) > 1 or component[0] in graph[component[0]]]


def matches(module: str, patterns: tuple[str, ...]) -> bool:
    """Whether a module is named by a pattern (``x*`` means ``x`` and everything under it)."""
    for pattern in patterns:
        if pattern.endswith("*"):
            stem = pattern[:-1]
            if module == stem or module.startswith(stem + "."):
                return True
        elif module == pattern:
            return True
    return False


Hit = tuple[Path, int]


def relative(path: Path) -> str:
    """A file's path relative to the repository."""
    return str(path.relative_to(PACKAGE_DIR.parent))


def text_hits(path: Path, pattern: re.Pattern[str]) -> list[Hit]:
    """Each line of a file that the pattern matches."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [(path, number) for number, line in enumerate(lines, 1) if pattern.search(line)]


def store_imports(path: Path, modules: set[str]) -> list[Hit]:
    """Each import of the store module in a file (type-only imports too)."""
    name = module_name(path)
    return [(path, node.lineno) for node in all_imports(parse(path))
            if STORE_MODULE in imported_modules(node, name, is_package(path), modules)]


def describe(hits: list[Hit]) -> str:
    """``file:line: source`` for each hit, in file and line order, one per line."""
    lines = []
    for path, number in sorted(set(hits)):
        text = path.read_text(encoding="utf-8").splitlines()[number - 1].strip()
        lines.append(f"{relative(path)}:{number}: {text}")
    return listing(lines)


def listing(lines: list[str]) -> str:
    """Offenders one per line, indented, for a failure message."""
    return "\n".join(f"  {line}" for line in lines)


def test_import_graph_counts_deferred_imports_and_skips_type_only_ones():
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "from lookalike.index import image_index, ImageIndex\n"
        "from . import files\n"
        "if TYPE_CHECKING:\n"
        "    from lookalike.web import app\n"
        "def later():\n"
        "    import lookalike.search.missing\n"
    )
    modules = {"lookalike", "lookalike.index", "lookalike.index.image_index", "lookalike.files", "lookalike.search",
               "lookalike.web", "lookalike.web.app"}
    found = set().union(*(imported_modules(node, "lookalike.ingest", False, modules) for node in runtime_imports(tree)))
    assert found == {"lookalike.index", "lookalike.index.image_index", "lookalike.files", "lookalike.search"}


def test_cycle_finder_reports_loops_and_self_imports_only():
    graph: Graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d"}, "e": {"a"}}
    assert sorted(import_cycles(graph)) == [["a", "b", "c"], ["d"]]


def test_no_import_cycle_in_the_package():
    cycles = import_cycles(import_graph())
    assert not cycles, "import cycles in the package:\n" + listing([" <-> ".join(cycle) for cycle in cycles])


def test_core_does_not_import_side_features():
    graph = import_graph()
    edges = sorted(f"{source} -> {target}" for source, targets in graph.items() if matches(source, CORE)
                   for target in targets if matches(target, SIDE))
    assert not edges, "core modules import side features:\n" + listing(edges)


def test_only_the_index_core_touches_the_store():
    modules = set(source_files())
    outside = [path for path in sorted(PACKAGE_DIR.rglob("*.py")) if not path.is_relative_to(INDEX_DIR)]
    hits = [hit for path in outside for hit in text_hits(path, STORE_ATTRIBUTE) + store_imports(path, modules)]
    assert not hits, f"code outside lookalike/index/ reaches into {STORE_MODULE}:\n" + describe(hits)


def test_only_the_index_folder_module_names_the_manifest():
    pattern = re.compile(re.escape(MANIFEST_NAME))
    others = [path for path in sorted(PACKAGE_DIR.rglob("*.py")) if path != MANIFEST_OWNER]
    hits = [hit for path in others for hit in text_hits(path, pattern)]
    assert not hits, f"{MANIFEST_NAME!r} is named outside {relative(MANIFEST_OWNER)}:\n" + describe(hits)


def folder_file_names() -> set[str]:
    """The file names lookalike/index/folder.py declares (its string constants with an extension)."""
    return {node.value.value for node in parse(MANIFEST_OWNER).body if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str) and "." in node.value.value}


def test_each_file_of_an_index_folder_is_named_by_its_owner_alone():
    """map-points.npz, clusters.npz, classifier.json...: written as a literal only in lookalike/index/folder.py."""
    names = folder_file_names()
    assert {"manifest.json", "map-points.npz", "clusters.npz"} <= names
    hits = [f"{relative(path)}:{node.lineno}: {node.value}" for path in sorted(PACKAGE_DIR.rglob("*.py"))
            if path != MANIFEST_OWNER for node in ast.walk(parse(path))
            if isinstance(node, ast.Constant) and node.value in names]
    assert not hits, f"index folder files named outside {relative(MANIFEST_OWNER)}:\n" + listing(hits)


MANIFEST_KEY_READ = re.compile(r"manifest\[|manifest\.get\(")
ROOM_LINES = 350  # a file in lookalike/index/ over this is a concern that lacks its own module
SCHEMA_OWNER = PACKAGE_DIR / "index" / "schema.py"


def test_the_manifest_is_read_by_field_not_by_key():
    hits = [hit for path in sorted(PACKAGE_DIR.rglob("*.py")) for hit in text_hits(path, MANIFEST_KEY_READ)]
    assert not hits, "the manifest read by string key (use the Manifest's fields):\n" + describe(hits)


def test_only_the_schema_module_declares_tables():
    pattern = re.compile(r"CREATE (TABLE|INDEX)|ALTER TABLE")
    others = [path for path in sorted(PACKAGE_DIR.rglob("*.py")) if path != SCHEMA_OWNER]
    hits = [hit for path in others for hit in text_hits(path, pattern)]
    assert not hits, f"tables declared outside {relative(SCHEMA_OWNER)} (add a step there):\n" + describe(hits)


def test_the_index_parts_stay_small():
    sizes = {relative(path): len(path.read_text(encoding="utf-8").splitlines()) for path in INDEX_DIR.glob("*.py")}
    large = [f"{name}: {lines} lines" for name, lines in sorted(sizes.items()) if lines > ROOM_LINES]
    assert not large, f"files in lookalike/index/ over {ROOM_LINES} lines:\n" + listing(large)


def test_the_parts_of_an_index_do_not_know_the_facade():
    """ImageIndex holds its parts (searcher, upkeep, state); none of them imports it, not even for types."""
    modules = set(source_files())
    parts = ("searcher", "upkeep", "state", "upgrade", "schema", "store", "manifest")
    back = [f"lookalike.index.{part}" for part in parts
            if any("lookalike.index.image_index" in imported_modules(node, f"lookalike.index.{part}", False, modules)
                   for node in all_imports(parse(INDEX_DIR / f"{part}.py")))]
    assert not back, f"parts of ImageIndex import it: {back}"


EMBEDDER_IMPLEMENTATIONS = {f"lookalike.embedders.{name}" for name in
                            ("efficientnet", "classic", "clip", "handcrafted", "autoencoder")}
SIZES_THE_CHOICE = INDEX_DIR / "autoselect.py"  # chooses among index types, so it reads ivfpq's sizing


def implementations() -> set[str]:
    """The modules that implement a backend (named in backends.BACKENDS, by "module:Class") or an embedder."""
    from lookalike.backends import BACKENDS

    return {path.partition(":")[0] for path in BACKENDS.values() if isinstance(path, str)} | EMBEDDER_IMPLEMENTATIONS


def test_the_index_core_names_no_backend_or_embedder_implementation():
    """lookalike/index/ makes backends by name (backends.BACKENDS) and embedders by model name (get_embedder), never
    by importing one: a new backend is a registry entry, not an edit of the core."""
    modules, named = set(source_files()), implementations()
    assert "lookalike.backends.faiss_flat" in named and "lookalike.embedders.efficientnet" in named
    hits = [f"{relative(path)}: {name}" for path in sorted(INDEX_DIR.glob("*.py")) if path != SIZES_THE_CHOICE
            for node in all_imports(parse(path))
            for name in imported_modules(node, module_name(path), is_package(path), modules) if name in named]
    assert not hits, "the index core imports an implementation (go through its registry):\n" + listing(hits)


def test_the_core_names_no_scope():
    """Scopes are found through their registry (lookalike.search.register_scope), never by name in the core."""
    pattern = re.compile(r"""["']by_(class|cluster)["']""")
    core = [*sorted(INDEX_DIR.glob("*.py")), PACKAGE_DIR / "search.py"]
    hits = [hit for path in core for hit in text_hits(path, pattern)]
    assert not hits, "the core names a scope (use SearchOptions.scopes_asked, SCOPES):\n" + describe(hits)
