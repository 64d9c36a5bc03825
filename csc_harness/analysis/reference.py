"""The paper's published automatic metrics, as reference rows beside models measured here.

The rows (package data ``csc_harness/reference/paper_csconv.json``, cited to arXiv
2508.04423) are numbers someone else reported on the full CSConv with an unstated
tokenisation. They are shown only when the models here were measured on the full CSConv
too, always labelled as the paper's, and never enter intervals, paired tests or rankings:
the board keeps them in their own ``paper`` section.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

from ..data import CSCONV_COUNTS

PAPER_FILE = "paper_csconv.json"


@lru_cache(maxsize=1)
def paper_table() -> dict[str, Any]:
    """The packaged table: ``label``, ``citation``, ``url``, ``dataset``, ``metrics``,
    ``caveats`` and ``rows`` (``{"model", "reference": {...}, "generated": {...}}``)."""
    text = (resources.files("csc_harness") / "reference" / PAPER_FILE).read_text("utf-8")
    return json.loads(text)


def data_counts(spec: str | None) -> dict[str, int]:
    """Dialogues, utterances and supporter turns of the dataset ``spec`` names."""
    from ..data import load_source

    loaded = load_source(spec)
    utterances = sum(len(c.utterances) for c in loaded.conversations)
    supporter = sum(u.speaker == "supporter" for c in loaded.conversations
                    for u in c.utterances)
    return {"dialogues": len(loaded.conversations), "utterances": utterances,
            "supporter_turns": supporter}


def paper_section(counts: Mapping[str, Any] | None,
                  measured_dialogues: Sequence[int] = ()) -> dict[str, Any]:
    """The board's ``paper`` section: the table's label, citation and caveats, ``shown``
    and either ``rows`` or ``reason`` (one line saying why they are hidden).

    ``counts`` are the dataset's (:func:`data_counts`); ``measured_dialogues`` the
    dialogue counts of what was measured here (judged items, per-item metric files): the
    rows are shown only when the data is the full CSConv and nothing was measured on part
    of it.
    """
    table = paper_table()
    head = {k: table[k] for k in ("label", "citation", "url", "metrics", "caveats")}
    full = CSCONV_COUNTS["dialogues"]
    if counts is None:
        reason = "the data the models were measured on is unknown"
    elif any(counts.get(k) != v for k, v in CSCONV_COUNTS.items()):
        reason = (f"the data is not the full CSConv ({counts.get('dialogues')} dialogues, "
                  f"{counts.get('supporter_turns')} supporter turns; the paper used "
                  f"{full:,} and {CSCONV_COUNTS['supporter_turns']:,})")
    elif any(n < full for n in measured_dialogues):
        reason = (f"models here were measured on {min(measured_dialogues)} of the {full:,} "
                  "CSConv dialogues")
    else:
        return head | {"shown": True, "rows": table["rows"]}
    return head | {"shown": False, "reason": f"paper rows hidden: {reason}"}
