"""`python run.py serve --artifact DIR`: the command's options, their checks, and the server's start.

The engine: the artifact's own policy engine (the backend and model its run recorded), unless
`--config`, `--backend` or `--model` name another, as for every command. `--max-concurrency`
bounds the requests the engine gets; `--max-concurrent-requests` the requests the server answers
at once (more get 429). Bad input (no artifact, a port out of range, an unset `--auth-env`
variable, a port in use) ends with one line and exit code 2 before anything listens.
"""

from __future__ import annotations

import argparse
import math
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path

import anyio
import structlog

from agents.embedders import EMBEDDER_NAMES
from backends.errors import EngineRefused
from backends.openai_compat import loopback_host
from backends.registry import engine_names
from drpo.errors import UserInputError
from drpo.serve_prompt import CLIENT_SYSTEM_POLICIES
from drpo.serve_wire import ServeLimits
from schemas.artifact import RunArtifact
from schemas.config import BackendConfig, RunConfig
from schemas.llm import Sampling
from telemetry.logs import get_logger, run_logs
from telemetry.redact import Redactor, redacting

log = get_logger("drpo.serve")
MIN_TOKEN_CHARS = 16
"""A bearer token shorter than this is refused: it could be guessed, and it would be masked
wherever its characters happen to appear in a log line."""


