"""The run folder: its paths, who owns it, how it starts, and whether what it holds can be trusted.

    check_path(out, "--out")           a folder that can be made and written, else one line (no writes)
    with claimed(out, new=True):       this process alone owns `out` until the block ends
    check_databases(...)               a damaged SQLite file is named before any call is spent

Why a lock and not a marker file: an `optimize`, `--resume`, `curate` or `eval` owns its folder
while it runs; two in one folder would double the spend and mix their files. `fcntl.flock` on
`LOCK` is held by the open descriptor, so the operating system releases it when the owner ends,
however it ends (kill -9 included): a crashed run never leaves its folder stuck. The lock file
is never removed (unlinking a lock file lets two processes hold locks on two different files).

A new run's folder is made with an exclusive `mkdir` and then locked; only the lock's holder
looks at what the folder holds, so of two new runs on one `--out` one runs and the other is
refused. `--force` empties the folder of every file a command writes before the new run writes
(files no command wrote are left alone: they cannot be mistaken for a run's state).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from drpo.errors import UserInputError

LOCK = ".drpo-lock"
"""Held (flock) by the process that owns the folder; holds its pid, for the refusal's message."""
CHECKPOINTS = "checkpoints.sqlite"
"""The run's checkpoints and, in the same file, its record store (graph/records.py)."""
JOURNAL = "journal.sqlite"
"""Every answer the run received, so that a resumed run replays them instead of asking again."""
LEDGER = "ledger.sqlite"
"""Every call the run sent, fault and replay, across processes (backends/ledger.py)."""
MANIFEST = "run.json"
"""What `--resume` needs to rebuild the run (drpo/runner.py `RunManifest`)."""

RUN_FILES = frozenset({
    MANIFEST, CHECKPOINTS, JOURNAL, LEDGER, "artifact.json", "prompt.txt", "run.log", "trace.jsonl",
    "levels.jsonl", "curated.json", "scores.jsonl", "summary.json", "report.html", "llama-server.log",
})
"""Every file a command writes in its folder (an older version's `levels.jsonl` included)."""
_DB_SIDE_FILES = ("-wal", "-shm", "-journal")
EVAL_FOLDER = "eval"
"""`eval`'s default folder inside the optimize folder it evaluates: an old run's evaluation goes
with the run under `--force`."""


# --- paths -----------------------------------------------------------------------------------


def check_path(path: Path, flag: str) -> None:
    """`path` is, or can be made as, a writable folder. Writes nothing; one line naming the part
    of the path that is wrong (a file, a dangling symbolic link, a folder that cannot be written)."""
    probe = path
    while True:
        if probe.is_symlink() and not probe.exists():
            raise UserInputError(f"{flag} {path}: {probe} is a symbolic link to {os.readlink(probe)}, which does not "
                                 "exist; create its target or choose another path")
        if probe.exists():
            break
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        where = "exists and is not a folder" if probe == path else f"{probe} is a file, not a folder"
        raise UserInputError(f"{flag} {path}: {where}; choose another path")
    if probe.is_dir() and not os.access(probe, os.W_OK | os.X_OK):
        where = "the folder is not writable" if probe == path else f"cannot create it: {probe} is not writable"
        raise UserInputError(f"{flag} {path}: {where}; choose another path or fix its permissions")


def make_folder(path: Path, flag: str) -> bool:
    """Create `path` (and its parents); True when this call created it. One line if it cannot."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir()
    except FileExistsError:
        if not path.is_dir():
            raise UserInputError(f"{flag} {path}: exists and is not a folder; choose another path") from None
        return False
    except OSError as exc:
        raise UserInputError(f"{flag} {path}: cannot create it ({exc.strerror}); choose another path") from None
    return True


# --- one owner -------------------------------------------------------------------------------


def _holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        pid = ""
    return f" (pid {pid})" if pid.isdigit() else ""


def _lock(out: Path) -> int:
    """An exclusive, non-blocking flock on `out`'s lock file; its descriptor. One line when held."""
    try:
        fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UserInputError(f"--out {out}: cannot write in it ({exc.strerror}); choose another folder") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise UserInputError(f"--out {out}: in use by another process{holder} (an optimize, --resume, curate or "
                             "eval still running there); wait for it to end or choose another folder") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def leftovers(out: Path) -> list[str]:
    """What `out` holds besides its lock file, sorted."""
    return sorted(p.name for p in out.iterdir() if p.name != LOCK) if out.is_dir() else []


def check_new_folder(out: Path, force: bool, *, replaces_runs: bool = True) -> None:
    """A new run may start in `out`: absent, empty, or `--force`. Writes nothing (a quick refusal
    before any engine is built; `claimed` checks again under the lock). `replaces_runs`: the
    command is a new optimize run, which `--force` lets replace an old one; any other command
    would delete the run it reads (`eval --out RUN_DIR --force`), so it is refused."""
    if out.exists() and not out.is_dir():
        raise UserInputError(f"--out {out}: exists and is not a folder; choose another path")
    held = leftovers(out)
    if held and not force:
        raise UserInputError(f"--out {out}: folder is not empty; choose a new folder or pass --force")
    if held and not replaces_runs and (out / MANIFEST).exists():
        raise UserInputError(f"--out {out}: holds an optimize run ({MANIFEST}), which --force would delete; "
                             "choose another folder")


