"""Rendering of the Jinja2 templates in ``templates/``."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
MANAGED_BY = "Managed by the gpt-oss vLLM deploy (pyinfra); local edits are overwritten."
_ENV = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined,
                   keep_trailing_newline=True, autoescape=False)


def render(template: str, **context) -> str:
    """Render one template; a missing variable is an error, never an empty string."""
    return _ENV.get_template(template).render(managed_by=MANAGED_BY, **context)
