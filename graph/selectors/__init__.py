"""Selection rules by name: every module of this package that defines `SELECTOR` is one.

`[search] selector = "NAME"` (or `--selector NAME`) picks the module `graph/selectors/NAME.py`.
Adding a rule is adding a file: nothing here lists them, so nothing else changes.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from graph.selectors.base import Selector

DEFAULT = "paper"


@cache
def _registry() -> dict[str, Selector]:
    found: dict[str, Selector] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        rule = getattr(module, "SELECTOR", None)
        if rule is not None:
            found[info.name] = rule
    return found


def selector_names() -> list[str]:
    """The names `search.selector` may take, sorted."""
    return sorted(_registry())


def find_selector(name: str) -> Selector:
    """The rule called `name`; a `LookupError` that lists the known ones for any other name
    (the runner turns it into one line for the user before anything runs)."""
    try:
        return _registry()[name]
    except KeyError:
        raise LookupError(f"unknown selector {name!r}; known: {', '.join(selector_names())}") from None