def _is_run_file(name: str) -> bool:
    base = name.removesuffix(".tmp")
    for suffix in _DB_SIDE_FILES:
        base = base.removesuffix(suffix)
    return base in RUN_FILES


def clear_run_files(out: Path) -> None:
    """Remove every file a command wrote in `out` (and an evaluation's folder of them)."""
    for entry in out.iterdir():
        if entry.is_file() and _is_run_file(entry.name):
            entry.unlink()
    evaluation = out / EVAL_FOLDER
    if evaluation.is_dir() and not evaluation.is_symlink():
        clear_run_files(evaluation)
        if not leftovers(evaluation):
            shutil.rmtree(evaluation)


@contextmanager
def claimed(out: Path, *, new: bool, force: bool = False, replaces_runs: bool = True) -> Iterator[bool]:
    """Own `out` for the block: lock it (one line if another process does), and for a new run
    make it exclusively and check, under the lock, that it holds no run (`--force`: empty it;
    `replaces_runs` as in `check_new_folder`). Yields whether this call created the folder."""
    created = False
    if new:
        created = make_folder(out, "--out")
    elif not out.is_dir():
        raise UserInputError(f"--resume: {out} is not a folder; pass the folder of the run to continue")
    fd = _lock(out)
    try:
        if new and force:
            check_new_folder(out, force, replaces_runs=replaces_runs)
            clear_run_files(out)
        elif new and (held := leftovers(out)):
            raise UserInputError(f"--out {out}: folder is not empty ({', '.join(held[:3])}); another run started "
                                 "there first: choose a new folder or pass --force")
        yield created
    finally:
        os.close(fd)


def discard(out: Path, *, created: bool) -> None:
    """Remove what a command that cannot be continued wrote in `out` (called by its owner, under
    the lock): its files, and the folder itself when the command made it and nothing else is there.
    The lock file goes last, while still held: a process that opened it before fails its lock."""
    clear_run_files(out)
    if created and not leftovers(out):
        (out / LOCK).unlink(missing_ok=True)
        out.rmdir()


# --- damaged state ---------------------------------------------------------------------------


def database_fault(path: Path, table: str | None = None) -> str | None:
    """What is wrong with the SQLite file at `path` (None when it reads whole, or is absent).
    `table`: a table the file must hold (a file the program made always has it)."""
    if not path.exists():
        return None
    if path.is_dir():
        return "it is a folder, not a database"
    try:
        with closing(sqlite3.connect(path, timeout=30)) as db:
            rows = db.execute("PRAGMA quick_check").fetchall()
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as exc:
        return f"{exc}; a truncated or overwritten file?"
    if rows != [("ok",)]:
        return f"{rows[0][0]}; a truncated or overwritten file?"
    if table is not None and table not in tables:
        return f"it holds no {table} table; a truncated or overwritten file?"
    return None


def rows_in(path: Path, table: str) -> int:
    """Rows in `table` of a database `database_fault` accepted (0 when absent)."""
    if not path.is_file():
        return 0
    with closing(sqlite3.connect(path, timeout=30)) as db:
        return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def check_run_state(out: Path) -> None:
    """The run's own databases read whole and agree, before a resumed run spends anything: a
    journal with answers needs the ledger that counted them (else budgets would start again), and
    a ledger that counted calls needs the checkpoints those calls were made from."""
    way_out = f"the run cannot be resumed from it: start over with `--out {out} --force`"
    for name, table in ((JOURNAL, "responses"), (LEDGER, "events"), (CHECKPOINTS, None)):
        if (fault := database_fault(out / name, table)) is not None:
            raise UserInputError(f"--resume: {out / name} is damaged ({fault}); {way_out}")
    answers, events = rows_in(out / JOURNAL, "responses"), rows_in(out / LEDGER, "events")
    if answers and not events:
        raise UserInputError(f"--resume: {out / LEDGER} is missing or empty while the journal holds {answers} "
                             f"answers: the run's budgets and accounts are lost; {way_out}")
    checkpoints = out / CHECKPOINTS
    if events and (not checkpoints.is_file() or database_fault(checkpoints, "checkpoints") is not None
                   or not rows_in(checkpoints, "checkpoints")):
        raise UserInputError(f"--resume: {checkpoints} is missing or empty while the ledger records {events} "
                             f"events: the search's checkpoints are lost; {way_out}")


def check_cache(path: Path, flag: str) -> None:
    """A shared cache database reads whole (it is checked before a run relies on it)."""
    if (fault := database_fault(path)) is not None:
        raise UserInputError(f"--cache-dir: {path} is damaged ({fault}); delete it (it is rebuilt) or pass {flag}")


def seal_torn_line(path: Path) -> None:
    """End an append-only log's torn last line (a process killed mid-write) with a newline, so
    the next run's first line is not glued to it: the torn line stays alone, every new one whole."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as log:
        log.seek(-1, os.SEEK_END)
        if log.read(1) != b"\n":
            log.write(b"\n")
