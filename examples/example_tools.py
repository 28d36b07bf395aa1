"""The tools the agent examples give their model: a calculator and a made-up shop's order lookup.

Plain functions with docstrings and type hints, so that LangChain's `tool(...)` and LlamaIndex's
`FunctionTool.from_defaults(fn=...)` both build their schemas from them.
"""

from __future__ import annotations

import ast
import json
import operator

ORDERS = {
    "A-1017": {"status": "shipped", "delivery_date": "2026-05-06"},
    "B-2093": {"status": "delayed", "delivery_date": "2026-06-12"},
}
_OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
}


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression with numbers, +, -, *, / and **, e.g. 12 * (3 + 4)."""
    try:
        return str(_value(ast.parse(expression, mode="eval").body))
    except (SyntaxError, ValueError, ZeroDivisionError) as error:
        return f"cannot evaluate {expression!r}: {error}"


def get_order_status(order_id: str) -> str:
    """Look up an order in the shop's order system: its status and delivery date."""
    order = ORDERS.get(order_id.strip().upper(), {"status": "unknown order"})
    return json.dumps({"order_id": order_id, **order})


def _value(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_value(node.left), _value(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_value(node.operand))
    raise ValueError("only numbers, +, -, *, / and ** are allowed")
