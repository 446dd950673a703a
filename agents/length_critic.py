"""Length critic: an example of an extra role. Scores how far a response strays from a word band.

It needs no model, which makes it a clear worked example of adding a role (README, "Adding a
role"): a file here, its message in schemas/critics.py, one entry in graph/roles.py `CRITICS`.
"""

from __future__ import annotations

from schemas.critics import LengthRequest
from schemas.messages import AspectScore, Judgement

ASPECT = "Length"


async def critique_length(request: LengthRequest) -> Judgement:
    words = len(request.response.split())
    if request.min_words <= words <= request.max_words:
        score, why = 5, f"{words} words, within {request.min_words}-{request.max_words}"
    else:
        bound = request.min_words if words < request.min_words else request.max_words
        miss = abs(words - bound) / max(bound, 1)
        score = max(1, 5 - int(miss * 4 + 0.999))
        side = "short" if words < request.min_words else "long"
        why = f"{words} words, too {side} for {request.min_words}-{request.max_words}"
    return Judgement(scores={ASPECT: AspectScore(rationale=why, score=score)})
