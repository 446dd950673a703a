"""`eval` with a judge panel: every member rates every answer, and the item's scores are their mean.

`[roles.judge] backends = ["a", "b"]` binds several judge models (graph/judge_panel.py does the
same for the search). An eval that asked only the first of them would report one model's opinion
under a config that names several; averaging the members is what the panel is for (two models'
errors are less alike than one model's), and the per-member scores stay in `scores.jsonl` so a
reader can see where they disagreed. Each member's call is its own trace line, labelled with
`judge_backend`; one judge is asked exactly as before, with no label and no per-member fields.

A member whose call fails every attempt fails the item's judgement (`CallFailed`), as one judge
would: an item is never scored on part of the panel, which would give panel items and one-judge
items different scales.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import fmean

import structlog

from agents.eval_judge import judge_answer
from backends.protocol import Engine
from graph.fanout import gather
from graph.trace import traced
from schemas.evaluation import EvalJudgeRequest, EvalVerdict
from schemas.llm import Sampling


@dataclass(frozen=True)
class PanelVerdict:
    """The verdict of every member on one answer, in panel order."""

    judges: list[str]
    """The `backend:model` of each member."""
    verdicts: list[EvalVerdict]

    @property
    def scores(self) -> dict[str, int | float]:
        """Per aspect, the members' mean (a whole score, as one judge gives it, when there is one member)."""
        if len(self.verdicts) == 1:
            return {name: rated.score for name, rated in self.verdicts[0].scores.items()}
        return {name: fmean(v.scores[name].score for v in self.verdicts) for name in self.verdicts[0].scores}

    @property
    def mean(self) -> float:
        return fmean(self.scores.values())

    @property
    def reasons(self) -> dict[str, str]:
        """One judge's reasons as they are; a panel's each prefixed with the member that gave it."""
        if len(self.verdicts) == 1:
            return {name: rated.reason for name, rated in self.verdicts[0].scores.items()}
        return {name: " | ".join(f"{judge}: {v.scores[name].reason}" for judge, v in zip(self.judges, self.verdicts))
                for name in self.verdicts[0].scores}

    @property
    def member_scores(self) -> list[dict[str, int]]:
        """Each member's own scores; empty for one judge (its scores are the item's)."""
        if len(self.verdicts) == 1:
            return []
        return [{name: rated.score for name, rated in v.scores.items()} for v in self.verdicts]


async def _member(judge: str, engine: Engine, request: EvalJudgeRequest, sampling: Sampling) -> EvalVerdict:
    bound = structlog.contextvars.bind_contextvars(judge_backend=judge)  # in this call's own task
    try:
        return await traced("judge", request, judge_answer(request, engine=engine, sampling=sampling))
    finally:
        structlog.contextvars.reset_contextvars(**bound)


async def panel_judgement(panel: list[tuple[str, Engine]], request: EvalJudgeRequest,
                          sampling: Sampling) -> PanelVerdict:
    """Every member's verdict on the answer, all in flight together; one judge is one plain call."""
    if len(panel) == 1:
        judge, engine = panel[0]
        verdict = await traced("judge", request, judge_answer(request, engine=engine, sampling=sampling))
        return PanelVerdict(judges=[judge], verdicts=[verdict])
    verdicts = await gather(*(_member(judge, engine, request, sampling) for judge, engine in panel))
    return PanelVerdict(judges=[judge for judge, _ in panel], verdicts=list(verdicts))
