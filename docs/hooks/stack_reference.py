"""mkdocs hook: render the stack reference tables from the models, so they never drift.

A page containing ``<!-- stack-reference -->`` gets, in its place, one table per section with
every key, its type, default, environment variable and description.
"""

from __future__ import annotations

import typing
from typing import Any

MARKER = "<!-- stack-reference -->"


def _type_name(annotation: Any) -> str:
    text = repr(annotation) if not isinstance(annotation, type) else annotation.__name__
    for noise in ("typing.", "oxeo_flows.stack.", "<class '", "'>"):
        text = text.replace(noise, "")
    return text.replace("|", "\\|")


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
                default_text = "—" if default is None or default is typing.Any else f"`{default!r}`"
                out.append(
                    f"| `{key}` | `{_type_name(annotation)}` | {default_text} | `{env}` | "
                    f"{description.replace(chr(10), ' ')} |"
                )
            out.append("")
    return "\n".join(out)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Replace the marker with the generated tables."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render())
