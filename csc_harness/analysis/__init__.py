"""Analysis of judgment rows: leaderboards, agreement with humans, ablations, bias.

Reads plain rows only (judgments JSONL, human ratings, lm-eval results); never calls a
model provider and never imports the judging or provider layers. numpy, scipy and pandas
load with this package: import it lazily from command-line code.
"""

from .ablation import compare_variants
from .agreement import correlate, leave_one_out_spearman
from .automatic import load_automatic_metrics
from .bias import model_family, same_family
from .leaderboard import EMBEDDED_LABEL, leaderboard
from .ratings import load_human_ratings
from .rows import Judgments, load_judgments
from .scores import OVERALL, PANEL, item_scores
from .stats import Estimate, Undefined, bootstrap_p, cluster_means, krippendorff_alpha

__all__ = [
    "EMBEDDED_LABEL",
    "OVERALL",
    "PANEL",
    "Estimate",
    "Judgments",
    "Undefined",
    "bootstrap_p",
    "cluster_means",
    "compare_variants",
    "correlate",
    "item_scores",
    "krippendorff_alpha",
    "leaderboard",
    "leave_one_out_spearman",
    "load_automatic_metrics",
    "load_human_ratings",
    "load_judgments",
    "model_family",
    "same_family",
]
