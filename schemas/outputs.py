"""What engines must produce. The JSON schemas sent to engines are generated from these types.

Field descriptions are part of the schema the model reads, so they are written for the model.
Strings carry no `maxLength`: llama.cpp's grammar compiler rejects long bounded repetitions, and
an API model's long answer is no fault. Output length is bounded by each role's `max_tokens`.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator


class QueryAnalysis(BaseModel):
    main_topic: str = Field(description="The subject of the query.")
    user_intent: str = Field(description="What the user wants to achieve.")
    ambiguities: str = Field(
        description="Unclear parts or false premises in the query, or 'none'."
    )
    response_format: str = Field(description="The form a good answer should take.")
    challenges: str = Field(description="What makes answering well hard.")


class AspectsSelection(BaseModel):
    reasoning: str = Field(description="Why these aspects matter most for this query.")
    selected_aspects: list[str] = Field(description="Aspect names from the catalogue.")


class CriteriaOutput(BaseModel):
    query_analysis: QueryAnalysis
    aspects_selection: AspectsSelection

    @classmethod
    def schema_for(cls, names: list[str], low: int = 2, high: int = 5) -> dict[str, Any]:
        """The schema with the aspect names enumerated, so constrained decoders pick real ones."""
        schema = cls.model_json_schema()
        items = schema["$defs"]["AspectsSelection"]["properties"]["selected_aspects"]
        items["items"] = {"type": "string", "enum": list(names)}
        items["minItems"], items["maxItems"] = low, high
        return schema


class ScoredAspect(BaseModel):
    rationale: str = Field(description="The evidence for the score, citing the response.")
    score: int = Field(description="1 (strongly disagree) to 5 (strongly agree).", json_schema_extra={"enum": [1, 2, 3, 4, 5]})

    @field_validator("score", mode="before")
    @classmethod
    def _clamp(cls, value: Any) -> int:
        """Accept "4", 4.0 or "4.5" (rounded half up) and clamp to 1-5; reject text like "N/A"."""
        return likert_score(value)


def likert_score(value: object) -> int:
    """A judge's 1-5 score from what models write: 4, 4.0, "4", " 4.5 " (half up), clamped to 1-5.

    Anything else (null, a list, an object, a boolean, text, NaN, infinity) raises ValueError, which
    pydantic reports as a ValidationError: the reply is an invalid output, retried and counted. A
    TypeError here would escape validation and end the run."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"a score must be a number from 1 to 5, not {type(value).__name__}")
    if isinstance(value, int):
        return min(5, max(1, value))
    try:
        number = float(value.strip()) if isinstance(value, str) else value
    except ValueError:
        raise ValueError(f"a score must be a number from 1 to 5, not {value[:40]!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"a score must be a number from 1 to 5, not {number}")
    return min(5, max(1, math.floor(number + 0.5)))


@lru_cache(maxsize=1024)
def judge_output_type(aspects: tuple[str, ...]) -> type[BaseModel]:
    """A model with exactly one required `ScoredAspect` field per selected aspect.

    Cached per aspect tuple: building a model is most of a judge call's CPU otherwise."""
    fields: dict[str, Any] = {name: (ScoredAspect, Field(alias=name)) for name in aspects}
    safe = {f"aspect_{i}": spec for i, spec in enumerate(fields.values())}
    return create_model("JudgeOutput", __config__=ConfigDict(populate_by_name=True), **safe)


@lru_cache(maxsize=1024)
def judge_schema(aspects: tuple[str, ...]) -> dict[str, Any]:
    """The JSON schema of `judge_output_type(aspects)`; shared, so callers must not modify it."""
    return judge_output_type(aspects).model_json_schema(by_alias=True)


class RewriteOutput(BaseModel):
    analysis: str = Field(description="What in the response cost points, per aspect.")
    thought: str = Field(description="How the system prompt should change, and why.")
    new_system_prompt: str = Field(description="The complete improved system prompt.")


class AnswerRewriteOutput(BaseModel):
    analysis: str = Field(description="Where the answer fell short, per aspect of the critique.")
    thought: str = Field(description="How the improved answer will fix those points.")
    new_response: str = Field(description="The complete improved answer, between <START> and <END>.")

    @field_validator("new_response")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.replace("<START>", "").replace("<END>", "").strip():
            raise ValueError("the new answer is empty")
        return value
