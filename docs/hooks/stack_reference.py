"""mkdocs hook: render the stack reference tables from the models, so they never drift.

A page containing ``<!-- stack-reference -->`` gets, in its place, one table per section with
every key, its type, default, environment variable and description.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any

from pydantic_core import PydanticUndefined

MARKER = "<!-- stack-reference -->"


_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _type_name(annotation: Any) -> str:
    """A TOML-flavoured name for a field type: ``string``, ``list of string``, ``'a' | 'b'``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        return " \\| ".join(names)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a!r}`" for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {_type_name(args[0])}"
        return "[" + ", ".join(_type_name(a) for a in args) + "]"
    if origin is dict:
        return f"table of {_type_name(args[1])}"
    if annotation is typing.Any:
        return "any"
    return _SCALARS.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _default_text(default: Any) -> str:
    """The default as it would be written in TOML, or a dash when there is none."""
    if default is None or default is PydanticUndefined:
        return "—"
    value = list(default) if isinstance(default, tuple) else default
    try:
        return f"`{json.dumps(value)}`"
    except TypeError:
        return f"`{value!r}`"


def _rows(model: type, prefix: tuple[str, ...]) -> list[tuple[tuple[str, ...], Any, Any, str]]:
    from pydantic import BaseModel

    rows: list[tuple[tuple[str, ...], Any, Any, str]] = []
    for name, info in model.model_fields.items():  # type: ignore[attr-defined]
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows.extend(_rows(annotation, (*prefix, name)))
            continue
        rows.append(((*prefix, name), annotation, info.default, info.description or ""))
    return rows


def render() -> str:
    """The Markdown tables for every stack key."""
    from oxeo_flows import stack as stack_module

    sections: list[tuple[str, type, tuple[str, ...]]] = [
        ("Top level", stack_module.Stack, ()),
    ]
    out: list[str] = []
    for title, model, prefix in sections:
        rows = _rows(model, prefix)
        groups: dict[str, list[tuple[tuple[str, ...], Any, Any, str]]] = {}
        for row in rows:
            path = row[0]
            key = path[0] if len(path) > 1 else "(top level)"
            groups.setdefault(key, []).append(row)
        for group, items in groups.items():
            heading = title if group == "(top level)" else f"`[{group.replace('_', '-')}]`"
            owner = getattr(model.model_fields.get(group), "annotation", None)  # type: ignore[attr-defined]
            out.append(f"### {heading}\n")
            doc = (owner.__doc__ or "").strip() if isinstance(owner, type) else ""
            if doc:
                out.append(doc.splitlines()[0] + "\n")
            out.append("| key | type | default | environment variable | description |")
            out.append("|---|---|---|---|---|")
            for path, annotation, default, description in items:
                if path in {("name",), ("pools",), ("variables",)}:
                    continue
                key = ".".join(p.replace("_", "-") for p in path)
                env = "OXEO_FLOWS_" + "__".join(p.upper() for p in path)
                default_text = _default_text(default)
                out.append(
                    f"| `{key}` | {_type_name(annotation)} | {default_text} | `{env}` | "
                    f"{description.replace(chr(10), ' ')} |"
                )
            out.append("")
    return "\n".join(out)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Replace the marker with the generated tables."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render())
