"""From parsed flags to a validated `RunConfig`: defaults, then the TOML file, then flags.

Everything wrong with the settings' shape is found here, before any engine is built: an unreadable,
malformed or absurdly nested TOML file, a section of the wrong type, an unknown key, a value out of
range or of the wrong type (`max_concurrency = true`), a remote backend without a model. Each is
one `UserInputError` line naming the setting and where it came from. Names that registries define
(roles, critics, selectors) are checked by `drpo.runner.check_names`, where the run starts.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from backends.registry import BUNDLED_MODEL
from drpo.datasets import read_text_file
from drpo.errors import UserInputError
from schemas.config import BackendConfig, RoleConfig, RunConfig, SearchConfig

DEMO_SEARCH = SearchConfig(depth=3, max_depth_increase=1, beam=2, actions=2, k=1)
"""Small enough for 2 CPU cores in well under a minute; everything else is the paper's."""
# The token caps are the demo's clock: a 135M model fills any cap it is given with repetition (each
# JSON string is bounded to its share of the cap: backends/llama_server_schema.py), and every
# token it writes is also read again by the next role. The rewriter samples hotter than the
# paper's 0.2 so that a 135M model's two samples differ.
DEMO_ROLES = {
    "policy": RoleConfig(max_tokens=96),
    "criteria": RoleConfig(max_tokens=200),
    "judge": RoleConfig(max_tokens=240),
    "rewriter": RoleConfig(max_tokens=240, temperature=0.8),
}

SEARCH_FLAGS = ("depth", "max_depth_increase", "beam", "actions", "k", "seed", "queries_per_level", "selector",
                "judge_samples", "panel_on_demand", "validation", "validate_levels", "validation_file")
"""`optimize` flags that set the `[search]` key of the same name."""


CONFIG_HINT = "pass a TOML file"


def load_config_file(path: Path) -> dict[str, Any]:
    """The settings file's tables. Read as every input file is (a missing path is "no such file", a
    folder or /dev/null says what it is instead), then parsed: each fault is one line."""
    text = read_text_file(path, "--config", CONFIG_HINT)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserInputError(f"--config {path}: invalid TOML ({exc})") from None
    except RecursionError:
        raise UserInputError(f"--config {path}: nested too deeply to be a settings file; "
                             "sections hold keys, arrays and small tables") from None


def validation_message(exc: ValidationError, where: str) -> str:
    """The first problem pydantic found, as `where: section.key: message`."""
    error = exc.errors()[0]
    key = ".".join(str(p) for p in error["loc"]) or "(top level)"
    return f"{where}: {key}: {error['msg']}"


def _merge_file(data: dict[str, Any], file_data: dict[str, Any]) -> None:
    """The file's sections over the preset's: a section's keys merge, anything else replaces."""
    for section, values in file_data.items():
        if isinstance(values, dict) and isinstance(data.get(section), dict):
            data[section] = {**data[section], **values}
        else:
            data[section] = values


def _table(parent: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    """`parent[name]` as a dict to write flags into; a file that made it something else is refused."""
    value = parent.setdefault(name, {})
    if not isinstance(value, dict):
        raise UserInputError(f"{where}: [{name}] must be a table (a section), got {type(value).__name__}")
    return value


def _apply_flags(data: dict[str, Any], args: argparse.Namespace) -> None:
    where = f"--config {args.config}" if args.config is not None else "settings"
    if args.command == "optimize":
        search = _table(data, "search", where)
        for key in SEARCH_FLAGS:
            if getattr(args, key, None) is not None:
                value = getattr(args, key)
                search[key] = str(value) if isinstance(value, Path) else value
    if args.command == "curate":
        curation = _table(data, "curation", where)
        if args.iterations is not None:
            curation["iterations"] = args.iterations
        if args.from_best:
            curation["from_best"] = True
        if args.seed is not None:
            curation["seed"] = args.seed
    if args.backend is not None or args.model is not None:
        default = _table(_table(data, "backends", where), "default", f"{where}: [backends]")
        if args.backend is not None:
            default["kind"] = args.backend
        if args.model is not None:
            default["model"] = args.model
    if args.max_concurrency is not None:
        backends = _table(data, "backends", where)
        for name in list(backends) or ["default"]:
            _table(backends, name, f"{where}: [backends]")["max_concurrency"] = args.max_concurrency
    if getattr(args, "policy_mode", None) is not None:
        _policy_backend(data, where)["policy_mode"] = args.policy_mode


def _policy_backend(data: dict[str, Any], where: str) -> dict[str, Any]:
    """The `[backends.NAME]` table the policy role runs on (`[roles.policy] backend`, else default)."""
    roles = _table(data, "roles", where)
    policy = _table(roles, "policy", f"{where}: [roles]") if "policy" in roles else {}
    name = policy.get("backend", "default")
    if not isinstance(name, str):
        raise UserInputError(f"{where}: roles.policy.backend: must be the name of a backend, got {type(name).__name__}")
    backends = _table(data, "backends", where)
    if name != "default" and name not in backends:
        return {}  # an undefined backend: validation names it, with the role that uses it
    return _table(backends, name, f"{where}: [backends]")


def build_config(args: argparse.Namespace) -> RunConfig:
    """Defaults (paper, or demo), then the TOML file, then flags: later ones win."""
    data: dict[str, Any] = {}
    if getattr(args, "demo", False):
        data = {"search": DEMO_SEARCH.model_dump(), "roles": {k: v.model_dump() for k, v in DEMO_ROLES.items()}}
    if args.config is not None:
        _merge_file(data, load_config_file(args.config))
    _apply_flags(data, args)
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise UserInputError(validation_message(exc, str(args.config or "settings"))) from None
    default = config.backends.get("default", BackendConfig())
    if default.kind not in BUNDLED_MODEL and not default.model:
        raise UserInputError(f"--backend {default.kind} needs --model NAME (the model to serve or load)")
    return config


def cache_folder(args: argparse.Namespace) -> Path:
    """The shared cache folder: `--cache-dir`, else $DRPO_CACHE_DIR, else ~/.cache/drpo."""
    from drpo.session import default_cache_dir

    return args.cache_dir if args.cache_dir is not None else default_cache_dir()


def cache_flag(args: argparse.Namespace) -> str:
    """How the user named the cache folder, for an error line about it."""
    if args.cache_dir is not None:
        return "--cache-dir"
    return "DRPO_CACHE_DIR" if os.environ.get("DRPO_CACHE_DIR") else "the cache folder"
