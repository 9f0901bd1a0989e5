"""Calls the audit cannot patch, seen from the cell that makes them.

Methods of C extension types cannot be replaced (``torch.Generator().seed()``), and NumPy's
Cython classes take a seed without calling anything the audit wraps
(``np.random.PCG64(int(time.time()))``); replacing those classes would break
``isinstance``. Instead, a cell's syntax tree is rewritten before IPython compiles it
(``shell.ast_transformers``), only at calls that may reach one, by the name they are
called under: ``.seed()`` without arguments, ``.manual_seed(...)``, and NumPy's seeded
classes (:data:`NUMPY_CLASSES`) with a possible clock call in their arguments
(``user_code.may_be_clock``). The callee of such a call is handed to ``watch_call`` first,
which gives back the callee itself, or, for a callee a family watches, a wrapper that
judges the call after it ran. Classes and functions are never replaced; ``isinstance`` and
every other call are untouched. The rewritten call keeps its place in the source, so
records, tracebacks and the audit's columns name the line as written.
"""

from __future__ import annotations

import ast

from det_nb.entropy_audit.user_code import may_be_clock

#: The module whose ``watch_call`` the rewritten calls go through.
WATCH_MODULE = "det_nb.entropy_audit"
#: Method names of C types that seed a generator (torch.Generator's).
SEEDING_METHODS = frozenset({"seed", "manual_seed"})
#: NumPy's Cython classes that take a seed, by the names a cell calls them under.
NUMPY_CLASSES = frozenset({"SeedSequence", "PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"})


def routed(call: ast.Call) -> bool:
    """Whether ``call`` may reach a watched callee: ``.seed()`` without arguments,
    ``.manual_seed(...)``, or one of :data:`NUMPY_CLASSES` with a possible clock call in
    its arguments."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name == "seed":
        return not call.args and not call.keywords
    if name == "manual_seed":
        return True
    return name in NUMPY_CLASSES and any(
        may_be_clock(node)
        for argument in (*call.args, *(keyword.value for keyword in call.keywords))
        for node in ast.walk(argument))


class RouteCalls(ast.NodeTransformer):
    """IPython AST transformer: ``f(x)`` becomes ``watch_call(f)(x)`` where :func:`routed`."""

    def visit_Call(self, node: ast.Call) -> ast.Call:
        self.generic_visit(node)
        if routed(node):
            node.func = _through_watch(node.func)
        return node


def _through_watch(func: ast.expr) -> ast.expr:
    """``__import__("det_nb.entropy_audit", fromlist=("watch_call",)).watch_call(func)``,
    placed where ``func`` is (no name is added to the notebook's namespace)."""
    name = ast.Name("__import__", ast.Load())
    modname = ast.Constant(WATCH_MODULE)
    fromlist = ast.Tuple([ast.Constant("watch_call")], ast.Load())
    keyword = ast.keyword("fromlist", fromlist)
    module = ast.Call(func=name, args=[modname], keywords=[keyword])
    attribute = ast.Attribute(module, "watch_call", ast.Load())
    routed_func = ast.Call(func=attribute, args=[func], keywords=[])
    for node in (name, modname, *fromlist.elts, fromlist, keyword, module, attribute,
                 routed_func):
        ast.copy_location(node, func)
    return routed_func
