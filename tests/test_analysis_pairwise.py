"""Pairwise statistics: win rates against a baseline checked by hand, Bradley-Terry checked
against an independent maximum-likelihood fit with scipy's optimiser."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize

from csc_harness.analysis import load_judgments
from csc_harness.analysis.pairwise import ELO_BASE, ELO_SCALE, pairwise_results
from csc_harness.analysis.synthetic import pairwise_row, write_jsonl
from csc_harness.errors import UserError


def row(item: str, a: str, b: str, order: str, winner: str | None, conv: str | None = None,
        **fields):
    status = "ok" if winner is not None else "invalid"
    return pairwise_row(item_id=item, conversation_id=conv or item.split(":")[0],
                        model_a=a, model_b=b, model=f"{a} vs {b}", order=order,
                        winner=winner, status=status, **fields)


def load(tmp_path, rows):
    write_jsonl(iter(rows), tmp_path / "j" / "judgments.jsonl")
    return load_judgments([tmp_path / "j"]).pairwise


# (ab verdict, ba verdict) per item; "base" is model_a, "x" model_b.
HAND = [("b", "b"),     # x wins in both orders
        ("b", "a"),     # the orders disagree: inconsistent, a tie
        ("a", "a"),     # x loses
        ("tie", "tie"),  # a consistent tie
        ("b", None)]    # one order invalid: x wins on the other alone


@pytest.fixture()
def hand(tmp_path):
    rows = []
    for i, (ab, ba) in enumerate(HAND):
        rows += [row(f"d{i}:1", "base", "x", "ab", ab), row(f"d{i}:1", "base", "x", "ba", ba)]
    return pairwise_results(load(tmp_path, rows), baseline="base", rounds=200)


def test_win_tie_loss_shares_match_a_hand_count(hand):
    (rates,) = hand["win_rates"]
    assert rates["model"] == "x" and rates["baseline"] == "base"
    assert rates["n_matches"] == 5
    assert rates["win"]["value"] == pytest.approx(2 / 5)
    assert rates["tie"]["value"] == pytest.approx(2 / 5)
    assert rates["loss"]["value"] == pytest.approx(1 / 5)
    assert rates["score"]["value"] == pytest.approx((2 + 0.5 * 2) / 5)


def test_order_inconsistent_pairs_are_counted_apart(hand):
    (rates,) = hand["win_rates"]
    assert rates["n_inconsistent"] == 1 and rates["n_single_order"] == 1
    assert rates["inconsistent"]["value"] == pytest.approx(1 / 5)
    (pair,) = hand["consistency"]
    assert (pair["n_both_orders"], pair["n_consistent"], pair["n_inconsistent"],
            pair["n_single_order"]) == (4, 3, 1, 1)
    assert pair["inconsistent_rate"] == pytest.approx(1 / 4)


def test_intervals_contain_the_value(hand):
    (rates,) = hand["win_rates"]
    for name in ("win", "tie", "loss", "score"):
        assert rates[name]["ci_low"] <= rates[name]["value"] <= rates[name]["ci_high"]


def test_the_bootstrap_resamples_dialogues_not_items(tmp_path):
    rows = []
    for i, (ab, ba) in enumerate(HAND):
        rows += [row(f"d0:{i}", "base", "x", o, v, conv="d0") for o, v in (("ab", ab),
                                                                             ("ba", ba))]
    (rates,) = pairwise_results(load(tmp_path, rows), rounds=200)["win_rates"]
    assert rates["n_dialogues"] == 1  # one dialogue: no interval rather than a zero width
    assert rates["score"]["ci_low"] is None and rates["score"]["ci_high"] is None


def test_the_default_baseline_is_the_model_in_every_pair(tmp_path):
    rows = [row("d1:1", a, b, "ab", "a") for a, b in (("alpha", "hub"), ("beta", "hub"),
                                                       ("gamma", "hub"))]
    result = pairwise_results(load(tmp_path, rows), rounds=20)
    assert result["baseline"] == "hub"
    assert [r["model"] for r in result["win_rates"]] == ["alpha", "beta", "gamma"]
    assert all(r["win"]["value"] == 1.0 for r in result["win_rates"])  # model_a won


def test_an_unknown_baseline_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="'nobody' is not a model"):
        pairwise_results(load(tmp_path, [row("d1:1", "a", "b", "ab", "a")]),
                         baseline="nobody")


def _random_tournament(models, strength, dialogues, seed):
    """Consistent verdicts (same in both orders) and some ties, and the win matrix."""
    rng = np.random.default_rng(seed)
    rows, wins = [], np.zeros((len(models), len(models)))
    for d in range(dialogues):
        for i in range(len(models)):
            for j in range(i + 1, len(models)):
                p = 1 / (1 + math.exp(strength[j] - strength[i]))
                u = rng.random()
                verdict = "tie" if u > 0.85 else ("a" if rng.random() < p else "b")
                points = {"a": 1.0, "b": 0.0, "tie": 0.5}[verdict]
                wins[i, j] += points
                wins[j, i] += 1 - points
                for order in ("ab", "ba"):
                    rows.append(row(f"d{d}:1", models[i], models[j], order, verdict))
    return rows, wins


def _scipy_fit(wins: np.ndarray) -> np.ndarray:
    """Independent fit: minimise the negative log-likelihood, model 0 fixed at 0."""
    k = len(wins)

    def nll(free):
        beta = np.concatenate([[0.0], free])
        diff = beta[:, None] - beta[None, :]
        return float((wins * np.logaddexp(0.0, -diff)).sum())

    res = minimize(nll, np.zeros(k - 1), method="BFGS", options={"gtol": 1e-10})
    return np.concatenate([[0.0], res.x])


def test_bradley_terry_matches_an_independent_scipy_fit(tmp_path):
    models = ["base", "m1", "m2", "m3"]
    rows, wins = _random_tournament(models, [0.0, 0.9, -0.6, 0.3], dialogues=60, seed=4)
    result = pairwise_results(load(tmp_path, rows), baseline="base", rounds=200)
    (bt,) = result["bradley_terry"]
    got = {r["model"]: r["elo"] for r in bt["ratings"]}
    expected = ELO_SCALE * _scipy_fit(wins) + ELO_BASE
    for name, value in zip(models, expected):
        assert got[name] == pytest.approx(value, abs=1e-3)
    assert got["base"] == ELO_BASE
    assert [r["model"] for r in bt["ratings"]] == ["m1", "m3", "base", "m2"]
    for r in bt["ratings"]:
        assert r["ci_low"] <= r["elo"] <= r["ci_high"]


def test_bradley_terry_is_undefined_when_a_model_never_loses(tmp_path):
    rows = []
    for d in range(5):
        rows += [row(f"d{d}:1", "a", "b", "ab", "a"), row(f"d{d}:1", "a", "c", "ab", "a"),
                 row(f"d{d}:1", "b", "c", "ab", "a" if d % 2 else "b")]
    (bt,) = pairwise_results(load(tmp_path, rows), baseline="b", rounds=20)["bradley_terry"]
    assert bt["ratings"] is None and "never beat, or never lost" in bt["ratings_reason"]


def test_bradley_terry_needs_three_models(hand):
    (bt,) = hand["bradley_terry"]
    assert bt["ratings"] is None and bt["ratings_reason"] == "fewer than 3 models"


def test_results_reproduce_with_the_same_seed(tmp_path):
    rows, _ = _random_tournament(["a", "b", "c"], [0.0, 0.5, 1.0], dialogues=20, seed=1)
    frame = load(tmp_path, rows)
    assert pairwise_results(frame, rounds=50, seed=3) == pairwise_results(frame, rounds=50,
                                                                          seed=3)