def _number(flag: str, low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{flag} must be {bound}, got {value}")
        return value

    return parse


def add_serve_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The `serve` command and its options, on the command line's subparsers."""
    limits = ServeLimits()
    serve = subparsers.add_parser("serve", help="serve an aligned model over an OpenAI-compatible HTTP API")
    serve.add_argument("--artifact", type=Path, required=True, help="an optimize output folder (prompt, examples)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=_number("--port", 0, 65535), default=8100, help="port (8100; 0: a free one)")
    serve.add_argument("--backend", choices=engine_names(), help="policy engine (default: the artifact's)")
    serve.add_argument("--model", help="model name (openai), path or hub id (vllm), or GGUF path (embedded)")
    serve.add_argument("--config", type=Path, help="TOML file: [backends.NAME], [roles.policy], ...")
    serve.add_argument("--max-concurrency", type=_number("--max-concurrency", 1),
                       help="requests in flight to the engine, per endpoint (the config's, 64)")
    serve.add_argument("--cache-dir", type=Path, help="embeddings cache (default: $DRPO_CACHE_DIR or ~/.cache/drpo)")
    serve.add_argument("--embedder", choices=EMBEDDER_NAMES, default="auto", metavar="EMBEDDER",
                       help="retrieval embedder: auto (the one the artifact recorded), wordllama, minilm, lexical")
    serve.add_argument("--allow-mode-change", action="store_true",
                       help="answer a completion-mode artifact in chat mode (or the reverse) when the config says so")
    serve.add_argument("-k", type=_number("-k", 0), default=3, help="examples retrieved per request (3)")
    serve.add_argument("--temperature", type=float, default=0.7, help="temperature when a request sets none (0.7)")
    serve.add_argument("--max-tokens", type=_number("--max-tokens", 1),
                       help="answer length when a request sets none (512, or [roles.policy] max_tokens)")
    serve.add_argument("--max-tokens-cap", type=_number("--max-tokens-cap", 1), default=limits.max_tokens_cap,
                       help=f"the most tokens a request may ask for; more is lowered to it ({limits.max_tokens_cap})")
    serve.add_argument("--max-n", type=_number("--max-n", 1), default=limits.max_n,
                       help=f"the most choices per request ({limits.max_n})")
    serve.add_argument("--max-messages", type=_number("--max-messages", 1), default=limits.max_messages,
                       help=f"the most messages per chat request, and content parts in them ({limits.max_messages})")
    serve.add_argument("--client-system", choices=CLIENT_SYSTEM_POLICIES, default="append",
                       help="a client's system message: appended after the aligned prompt, or ignored (append)")
    serve.add_argument("--auth-env", metavar="NAME",
                       help="require `Authorization: Bearer <token>`, the token read from this environment variable")
    serve.add_argument("--max-body-bytes", type=_number("--max-body-bytes", 1024), default=limits.max_body_bytes,
                       help=f"larger request bodies get 413 ({limits.max_body_bytes})")
    serve.add_argument("--max-concurrent-requests", type=_number("--max-concurrent-requests", 1),
                       default=limits.max_concurrent, help=f"requests answered at once; more get 429 "
                                                           f"({limits.max_concurrent})")
    serve.add_argument("--body-timeout", type=float, default=limits.body_timeout_s,
                       help="seconds a request body may take to arrive; a slower one gets 408 "
                            f"({limits.body_timeout_s:g})")
    serve.add_argument("--shutdown-timeout", type=float, default=limits.shutdown_timeout_s,
                       help="seconds requests in flight may take to finish after SIGTERM "
                            f"({limits.shutdown_timeout_s:g})")
    serve.add_argument("--workers", type=_number("--workers", 1, 256), default=1,
                       help="server processes on the port, each on a core of its own (1); needs an engine over HTTP")
    serve.add_argument("--log-dir", type=Path, help="write run.log and trace.jsonl (one line per request) here")
    shown = serve.add_mutually_exclusive_group()
    shown.add_argument("-q", "--quiet", action="store_true", help="show warnings and errors only")
    shown.add_argument("-v", "--verbose", action="store_true", help="show every event, one line per request too")
    return serve


def engine_config(args: argparse.Namespace, config: RunConfig, artifact: RunArtifact) -> RunConfig:
    """The flags' and file's engines when they name any, else the ones the artifact's run used."""
    if args.config is not None or args.backend is not None or args.model is not None:
        return config
    if args.max_concurrency is None:
        return artifact.config
    backends = {name: backend.model_copy(update={"max_concurrency": args.max_concurrency})
                for name, backend in artifact.config.backends.items()}
    return artifact.config.model_copy(update={"backends": backends})


def policy_backend(config: RunConfig) -> BackendConfig:
    role = config.role("policy")
    backend = config.backends[role.backend]
    return backend.model_copy(update={"model": role.model or backend.model})


def server_sampling(args: argparse.Namespace, config: RunConfig) -> Sampling:
    """What a request that sets nothing gets: `answer`'s sampling (the paper's inference defaults)."""
    from drpo.api import INFERENCE_SAMPLING

    if not 0.0 <= args.temperature <= 2.0:
        raise UserInputError(f"--temperature must be between 0 and 2, got {args.temperature}")
    max_tokens = args.max_tokens or config.role("policy").max_tokens or INFERENCE_SAMPLING.max_tokens
    return INFERENCE_SAMPLING.model_copy(update={"temperature": args.temperature, "max_tokens": max_tokens})


def auth_token(name: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """The bearer token clients must send, read from the variable `--auth-env` names."""
    if name is None:
        return None
    value = environ.get(name, "")
    if not value.strip():
        raise UserInputError(f"--auth-env {name}: the environment variable is not set; export the bearer token "
                             "clients must send in it, or drop --auth-env to serve without one")
    if len(value.strip()) < MIN_TOKEN_CHARS:
        raise UserInputError(f"--auth-env {name}: the token is shorter than {MIN_TOKEN_CHARS} characters; use a "
                             "long random one (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
    return value.strip()


def _created(artifact: RunArtifact) -> int:
    try:
        return int(datetime.fromisoformat(artifact.created_at).timestamp())
    except ValueError:
        return 0


@contextmanager
def _log_files(log_dir: Path | None, redactor: Redactor) -> Iterator[None]:
    from drpo.run_folder import make_folder

    if log_dir is None:
        yield
        return
    make_folder(log_dir, "--log-dir")  # one line for a file in the way or a folder that cannot be made
    with ExitStack() as stack:
        try:
            stack.enter_context(run_logs(log_dir, redactor))
        except OSError as exc:  # run.log or trace.jsonl is a folder, or cannot be written
            raise UserInputError(f"--log-dir {log_dir}: cannot write its logs there ({exc.strerror or exc}); "
                                 "choose another path") from None
        yield


def run_serve(args: argparse.Namespace, config: RunConfig | None = None) -> int:
    """Serve until SIGTERM or Ctrl-C; 0 once drained. `config` is the command line's (built from the
    flags when not given)."""
    from drpo.cli_config import build_config, cache_flag, cache_folder
    from drpo.run_files import read_artifact
    from drpo.run_folder import check_path
    from drpo.serve import AlignedServer, ServeOptions, serve_until_signalled

    config = config if config is not None else build_config(args)
    artifact = read_artifact(args.artifact, "--artifact")
    run_config = engine_config(args, config, artifact)
    backend = policy_backend(run_config)
    sampling = server_sampling(args, run_config)
    if not math.isfinite(args.shutdown_timeout) or args.shutdown_timeout < 0:
        raise UserInputError(f"--shutdown-timeout must be a number of seconds, 0 or more, got {args.shutdown_timeout}")
    if not math.isfinite(args.body_timeout) or args.body_timeout <= 0:
        raise UserInputError(f"--body-timeout must be a number of seconds above 0, got {args.body_timeout}")
    check_path(cache_folder(args), cache_flag(args))  # as `answer` does: before the embedder writes there
    if args.log_dir is not None:
        check_path(args.log_dir, "--log-dir")
    token = auth_token(args.auth_env)
    redactor = Redactor([*Redactor.for_config(run_config).secrets, *([token] if token else [])])
    limits = ServeLimits(max_tokens_cap=args.max_tokens_cap, max_n=args.max_n, max_messages=args.max_messages,
                         max_body_bytes=args.max_body_bytes,
                         max_concurrent=args.max_concurrent_requests, body_timeout_s=args.body_timeout,
                         shutdown_timeout_s=args.shutdown_timeout)

    if token is None and not loopback_host(args.host):
        log.warning("serve.unauthenticated", host=args.host,
                    hint="anyone who can reach this address may use the engine; set --auth-env NAME")

    def serve(backend: BackendConfig, limits: ServeLimits, sock: socket.socket | None = None,
              ready: Callable[[], object] | None = None) -> None:
        """One server in this process until signalled (the only one, or a worker on `sock`)."""
        options = ServeOptions(name=f"drpo-{artifact.run_id}", client_system=args.client_system, auth_token=token,
                               limits=limits, redactor=redactor, created=_created(artifact))

        async def until_signalled() -> None:
            model = _aligned_model(args, backend, sampling)
            try:
                setup = await model.policy_setup()
                await _probe(model, redactor)
                server = AlignedServer(model, setup, options)
                try:
                    await serve_until_signalled(server, args.host, args.port, backend=f"{backend.kind}:"
                                                f"{model.engine.model}", sock=sock, ready=ready)
                except OSError as exc:
                    raise _cannot_listen(args, exc) from None
            finally:
                await model.aclose()

        with redacting(redactor), _log_files(args.log_dir, redactor):
            anyio.run(until_signalled)

    if args.workers == 1:
        serve(backend, limits)
        return 0
    return _in_workers(args, backend, limits, serve)


def _cannot_listen(args: argparse.Namespace, exc: OSError) -> UserInputError:
    return UserInputError(f"--host {args.host} --port {args.port}: cannot listen there ({exc.strerror or exc}); "
                          "choose another port or host")


def _in_workers(args: argparse.Namespace, backend: BackendConfig, limits: ServeLimits,
                serve: Callable[[BackendConfig, ServeLimits, socket.socket, Callable[[], object]], None]) -> int:
    """`serve` in `--workers` processes on one port (drpo/serve_workers.py), each with its share of
    the limits; the exit code once they have all ended."""
    from drpo.cli_errors import FAILURES, report
    from drpo.serve_workers import Workers, listening_sockets, share

    if backend.kind != "openai":
        raise UserInputError(f"--workers {args.workers}: each worker would load its own {backend.kind} engine; "
                             "serve an engine over HTTP (kind = \"openai\": vllm serve, llama.cpp's server) or use "
                             "--workers 1")
    backend, limits = share(backend, limits, args.workers)
    try:
        sockets = listening_sockets(args.host, args.port, args.workers)
    except OSError as exc:
        raise _cannot_listen(args, exc) from None

    def work(index: int, sock: socket.socket, ready: Callable[[], object]) -> int:
        structlog.contextvars.bind_contextvars(worker=index)  # on every line this worker logs
        try:
            serve(backend, limits, sock, ready)
        except FAILURES as exc:
            return report(exc, verbose=args.verbose)
        return 0

    return Workers(sockets, work).run()


def _aligned_model(args: argparse.Namespace, backend: BackendConfig, sampling: Sampling):  # type: ignore[no-untyped-def]
    from drpo.api import AlignedModel

    embedder = {} if args.embedder == "auto" else {"embedder": args.embedder}  # auto: the artifact's own
    try:
        return AlignedModel.from_artifact(args.artifact, backend=backend, k=args.k, sampling=sampling,
                                          cache_dir=args.cache_dir, response_cache=False,
                                          allow_mode_change=args.allow_mode_change, **embedder)
    except ValueError as exc:  # an embedder that is not installed
        raise UserInputError(str(exc)) from None


async def _probe(model, redactor: Redactor) -> None:  # type: ignore[no-untyped-def]
    """An engine that refuses the key or the model stops the start; one that cannot be reached yet
    is reported and served anyway (requests get 502 until it answers: it may be starting too)."""
    probe = getattr(model.engine, "probe", None)
    if probe is None:
        return
    try:
        await probe()
    except EngineRefused:
        raise
    except Exception as exc:  # noqa: BLE001 - reported, not fatal
        log.warning("serve.engine_unreachable", error=redactor.scrub_exception(exc)[:300],
                    hint="serving anyway: requests get 502 until the engine answers")
