"""Just enough TOML writing for test and benchmark configs."""

from __future__ import annotations

from typing import Any


def toml_text(data: dict[str, Any]) -> str:
    """Tables, arrays of tables, scalars, lists and inline tables: what the configs here
    use."""
    def value(v: Any) -> str:
        if isinstance(v, dict):  # an inline table
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return str(v)
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines: list[str] = []
    for section, body in data.items():
        items = body if isinstance(body, list) else [body]
        for item in items:
            lines.append(f"[[{section}]]" if isinstance(body, list) else f"[{section}]")
            lines += [f"{k} = {value(v)}" for k, v in item.items()]
            lines.append("")
    return "\n".join(lines)
