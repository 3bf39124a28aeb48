"""Print a genome tree exactly as DEAP's ``str(PrimitiveTree)`` does."""
from __future__ import annotations

from ml.genome.tree import Call, Literal, Node, Terminal


def format_literal(value: int | float | bool) -> str:
    return repr(value)


def to_string(root: Node) -> str:
    """``name(arg, arg)`` with ", " separators; iterative, so depth is unbounded."""
    out: list[str] = []
    stack: list[object] = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, Call):
            out.append(item.name + "(")
            stack.append(")")
            for i in range(len(item.args) - 1, -1, -1):
                stack.append(item.args[i])
                if i:
                    stack.append(", ")
        elif isinstance(item, Literal):
            out.append(format_literal(item.value))
        elif isinstance(item, Terminal):
            out.append(item.name)
    return "".join(out)
