"""The run's redactor: every byte a run writes passes it, so a key never lands in a file or a log.

    redactor = Redactor.for_config(config)        # the run's actual secret values
    with redacting(redactor):                     # what `drpo.session.run_session` does
        write_atomic(path, text)                  # scrubbed with `current()`
    print(redactor.scrub_exception(exc))          # an error line, for the command line

It knows values, not patterns: the value of every `api_key_env` variable the run's backends name,
whatever that variable is called and however short the key, and the value of any environment
variable whose name looks secret (KEY, TOKEN, SECRET, PASSWORD, CRED, AUTH). A value is masked in
every form it takes once written: as is, escaped inside a JSON string (twice, for JSON inside JSON),
inside a Python repr, HTML-escaped and URL-quoted. Text is scrubbed after it is rendered, so no
field and no renderer can be missed.

The redactor belongs to a run, not to this module: `redacting()` makes it the current one in a
context variable for the run's duration, so two runs in one process each mask their own secrets
and nothing outlives the run. Outside a run, `current()` is built from the environment alone.
This module imports only the standard library and `schemas`, so a lower floor may use it.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from urllib.parse import quote, quote_plus

from schemas.config import RunConfig

MASK = "***"
MIN_KEY_CHARS = 4
"""A key named by `api_key_env` is masked from this length on. A shorter value cannot be told
apart from ordinary text (masking "x" would destroy every file), and is no secret anyway."""
MIN_SECRET_CHARS = 8
"""A variable that only *looks* secret by name is masked from this length on: short values of such
variables are flags ("1", "true"), not credentials."""
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CRED|AUTH", re.IGNORECASE)


def _written_forms(secret: str) -> set[str]:
    """`secret` as it appears once written into text, JSON, a repr, HTML or a URL."""
    in_json = json.dumps(secret)[1:-1]
    return {
        secret,
        in_json,
        json.dumps(secret, ensure_ascii=False)[1:-1],
        json.dumps(in_json)[1:-1],
        repr(secret)[1:-1],
        html.escape(secret),
        html.escape(secret, quote=False),
        quote(secret, safe=""),
        quote_plus(secret),
    }


class Redactor:
    """Masks a fixed set of secret values in any text. Immutable; cheap to call per line."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = frozenset(s for s in secrets if s)
        forms = sorted({f for s in self.secrets for f in _written_forms(s)}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, forms))) if forms else None

    @classmethod
    def from_environment(cls, key_envs: Iterable[str] = (), environ: Mapping[str, str] | None = None) -> Redactor:
        """The values of the variables `key_envs` names, and of every variable named like a secret."""
        env = os.environ if environ is None else environ
        named = [env.get(name, "") for name in key_envs]
        values = [v for v in named if len(v) >= MIN_KEY_CHARS]
        values += [v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= MIN_SECRET_CHARS]
        return cls(values)

    @classmethod
    def for_config(cls, config: RunConfig | None, environ: Mapping[str, str] | None = None) -> Redactor:
        """The run's redactor: the keys its backends read (`api_key_env`), plus secret-looking variables."""
        names = [backend.api_key_env for backend in config.backends.values()] if config is not None else []
        return cls.from_environment(names, environ)

    def __bool__(self) -> bool:
        return self._pattern is not None

    def scrub(self, text: str) -> str:
        """`text` with every form of every secret replaced by `***`."""
        return self._pattern.sub(MASK, text) if self._pattern is not None and text else text

    def scrub_exception(self, exc: BaseException) -> str:
        """One line for an error message: the exception's text (or its type), scrubbed."""
        text = str(exc).strip() or type(exc).__name__
        return self.scrub(" ".join(text.split()))

    def format_exception(self, exc: BaseException) -> str:
        """The full traceback (causes and groups included), scrubbed: for `--verbose` error output."""
        import traceback

        return self.scrub("".join(traceback.format_exception(exc)))

    def scrub_in_place(self, exc: BaseException) -> BaseException:
        """Mask secrets in `exc`'s arguments and text attributes, its causes and its group's members,
        so whoever stores or prints the exception later (a candidate's failure, a checkpoint, a
        traceback) finds no key. Returns `exc`."""
        if not self:
            return exc
        seen: set[int] = set()
        for item in _exception_tree(exc, seen):
            item.args = tuple(self.scrub(a) if isinstance(a, str) else a for a in item.args)
            for name, value in list(vars(item).items()):
                if isinstance(value, str):
                    setattr(item, name, self.scrub(value))
        return exc


def _exception_tree(exc: BaseException | None, seen: set[int]) -> Iterator[BaseException]:
    """`exc`, its `__cause__`/`__context__` chain and exception-group members, each once."""
    if exc is None or id(exc) in seen:
        return
    seen.add(id(exc))
    yield exc
    yield from _exception_tree(exc.__cause__, seen)
    yield from _exception_tree(exc.__context__, seen)
    for member in getattr(exc, "exceptions", ()) if isinstance(exc, BaseExceptionGroup) else ():
        yield from _exception_tree(member, seen)


_current: ContextVar[Redactor | None] = ContextVar("drpo_redactor", default=None)


def active() -> Redactor | None:
    """The redactor `redacting()` made current here, if any (cheap: for code that writes per line)."""
    return _current.get()


def current() -> Redactor:
    """The redactor of the run this code runs in; outside a run, one built from the environment."""
    redactor = _current.get()
    return redactor if redactor is not None else Redactor.from_environment()


@contextmanager
def redacting(redactor: Redactor) -> Iterator[Redactor]:
    """Make `redactor` the current one in this context (and the tasks it starts) until the block ends."""
    token = _current.set(redactor)
    try:
        yield redactor
    finally:
        _current.reset(token)
