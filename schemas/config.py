"""Run configuration: the search settings, the engines, and which engine serves which role.

Loaded from CLI flags and an optional TOML file (see README, "Configuration"). Secrets never live
here: a backend names the environment variable that holds its key.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator, model_validator

from schemas.llm import Sampling

ROLES = ("policy", "criteria", "judge", "rewriter", "curator")
"""The paper's roles that call an engine. Other roles (a model-backed critic) declare themselves
beside their agent and are bound with `[roles.NAME]` like these (graph/roles.py checks names)."""

PolicyMode = Literal["auto", "chat", "completion"]

BackendKind = str
"""An engine kind of the registry (backends/registry.py `ENGINES`): embedded, openai, vllm, ..."""

ROLE_SAMPLING: dict[str, Sampling] = {
    "policy": Sampling(temperature=0.0, top_p=1.0, max_tokens=2048),
    "criteria": Sampling(temperature=0.0, top_p=1.0, max_tokens=2048),
    "judge": Sampling(temperature=0.0, top_p=1.0, max_tokens=2048),
    "rewriter": Sampling(temperature=0.2, top_p=0.95, max_tokens=2048),
    "curator": Sampling(temperature=0.0, top_p=1.0, max_tokens=2048),
}
"""The paper's sampling per role (drpo-method.md §8); a role's config overrides any field."""


Whole = Annotated[int, Strict()]
"""An integer setting: `true` is refused (lax validation would take it as 1, `max_concurrency = true`
running one request at a time), and so is `3.0` or `"3"`: settings files are typed."""
Number = Annotated[float, Strict()]
"""A real-valued setting: a whole number is taken, `true` is refused (lax validation takes it as 1.0)."""

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def _looks_like_key(value: str) -> bool:
    """Variable names are words joined by underscores; keys are long runs of mixed characters."""
    if value.startswith(("sk-", "sk_", "hf_", "gsk_", "xai-", "AIza")):
        return True
    return any(len(part) >= 24 and any(c.isdigit() for c in part) for part in value.split("_"))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Budget(_Strict):
    """Hard caps for one role; reaching one stops the run gracefully with what it has."""

    calls: Whole | None = Field(default=None, ge=1)
    tokens: Whole | None = Field(default=None, ge=1)
    """Input plus output tokens."""


class BackendConfig(_Strict):
    kind: BackendKind = "embedded"
    model: str | None = None
    """Model name (openai), path or hub id (vllm), or GGUF path (embedded; default: SmolLM2-135M-Instruct)."""
    base_url: str | None = None
    """OpenAI-compatible endpoint; default from OPENAI_BASE_URL."""
    base_urls: list[str] = Field(default_factory=list)
    """Several endpoints serving the same model: requests go to the least busy healthy one."""
    endpoint_cooldown_s: Number = Field(default=30.0, ge=0)
    """How long an endpoint that failed at the transport level is left out."""
    requests_per_minute: Whole | None = Field(default=None, ge=1)
    tokens_per_minute: Whole | None = Field(default=None, ge=1)
    api_key_env: str = "OPENAI_API_KEY"
    """The environment variable holding the API key (the key itself is never stored)."""

    @field_validator("api_key_env")
    @classmethod
    def _names_a_variable(cls, value: str) -> str:
        """A pasted key here would be written to run.json: refuse anything but a variable name."""
        if not _ENV_NAME.fullmatch(value) or _looks_like_key(value):
            raise ValueError(
                "api_key_env must be the NAME of the environment variable that holds the key "
                "(e.g. OPENAI_API_KEY), not the key itself; export the key and put its variable's name here"
            )
        return value
    policy_mode: PolicyMode = "auto"
    """How the policy (the model being aligned) is prompted: `chat` sends messages through the
    model's chat template, `completion` sends the raw text (a base model, as the paper aligns),
    `auto` is chat when the model has a chat template and completion when it has none (an HTTP
    server's template cannot be seen: there `auto` means chat). Other roles are always chat."""

    @model_validator(mode="before")
    @classmethod
    def _legacy_chat_flag(cls, data: Any) -> Any:
        """`chat = false` (older configs) is `policy_mode = "completion"`."""
        if isinstance(data, dict) and "chat" in data:
            data = dict(data)
            chat = data.pop("chat")
            if not isinstance(chat, bool):
                raise ValueError("chat must be true or false (or use policy_mode)")
            data.setdefault("policy_mode", "chat" if chat else "completion")
        return data

    @property
    def chat(self) -> bool:
        """The policy is not forced into completion mode."""
        return self.policy_mode != "completion"
    max_concurrency: Whole = Field(default=64, ge=1)
    """Requests in flight per endpoint (the embedded engine: in all, spread over its servers; one
    single-thread server per core when unset: backends/llama_server.py)."""
    max_attempts: Whole = Field(default=4, ge=1)
    """Tries per call for transport faults and invalid structured output."""
    max_retry_wait_s: Number = Field(default=60.0, ge=0)
    """The longest wait between attempts, also when a server asks for more (Retry-After)."""
    timeout_s: Number = Field(default=300.0, gt=0)
    """How long one request may take before it is a transport fault (and retried)."""
    n_ctx: Whole = Field(default=8192, ge=256)
    """Context window of the embedded model (per slot of the embedded server)."""
    n_threads: Whole | None = None
    dtype: str = "auto"
    """vLLM: weights dtype."""
    max_model_len: Whole | None = None
    """vLLM: context length (default: the model's)."""
    gpu_memory_utilization: Number = Field(default=0.9, gt=0.0, le=1.0)
    tensor_parallel_size: Whole = Field(default=1, ge=1)
    enforce_eager: bool = False
    """vLLM: disable CUDA graphs (about 4x slower on small models; for debugging only)."""


class RoleConfig(_Strict):
    """How one role calls its engine. Unset fields keep the paper's per-role defaults."""

    backend: str = "default"
    model: str | None = None
    """Overrides the backend's model for this role only."""
    temperature: Number | None = Field(default=None, ge=0.0, le=2.0)
    top_p: Number | None = Field(default=None, gt=0.0, le=1.0)
    max_tokens: Whole | None = Field(default=None, ge=1)
    backends: list[str] = Field(default_factory=list)
    """A judge panel (`[roles.judge]` only): every listed backend's model judges every answer and
    their rewards are averaged (graph/judge_panel.py). The first member also serves as `backend`."""

    @model_validator(mode="after")
    def _panel(self) -> RoleConfig:
        """A panel names each member once and uses the members' own models: `model`, or another
        `backend`, beside it would be ambiguous. `backend` becomes the first member, so a saved
        config (which holds both) loads again."""
        if not self.backends:
            return self
        if len(set(self.backends)) != len(self.backends):
            raise ValueError("backends: name each panel member once (for more verdicts from one judge use "
                             "[search] judge_samples)")
        if self.model is not None or ("backend" in self.model_fields_set and self.backend != self.backends[0]):
            raise ValueError("backends (a judge panel) cannot be combined with backend or model: "
                             "set each member's model under [backends.NAME]")
        self.backend = self.backends[0]
        return self


class SearchConfig(_Strict):
    """The beam search (drpo-method.md §4); defaults are the paper's."""

    depth: Whole = Field(default=20, ge=1)
    max_depth_increase: Whole = Field(default=10, ge=0)
    beam: Whole = Field(default=2, ge=1)
    actions: Whole = Field(default=3, ge=1)
    k: Whole = Field(default=2, ge=0)
    """In-context examples retrieved per query during optimization."""
    seed: Whole = 42
    initial_prompt: str = "You are a helpful assistant."
    history: Whole = Field(default=5, ge=1)
    """Prompts on the path shown to the rewriter."""
    queries_per_level: Whole = Field(default=1, ge=1)
    """m: queries each candidate answers per level, rewarded by their mean (1 = the paper)."""
    selector: str = "paper"
    """How the next beam and the deliverable are chosen (graph/selectors/): `paper` is top B by
    path mean (last reward when B = 1)."""
    judge_samples: Whole = Field(default=1, ge=1, le=100)
    """n: judge calls per answer (per panel member), their rewards averaged (1 = the paper). With
    n > 1 the judge samples at graph/judge_panel.py's `SAMPLE_TEMPERATURE` unless `[roles.judge]
    temperature` is set, sample i with seed + i (a retry adds 1000, so n stays at most 100)."""
    lcb_z: Number = Field(default=1.0, ge=0.0)
    """z of the `lcb` selector: it ranks by mean minus z standard errors (graph/selectors/lcb.py)."""
    smoothing: Number = Field(default=0.4, gt=0.0, le=1.0)
    """K of the `smoothed` selector, for a reward resting on one judge verdict: it ranks by the path's
    rewards smoothed exponentially, s = (1 - K) s + K y (graph/selectors/smoothed.py says why 0.4);
    1 is `best_last`, a small K leans on the ancestors."""
    panel_on_demand: Whole = Field(default=0, ge=0)
    """K: with a judge panel (or `judge_samples` > 1), every candidate is judged by the first call
    only, and the rest of the panel is asked for the level's K best candidates by the selector's
    score, then for any other candidate that enters the next beam, so the beam is only ever chosen
    on full-panel means (graph/panel_on_demand.py says why). 0 = the whole panel judges every answer."""
    validation: Whole = Field(default=0, ge=0)
    """N (`--validate N`): the final beam's prompts answer N held-out queries and the best
    validation mean is delivered (graph/validation.py); 0 = the paper, no validation. (Not named
    `validate`: pydantic's BaseModel owns that name.)"""
    validate_levels: bool = False
    """With `validation`: the best candidate of every level is validated too."""
    validation_file: str | None = None
    """`--val FILE`: the held-out queries come from this query file (its first N, or all of it)
    instead of the last N of the training stream."""

    @model_validator(mode="after")
    def _validated(self) -> SearchConfig:
        if self.validate_levels and not (self.validation or self.validation_file):
            raise ValueError("validate_levels needs held-out queries: set validation = N (--validate N) "
                             "or validation_file (--val FILE)")
        if self.panel_on_demand and self.queries_per_level > 1:
            raise ValueError("panel_on_demand re-judges a candidate's one answer: it needs queries_per_level = 1; "
                             "set panel_on_demand = 0 or queries_per_level = 1")
        return self

    @property
    def validates(self) -> bool:
        """Whether the finalists are validated on held-out queries after the search."""
        return bool(self.validation or self.validation_file)


class CurationConfig(_Strict):
    """The example-curation loop (drpo-method.md §5.1); defaults are the paper's."""

    iterations: Whole = Field(default=5, ge=1)
    """Rewrite-and-judge rounds per example at most."""
    from_best: bool = False
    """Rewrite the best answer so far instead of the latest one (the reference rewrites the latest)."""
    seed: Whole = 0
    """Seeds the loop's answer rewrites (round r asks the curator with seed 1009 * seed + r,
    graph/roles.py), so a curation is repeatable and two seeds never share a round's sample. The
    criteria and judge calls are not seeded by it: they keep their roles' sampling (temperature 0
    and seed 0 unless `[roles.*]` says otherwise), so they are the same under every seed."""


class RunConfig(_Strict):
    search: SearchConfig = Field(default_factory=SearchConfig)
    curation: CurationConfig = Field(default_factory=CurationConfig)
    backends: dict[str, BackendConfig] = Field(default_factory=lambda: {"default": BackendConfig()})
    roles: dict[str, RoleConfig] = Field(default_factory=dict)
    budgets: dict[str, Budget] = Field(default_factory=dict)
    """Optional hard caps per role, e.g. `[budgets.judge] calls = 200`."""
    critics: list[str] = Field(default_factory=list)
    """Extra critic roles whose verdicts join the judge's (see graph/roles.py)."""

    @model_validator(mode="after")
    def _check_roles(self) -> RunConfig:
        if "default" not in self.backends and any(r not in self.roles for r in ROLES):
            raise ValueError("[backends] has no 'default' entry, and some roles are not bound to another backend")
        for role, binding in self.roles.items():
            if binding.backend not in self.backends:
                raise ValueError(
                    f"[roles.{role}] uses backend {binding.backend!r}, which is not defined under [backends]"
                )
        return self

    @model_validator(mode="after")
    def _check_panels(self) -> RunConfig:
        for role, binding in self.roles.items():
            if binding.backends and role != "judge":
                raise ValueError(f"[roles.{role}] backends: only the judge can be a panel; bind one backend")
            for name in binding.backends:
                if name not in self.backends:
                    raise ValueError(f"[roles.{role}] backends names {name!r}, which is not defined under "
                                     f"[backends]; add [backends.{name}] or drop it from the panel")
        return self

    def role(self, name: str) -> RoleConfig:
        return self.roles.get(name, RoleConfig())

    def sampling(self, role: str, default: Sampling | None = None) -> Sampling:
        """The role's sampling: the paper's defaults (or the declared `default` of a new role),
        then the role's overrides from the config."""
        binding = self.role(role)
        overrides = {k: v for k in ("temperature", "top_p", "max_tokens") if (v := getattr(binding, k)) is not None}
        base = ROLE_SAMPLING.get(role) or default or Sampling()
        return base.model_copy(update=overrides)
