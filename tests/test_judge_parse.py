"""Verdict parsing and probability-weighted scores, as a specification by example."""

from __future__ import annotations

import math

import pytest

from csc_harness.judge import parse_pairwise, parse_verdict, weighted_score

ONE = ["empathy"]
THREE = ["strategy_adherence", "empathy", "problem_resolution"]


@pytest.mark.parametrize("answer, status, score", [
    pytest.param('{"rationale": "Warm and specific.", "score": 4}', "ok", 4.0, id="json"),
    pytest.param('```json\n{"rationale": "ok", "score": 5}\n```', "ok", 5.0, id="fenced-json"),
    pytest.param('{"score": "3"}', "ok", 3.0, id="score-as-string"),
    pytest.param('{"score": 4.0}', "ok", 4.0, id="whole-float"),
    pytest.param('{"empathy": {"rationale": "x", "score": 2}}', "ok", 2.0, id="keyed-by-dimension"),
    pytest.param("The reply is kind.\nScore: 4", "ok", 4.0, id="score-line"),
    pytest.param("Kind reply.\n**Final score:** 3/5", "ok", 3.0, id="markdown-score-line"),
    pytest.param("Feedback: kind. [RESULT] 5", "ok", 5.0, id="prometheus-result"),
    pytest.param("评分：4", "ok", 4.0, id="chinese-score-line"),
    pytest.param("On a scale of 1 to 5 this deserves careful thought.\nScore: 2", "ok", 2.0,
                 id="first-number-is-not-the-score"),
    pytest.param('{"score": 5}\nOn reflection that was generous.\n{"score": 3}', "invalid",
                 None, id="conflicting-verdicts-are-invalid"),
    pytest.param('Score: 5\n{"rationale": "after all", "score": 2}', "invalid", None,
                 id="conflicting-verdicts-across-forms"),
    pytest.param('Score: 4\n{"rationale": "agreed", "score": 4}', "ok", 4.0,
                 id="agreeing-verdicts-across-forms"),
    pytest.param('{"rationale": "Good.", "score": 7}', "invalid", None, id="out-of-range"),
    pytest.param('{"rationale": "Good.", "score": 0}', "invalid", None, id="below-range"),
    pytest.param('{"score": 3.5}', "invalid", None, id="not-whole"),
    pytest.param('{"score": true}', "invalid", None, id="boolean"),
    pytest.param('{"score": "great"}', "invalid", None, id="word"),
    pytest.param("I would give this four out of five.", "invalid", None, id="prose-only"),
    pytest.param("The reply scores well overall, 4 stars.", "invalid", None, id="bare-number"),
    pytest.param("", "invalid", None, id="empty"),
    pytest.param("I'm sorry, but I can't help with evaluating this content.", "refused", None,
                 id="refusal-text"),
    pytest.param("很抱歉，我无法评估这段对话。", "refused", None, id="refusal-zh"),
])
def test_single_dimension_verdicts(answer, status, score):
    (verdict,) = parse_verdict(answer, ONE, (1, 5)).values()
    assert (verdict.status, verdict.score) == (status, score)
    if status != "ok":
        assert verdict.reason


def test_provider_refusal_wins_over_text():
    verdicts = parse_verdict('{"score": 4}', THREE, (1, 5), refusal="content policy")
    assert {v.status for v in verdicts.values()} == {"refused"}


def test_rationale_is_kept_with_the_score():
    (verdict,) = parse_verdict('{"rationale": "Names the worry.", "score": 5}', ONE,
                               (1, 5)).values()
    assert verdict.rationale == "Names the worry."


def test_joint_verdicts_parse_per_dimension_and_a_missing_one_is_invalid():
    answer = ('{"strategy_adherence": {"rationale": "fits", "score": 4}, '
              '"empathy": {"rationale": "cold", "score": 2}}')
    verdicts = parse_verdict(answer, THREE, (1, 5))
    assert verdicts["strategy_adherence"].score == 4.0
    assert verdicts["empathy"].rationale == "cold"
    assert verdicts["problem_resolution"].status == "invalid"


def test_joint_score_only_and_line_forms():
    assert parse_verdict('{"strategy_adherence": 3, "empathy": 4, "problem_resolution": 5}',
                         THREE, (1, 5))["problem_resolution"].score == 5.0
    lines = "Strategy adherence: 3\nEmpathy score: 4\nproblem_resolution = 5"
    assert [v.score for v in parse_verdict(lines, THREE, (1, 5)).values()] == [3.0, 4.0, 5.0]


def test_a_bare_score_does_not_count_for_several_dimensions():
    verdicts = parse_verdict('{"score": 4}', THREE, (1, 5))
    assert {v.status for v in verdicts.values()} == {"invalid"}


