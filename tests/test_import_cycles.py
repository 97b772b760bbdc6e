"""No import cycles among fastload's modules: a module's imports, at module level or inside a function, never lead
back to it. Read from the sources (ast), so nothing is imported; imports under `if TYPE_CHECKING:` do not count."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "fastload"


def module_files() -> dict:
    """{dotted module name: (path, is_package)} of every module under fastload/."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def imported_names(module: str, is_package: bool, node, modules: dict) -> list:
    """The fastload modules one import statement loads (`from .pkg import sub` loads pkg and pkg.sub)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module
    return [target] + [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in modules]


def type_checking_nodes(tree) -> set:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(inner) for inner in ast.walk(node)}
    return skipped


def import_graph() -> dict:
    """{module: set of fastload modules it imports anywhere in its source}."""
    modules = module_files()
    graph = {}
    for module, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skipped = type_checking_nodes(tree)
        graph[module] = {target for node in ast.walk(tree)
                         if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skipped
                         for target in imported_names(module, is_package, node, modules)
                         if target in modules and target != module}
    return graph


def cycles(graph: dict) -> list:
    """The strongly connected groups of more than one module (Tarjan), each sorted, sorted."""
    order, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        order[v] = low[v] = len(order)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in order:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], order[w])
        if low[v] == order[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in order:
            visit(v)
    return sorted(found)


def test_the_graph_sees_function_level_imports():
    graph = import_graph()
    assert "fastload.manifest" in graph["fastload.compile"]  # materialize imports it inside the function
    assert "fastload.beton" in graph["fastload.manifest"]


def test_cycle_detection_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_among_fastload_modules():
    assert cycles(import_graph()) == []


def test_the_beton_readers_do_not_import_the_compiler():
    graph = import_graph()
    for module in ("fastload.beton", "fastload.manifest"):
        assert "fastload.compile" not in graph[module], module
