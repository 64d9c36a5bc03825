"""Bias diagnostics shown with every leaderboard.

- length: does a judge reward longer replies? Spearman of item score vs reply length
  (characters) per judge and dimension.
- distribution: the score histogram per judge and dimension; a judge that gives 80% or
  more of its verdicts one score is flagged.
- position: for pairwise runs judged in both orders, how often the verdict survives the
  swap, and how often the first-shown reply wins. ``winner`` names model_a or model_b
  (not a position); ``order == "ab"`` means model_a was shown first.
- same family: a judge and a candidate from one model family (self-preference risk).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from .scores import clean
from .stats import Undefined, correlation

FLAT_SHARE = 0.8
_FAMILIES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (family, re.compile(pattern)) for family, pattern in (
        ("openai", r"(^|[^a-z])(chat)?gpt|(^|[^a-z0-9])o[1-9]($|[^a-z0-9])|davinci"),
        ("anthropic", r"claude"),
        ("qwen", r"qwen|qwq"),
        ("llama", r"llama"),
        ("smollm", r"smollm"),
        ("deepseek", r"deepseek"),
        ("google", r"gemini|gemma"),
        ("mistral", r"mistral|mixtral|codestral"),
        ("glm", r"(^|[^a-z])(chat)?glm"),
    ))
# litellm provider prefixes that name a family on their own ("openai/" does not: it
# fronts any OpenAI-compatible server).
_PROVIDER_FAMILY = {"anthropic": "anthropic", "gemini": "google", "vertex_ai": "google",
                    "mistral": "mistral", "deepseek": "deepseek"}


def model_family(name: str) -> str | None:
    """The model family a model string belongs to (``openai``, ``anthropic``, ``qwen``,
    ``llama``, ``smollm``, ``deepseek``, ``google``, ``mistral``, ``glm``), or None."""
    text = name.lower()
    provider, _, model = text.rpartition("/")
    for family, pattern in _FAMILIES:
        if pattern.search(model or text):
            return family
    if model == "openai":
        return "openai"
    return _PROVIDER_FAMILY.get(provider.split("/")[0]) if provider else None


def same_family(judge: str, model: str) -> str | None:
    """The family judge and candidate share, or None."""
    family = model_family(judge)
    return family if family is not None and family == model_family(model) else None


def diagnostics(items: pd.DataFrame, rows: pd.DataFrame,
                pairwise: pd.DataFrame | None) -> dict[str, Any]:
    """All four diagnostics; ``items`` are per-judge item scores, ``rows`` judged samples."""
    return {
        "length": length_correlation(items),
        "distribution": score_distribution(rows),
        "position": position_consistency(pairwise),
        "same_family": family_flags(rows),
    }


def length_correlation(items: pd.DataFrame) -> list[dict[str, Any]]:
    """Per (judge, dimension): n and Spearman rho (with p) of item score vs reply length."""
    out = []
    for (judge, dim), grp in items.groupby(["judge", "dimension"], observed=True, sort=True):
        grp = grp[grp["reply_chars"].notna()]
        rec: dict[str, Any] = {"judge": str(judge), "dimension": str(dim), "n": len(grp)}
        try:
            rho, p = correlation(grp["score"].to_numpy(), grp["reply_chars"].to_numpy(),
                                 "spearman", ("judge", "reply length"))
            rec.update(spearman=rho, p=p)
        except Undefined as exc:
            rec.update(spearman=None, spearman_reason=str(exc), p=None, p_reason=str(exc))
        out.append(rec)
    return out


def score_distribution(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Per (judge, dimension): counts of ok verdicts per whole score point, mean, sd,
    the most common score and its share; ``flat`` when that share is 80% or more."""
    ok = rows[(rows["status"] == "ok") & rows["score"].notna()]
    out = []
    for (judge, dim), grp in ok.groupby(["judge", "dimension"], observed=True, sort=True):
        lo, hi = int(grp["scale_min"].min()), int(grp["scale_max"].max())
        points = np.clip(np.rint(grp["score"].to_numpy()), lo, hi).astype(int)
        counts = np.bincount(points - lo, minlength=hi - lo + 1)
        top = int(np.argmax(counts))
        share = float(counts[top] / counts.sum())
        out.append({
            "judge": str(judge), "dimension": str(dim), "scale": [lo, hi], "n": len(grp),
            "counts": {str(lo + i): int(c) for i, c in enumerate(counts)},
            "mean": clean(grp["score"].mean()),
            "sd": clean(grp["score"].std(ddof=1)) if len(grp) > 1 else None,
            "top_score": lo + top, "top_share": share, "flat": share >= FLAT_SHARE,
        })
    return out


def position_consistency(pairwise: pd.DataFrame | None) -> list[dict[str, Any]]:
    """Per (judge, dimension) of pairwise rows judged in both orders.

    ``n_pairs``: verdict pairs with both orders ok; ``consistency``: share whose winner
    (a model, or a tie) is the same in both orders; ``first_position_rate``: among ok
    non-tie verdicts, the share won by the reply shown first (0.5 is unbiased).
    """
    if pairwise is None or not len(pairwise):
        return []
    ok = pairwise[pairwise["status"] == "ok"].copy()
    if not len(ok):
        return []
    for name in ("model_a", "model_b", "winner", "order"):
        ok[name] = ok[name].astype("object")
    ok["winner_model"] = np.where(ok["winner"] == "a", ok["model_a"],
                                  np.where(ok["winner"] == "b", ok["model_b"], "tie"))
    ok["first_model"] = np.where(ok["order"] == "ab", ok["model_a"], ok["model_b"])
    keys = ["judge", "dimension", "item_id", "model_a", "model_b", "prompt_id", "sample",
            "variant"]
    ok = ok.astype({k: "object" for k in keys})
    out = []
    for (judge, dim), grp in ok.groupby(["judge", "dimension"], sort=True):
        verdicts = grp.groupby(keys[2:] + ["order"], sort=False)["winner_model"].last()
        table = verdicts.unstack("order").reindex(columns=["ab", "ba"])
        both = table.dropna()
        decided = grp[grp["winner_model"] != "tie"]
        rec: dict[str, Any] = {"judge": str(judge), "dimension": str(dim),
                               "n_pairs": len(both), "n_verdicts": len(grp),
                               "tie_rate": float((grp["winner_model"] == "tie").mean())}
        if len(both):
            rec["consistency"] = float((both["ab"] == both["ba"]).mean())
        else:
            rec.update(consistency=None, consistency_reason="no item judged in both orders")
        if len(decided):
            rec["first_position_rate"] = float(
                (decided["winner_model"] == decided["first_model"]).mean())
        else:
            rec.update(first_position_rate=None,
                       first_position_rate_reason="no decided (non-tie) verdict")
        out.append(rec)
    return out


def family_flags(rows: pd.DataFrame) -> list[dict[str, str]]:
    """Every (judge, candidate) pair in the rows that share a model family."""
    pairs = rows[["judge", "model"]].drop_duplicates()
    out = []
    for judge, model in sorted((str(j), str(m)) for j, m in pairs.itertuples(index=False)):
        family = same_family(judge, model)
        if family:
            out.append({"judge": judge, "model": model, "family": family})
    return out
