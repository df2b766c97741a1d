"""An import-linter contract the stock ones do not offer: no import cycle between modules.

``acyclic_siblings`` checks packages against their siblings; this checks every module of the
given packages against every other, function-local imports included (grimp reads those too), so
a cycle cannot hide inside a function body.
"""

from __future__ import annotations

from importlinter import Contract, ContractCheck, fields, output


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index_of: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index_of:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index_of[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index_of:
                    index_of[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index_of[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index_of[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


class NoCyclesContract(Contract):
    """No module of ``packages`` imports, directly or through others, a module importing it."""

    type_name = "no_cycles"

    packages = fields.ListField(subfield=fields.StringField())

    def check(self, graph, verbose: bool) -> ContractCheck:
        roots = tuple(self.packages)  # type: ignore[arg-type]

        def ours(module: str) -> bool:
            return any(module == root or module.startswith(root + ".") for root in roots)

        modules = [module for module in graph.modules if ours(module)]
        edges = {
            module: {
                imported
                for imported in graph.find_modules_directly_imported_by(module)
                if ours(imported) and imported != module
            }
            for module in modules
        }
        cycles = _cycles(edges)
        return ContractCheck(kept=not cycles, metadata={"cycles": cycles})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for cycle in check.metadata["cycles"]:
            output.print_error("Import cycle: " + " <-> ".join(cycle), bold=True)
            output.new_line()
