"""Rubric LLM judges: prompts as files, verdict parsing, candidates, a resumable runner.

``run_judgments(config, candidates, out_dir, client=...)`` judges candidate replies into
``OUT/judgments.jsonl`` (row contract: :mod:`csc_harness.judge.rows`) and ``OUT/run.json``;
``estimate_judgments`` is its dry run. Everything model-facing goes through one
:class:`csc_harness.llm.Client`.
"""

from .candidates import Candidate, control_candidates, load_candidates, with_controls
from .config import JudgeConfig
from .estimate import Estimate, estimate_judgments
from .parse import Verdict, parse_pairwise, parse_verdict
from .plan import Job, Plan
from .render import RenderedPrompt, Reply, render_prompt, response_schema
from .rows import IDENTITY_FIELDS, PAIRWISE_FIELDS, ROW_FIELDS, row_key
from .rubrics import (
    Dimension,
    Level,
    Rubric,
    TemplateGroup,
    load_rubrics,
    prompts_dir,
    select_templates,
)
from .runner import RunResult, run_judgments
from .store import JUDGMENTS_FILE, JudgmentStore
from .weighted import weighted_score

__all__ = [
    "IDENTITY_FIELDS",
    "JUDGMENTS_FILE",
    "PAIRWISE_FIELDS",
    "ROW_FIELDS",
    "Candidate",
    "Dimension",
    "Estimate",
    "Job",
    "JudgeConfig",
    "JudgmentStore",
    "Level",
    "Plan",
    "RenderedPrompt",
    "Reply",
    "Rubric",
    "RunResult",
    "TemplateGroup",
    "Verdict",
    "control_candidates",
    "estimate_judgments",
    "load_candidates",
    "load_rubrics",
    "parse_pairwise",
    "parse_verdict",
    "prompts_dir",
    "render_prompt",
    "response_schema",
    "row_key",
    "run_judgments",
    "select_templates",
    "weighted_score",
    "with_controls",
]
