"""What `run.py eval` compares: the items to answer and the configurations that answer them.

Everything here is checked before an engine is built or a file written: the data file, the
artifact under test and each baseline, and that no item was in an artifact's training set.
Configurations:

- the artifact under test (`drpo`): its prompt and k examples retrieved from its pool;
- `plain`: "You are a helpful assistant.", no examples;
- `urial`: a fixed expert-style prompt with three fixed examples (data/urial_baseline.json);
- any other optimize output folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from agents.eval_judge import rubric_for
from drpo.datasets import load_queries, load_records
from drpo.errors import UserInputError
from drpo.run_files import ARTIFACT_FILE, read_artifact
from schemas.artifact import PolicySetup, RunArtifact
from schemas.catalogue import DATA_DIR
from schemas.config import PolicyMode
from schemas.evaluation import EvalItem
from schemas.messages import Example

PLAIN_PROMPT = "You are a helpful assistant."
URIAL_FILE = DATA_DIR / "urial_baseline.json"
UNDER_TEST = "drpo"
"""The name of the artifact under test in scores and summaries."""


def load_eval_items(path: Path) -> list[EvalItem]:
    """just-eval-instruct records (`id`, `instruction`, `source_id`, `dataset`, `category`) or our query
    files (JSONL/JSON with `query` and `source`, or one query per line; source `harmful` is safety)."""
    try:
        pairs = load_records(path)  # every format and every error message of the training files
    except UserInputError as exc:
        raise UserInputError(str(exc).replace("--train ", "--data ", 1)) from None
    items: list[EvalItem] = []
    seen: set[str] = set()
    for index, (query, record) in enumerate(pairs):
        item_id = str(record.get("id", index))
        if item_id in seen:
            raise UserInputError(f"--data {path}: duplicate id {item_id!r}; ids must be unique")
        seen.add(item_id)
        category = str(record.get("category") or (query.source if query.source != "file" else "regular"))
        dataset = None if record.get("dataset") is None else str(record["dataset"])
        items.append(EvalItem(
            id=item_id, instruction=query.query, category=category, dataset=dataset,
            source_id=None if record.get("source_id") is None else str(record["source_id"]),
            rubric=rubric_for(category, dataset),
        ))
    return items


@dataclass
class EvalTarget:
    """One configuration: a system prompt and its examples."""

    name: str
    kind: Literal["artifact", "plain", "urial"]
    source: str
    prompt: str
    examples: list[Example] = field(default_factory=list)
    k: int = 0
    fixed_examples: bool = False
    """Put every example in context, in order (URIAL), instead of retrieving the k nearest."""
    artifact_dir: Path | None = None
    artifact: RunArtifact | None = None

    @property
    def examples_in_context(self) -> int:
        return len(self.examples) if self.fixed_examples else self.k


def urial_target() -> EvalTarget:
    doc = json.loads(URIAL_FILE.read_text(encoding="utf-8"))
    examples = [Example.model_validate(e) for e in doc["examples"]]
    return EvalTarget(name="urial", kind="urial", source=str(URIAL_FILE), prompt=doc["prompt"], examples=examples,
                      k=len(examples), fixed_examples=True)


def artifact_target(name: str, folder: Path, artifact: RunArtifact, k: int) -> EvalTarget:
    return EvalTarget(name=name, kind="artifact", source=str(folder), prompt=artifact.prompt,
                      examples=artifact.examples, k=min(k, len(artifact.examples)), artifact_dir=folder,
                      artifact=artifact)


def _unique_name(folder: Path, taken: set[str]) -> str:
    """The folder's name, numbered when two baselines' folders share one."""
    base = folder.resolve().name or "artifact"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name


def resolve_targets(artifact_dir: Path, baselines: list[str], k: int) -> list[EvalTarget]:
    """The artifact under test first, then each baseline once, in the order given."""
    if k < 0:
        raise UserInputError(f"-k must be 0 or more, got {k}")
    targets = [artifact_target(UNDER_TEST, artifact_dir, read_artifact(artifact_dir, "--artifact"), k)]
    names = {UNDER_TEST}
    for baseline in baselines:
        if baseline == "plain":
            target = EvalTarget(name="plain", kind="plain", source="built in", prompt=PLAIN_PROMPT)
        elif baseline == "urial":
            target = urial_target()
        else:
            folder = Path(baseline)
            if not (folder / ARTIFACT_FILE).is_file():
                raise UserInputError(f"--baseline {baseline}: not `plain`, `urial`, or an optimize output folder "
                                     f"(no {ARTIFACT_FILE} there)")
            target = artifact_target(_unique_name(folder, names), folder, read_artifact(folder, "--baseline"), k)
        if target.name in names:
            continue  # the same baseline named twice
        names.add(target.name)
        targets.append(target)
    return targets


def normalise_query(text: str) -> str:
    return " ".join(text.lower().split())


def training_queries(artifact: RunArtifact) -> tuple[set[str], str]:
    """The artifact's whole training file if it is still readable, else the queries it consumed."""
    path = Path(artifact.train_file)
    if path.is_file():
        try:
            return {normalise_query(q.query) for q in load_queries(path)}, str(path)
        except UserInputError:
            pass
    return {normalise_query(q.query) for q in artifact.query_order}, "its query_order"


def check_train_overlap(items: list[EvalItem], targets: list[EvalTarget]) -> None:
    """Refuse items an artifact trained on: a prompt scored on its own training queries says little."""
    for target in targets:
        if target.artifact is None:
            continue
        seen, where = training_queries(target.artifact)
        overlap = [item for item in items if normalise_query(item.instruction) in seen]
        if overlap:
            raise UserInputError(
                f"--data: {len(overlap)} of {len(items)} queries were in the training set of {target.source} "
                f"({where}), e.g. {overlap[0].instruction[:60]!r}; evaluate on held-out queries or pass "
                "--allow-train-overlap"
            )


def policy_setup(targets: list[EvalTarget], wanted: PolicyMode, allow_mode_change: bool) -> PolicySetup | None:
    """How every configuration prompts the policy: as the artifact under test was optimized
    (`wanted` auto or that mode), so baselines are answered the same way; None resolves another
    `wanted` mode against the engine, which only `allow_mode_change` permits. A baseline artifact
    optimized in another mode would be answered in a mode it was not optimized in: refused too."""
    from drpo.api import policy_for_artifact  # the engines' module: imported when an eval runs

    under_test = targets[0].artifact
    assert under_test is not None  # resolve_targets puts the artifact under test first
    setup = policy_for_artifact(under_test, wanted, allow_mode_change=allow_mode_change,
                                where=f"--artifact {targets[0].source}")
    mode = setup.mode if setup is not None else wanted
    for target in targets[1:]:
        if target.artifact is not None and target.artifact.policy.mode != mode and not allow_mode_change:
            raise UserInputError(
                f"--baseline {target.source}: optimized in {target.artifact.policy.mode} mode, but this eval prompts "
                f"every configuration in {mode} mode; compare artifacts of one mode, or pass --allow-mode-change"
            )
    return setup