@pytest.mark.parametrize("answer, winner", [
    pytest.param('{"rationale": "A is concrete.", "winner": "A"}', "A", id="json-a"),
    pytest.param('{"winner": "tie"}', "tie", id="json-tie"),
    pytest.param("Both fine.\nWinner: B", "B", id="line"),
    pytest.param("Assistant A is better. [[A]]\nWait, re-reading: [[C]]", None,
                 id="mt-bench-conflict"),
    pytest.param("Assistant A is better. [[A]]\nWinner: A", "A", id="mt-bench-agreeing"),
])
def test_pairwise_verdicts(answer, winner):
    verdict = parse_pairwise(answer)
    assert (verdict.status, verdict.winner) == ("ok" if winner else "invalid", winner)


def test_pairwise_nonsense_winner_is_invalid():
    assert parse_pairwise('{"winner": "<A, B or tie>"}').status == "invalid"


# -- probability-weighted scores --------------------------------------------------------

def lp(p: float) -> float:
    return math.log(p)


def tokens_for(answer: str, score_alternatives: list[tuple[str, float]],
               score_text: str, following: list[tuple[str, float]] | None = None):
    """Per-token alternatives for ``answer``: one token per character except at the score."""
    at = answer.index(score_text)
    toks = [[(c, 0.0)] for c in answer[:at]]
    toks.append(score_alternatives)
    rest = answer[at + len(score_alternatives[0][0]):]
    if following is not None:
        toks.append(following)
        rest = rest[len(following[0][0]):]
    toks += [[(c, 0.0)] for c in rest]
    return toks


def weighted(answer, toks, scale=(1, 5)):
    (verdict,) = parse_verdict(answer, ONE, scale).values()
    return weighted_score(answer, toks, verdict.span, scale)


def test_weighted_score_is_the_expected_value_over_score_tokens():
    answer = '{"rationale": "fine", "score": 4}'
    toks = tokens_for(answer, [("4", lp(0.6)), ("5", lp(0.3)), ("3", lp(0.1))], "4}")
    assert weighted(answer, toks) == pytest.approx(4 * 0.6 + 5 * 0.3 + 3 * 0.1)


def test_weighted_score_renormalises_over_valid_scores_only():
    answer = '{"score": 2}'
    toks = tokens_for(answer, [("2", lp(0.5)), ("3", lp(0.25)), ("x", lp(0.2)), ("9", lp(0.05))],
                      "2}")
    assert weighted(answer, toks) == pytest.approx((2 * 0.5 + 3 * 0.25) / 0.75)


def test_weighted_score_with_merged_digit_tokens_counts_10_on_a_1_to_10_scale():
    """DeepEval's bug: with single-digit parsing, "10" could never be represented."""
    answer = '{"score": 10}'
    toks = tokens_for(answer, [("10", lp(0.7)), ("9", lp(0.2)), ("1", lp(0.1))], "10}")
    assert weighted(answer, toks, (1, 10)) == pytest.approx(10 * 0.7 + 9 * 0.2 + 1 * 0.1)


def test_weighted_score_with_split_digits_uses_the_next_token_to_tell_1_from_10():
    answer = '{"score": 10}'
    toks = tokens_for(answer, [("1", lp(0.8)), ("9", lp(0.2))], "10}",
                      following=[("0", lp(0.75)), ("}", lp(0.25))])
    expected = 0.8 * (0.75 * 10 + 0.25 * 1) + 0.2 * 9
    assert weighted(answer, toks, (1, 10)) == pytest.approx(expected)


def test_weighted_score_is_none_when_a_split_1_cannot_be_resolved():
    answer = '{"score": 8}'  # a "1" alternative could mean 1 or 10: not knowable here
    toks = tokens_for(answer, [("8", lp(0.6)), ("1", lp(0.4))], "8}")
    assert weighted(answer, toks, (1, 10)) is None


def test_weighted_score_is_none_without_logprobs_never_the_plain_score():
    answer = '{"score": 4}'
    assert weighted(answer, None) is None
    assert weighted(answer, []) is None


def test_weighted_score_is_none_when_tokens_do_not_match_the_text():
    answer = '{"score": 4}'
    assert weighted(answer, [[("something else", 0.0)]]) is None


def test_weighted_score_handles_a_leading_space_token_and_a_score_line():
    answer = "Kind and specific.\nScore: 4"
    at = answer.index(" 4")
    toks = [[(c, 0.0)] for c in answer[:at]] + [[(" 4", lp(0.5)), (" 5", lp(0.5))]]
    assert weighted(answer, toks) == pytest.approx(4.5)
