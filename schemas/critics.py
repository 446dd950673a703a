"""Messages of extra critic roles, whose verdicts join the judge's (see graph/roles.py)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class LengthRequest(BaseModel):
    """Is the response's length in a band a reader finds comfortable?"""

    response: str
    min_words: int = Field(default=40, ge=0)
    max_words: int = Field(default=400, ge=1)
