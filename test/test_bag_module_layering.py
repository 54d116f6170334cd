"""The bag helpers import one way (#20 item 1): no module of sage_ros.bag imports, directly or through others,
a module that imports it back. Before: bag.common imported bag.recover (salvage_to) and bag.recover imported
bag.common (BagError, atomic_bag_writer, typestore), so neither could be read or tested alone."""
import ast
from pathlib import Path

BAG = Path(__file__).resolve().parents[1] / "sage_ros" / "bag"


def _bag_imports() -> dict[str, set[str]]:
    """module name -> the sage_ros.bag modules it imports (module level or inside functions alike)."""
    graph = {}
    for path in BAG.glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            found |= {n.split(".")[2] for n in names if n.startswith("sage_ros.bag.") and len(n.split(".")) > 2}
        graph[path.stem] = found & {p.stem for p in BAG.glob("*.py")}
    return graph


def test_bag_modules_import_without_a_cycle():
    graph = _bag_imports()
    done, path = set(), []

    def visit(module):
        assert module not in path, f"import cycle in sage_ros.bag: {' -> '.join(path[path.index(module):] + [module])}"
        if module in done:
            return
        path.append(module)
        for imported in sorted(graph[module]):
            visit(imported)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_the_leaf_imports_no_other_bag_module():
    assert _bag_imports()["core"] == set()
