"""Reading rows: judgments, human ratings and automatic metrics, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from csc_harness.analysis import load_automatic_metrics, load_human_ratings, load_judgments
from csc_harness.analysis.synthetic import absolute_row, pairwise_row
from csc_harness.errors import DataError, UserError


def write_rows(folder: Path, rows: list, name: str = "judgments.jsonl") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_load_keeps_analysis_fields_and_replaces_text_by_its_length(tmp_path):
    write_rows(tmp_path, [absolute_row(reply="您好，请问"), absolute_row(item_id="d1:3")])
    rows = load_judgments([tmp_path]).absolute
    assert len(rows) == 2
    assert "rationale" not in rows and "raw" not in rows and "reply" not in rows
    assert rows["reply_chars"].tolist() == [5.0, 2.0]
    assert rows["score"].tolist() == [4.0, 4.0]


def test_pairwise_rows_are_loaded_apart(tmp_path):
    write_rows(tmp_path, [absolute_row(), pairwise_row(), pairwise_row(order="ba")])
    judgments = load_judgments([tmp_path])
    assert len(judgments.absolute) == 1
    assert judgments.pairwise["order"].tolist() == ["ab", "ba"]


def test_optional_fields_take_their_defaults(tmp_path):
    row = absolute_row()
    for name in ("sample", "variant", "embedded", "prompt_id", "weighted_score", "reply",
                 "cost_usd", "mode", "stage", "kind"):
        row.pop(name)
    write_rows(tmp_path, [row])
    rows = load_judgments([tmp_path]).absolute
    assert rows.loc[0, "variant"] == "default"
    assert rows.loc[0, "sample"] == 0
    assert not rows.loc[0, "embedded"]


def test_a_later_row_with_the_same_identity_replaces_the_earlier(tmp_path):
    write_rows(tmp_path, [absolute_row(score=2.0), absolute_row(score=5.0),
                          absolute_row(sample=1, score=3.0)])
    rows = load_judgments([tmp_path]).absolute
    assert sorted(rows["score"].tolist()) == [3.0, 5.0]


def test_run_json_is_read_when_present(tmp_path):
    write_rows(tmp_path, [absolute_row()])
    (tmp_path / "run.json").write_text(json.dumps({"versions": {"csc-harness": "0.1.0"}}))
    assert load_judgments([tmp_path]).runs[str(tmp_path / "run.json")]["versions"]


@pytest.mark.parametrize(("line", "field", "message"), [
    pytest.param("{not json", None, "invalid JSON", id="bad-json"),
    pytest.param("[1, 2]", None, "expected a JSON object", id="not-object"),
    pytest.param(absolute_row(item_id=None), "item_id", "must not be null", id="null-required"),
    pytest.param({k: v for k, v in absolute_row().items() if k != "judge"}, "judge",
                 "missing required field", id="missing-required"),
    pytest.param(absolute_row(score="4"), "score", "expected a number", id="score-string"),
    pytest.param(absolute_row(sample=1.5), "sample", "expected an integer", id="float-int"),
    pytest.param(absolute_row(embedded="yes"), "embedded", "true or false", id="bad-bool"),
    pytest.param(absolute_row(status="maybe"), "status", "not one of", id="bad-status"),
    pytest.param(absolute_row(stage="Closing"), "stage", "not one of", id="bad-stage"),
    pytest.param(absolute_row(status="invalid"), "score", "exactly when status", id="score-on-invalid"),
    pytest.param(absolute_row(score=None), "score", "exactly when status", id="ok-without-score"),
    pytest.param(absolute_row(score=7.0), "score", "outside the scale 1-5", id="off-scale"),
    pytest.param(absolute_row(scale_min=5, scale_max=1, score=None, status="error"),
                 "scale_min", "not below", id="inverted-scale"),
    pytest.param(absolute_row(kind="ranking"), "kind", "not one of", id="bad-kind"),
    pytest.param(absolute_row(reply=3), "reply", "expected a string", id="reply-number"),
    pytest.param(pairwise_row(order="ca"), "order", "not one of", id="pairwise-order"),
    pytest.param(pairwise_row(winner=None), "winner", "exactly when status", id="ok-no-winner"),
])
def test_a_malformed_line_is_a_data_error_naming_file_line_and_field(tmp_path, line, field,
                                                                        message):
    path = write_rows(tmp_path, [absolute_row(item_id="d0:1"), line])
    with pytest.raises(DataError, match=message) as info:
        load_judgments([tmp_path])
    err = info.value
    assert (err.path, err.line, err.field) == (str(path), 2, field)
    assert "\n" not in str(err) and f"{path}, line 2" in str(err)


def test_the_first_bad_line_is_reported(tmp_path):
    rows = [absolute_row(item_id=f"d1:{i}") for i in range(5)]
    rows[3]["score"], rows[1]["status"] = 9.0, "nope"
    write_rows(tmp_path, rows)
    with pytest.raises(DataError) as info:
        load_judgments([tmp_path])
    assert info.value.line == 2


@pytest.mark.parametrize(("make", "message"), [
    pytest.param(lambda p: p, "no judgments.jsonl", id="empty-folder"),
    pytest.param(lambda p: p / "missing", "does not exist", id="missing-path"),
    pytest.param(lambda p: write_rows(p, ["", "  "]), "no judgment rows", id="blank-file"),
])
def test_paths_without_judgments_are_user_errors(tmp_path, make, message):
    with pytest.raises(UserError, match=message):
        load_judgments([make(tmp_path)])


def test_judgments_are_found_in_nested_folders(tmp_path):
    write_rows(tmp_path / "judge-a", [absolute_row(judge="a")])
    write_rows(tmp_path / "judge-b", [absolute_row(judge="b")])
    assert sorted(load_judgments([tmp_path]).absolute["judge"]) == ["a", "b"]


# --------------------------------------------------------------------------- human ratings


def test_human_ratings_from_csv_skip_blank_scores(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("item_id,model,dimension,rater,score\n"
                    "d1:1,m,empathy,r1,4\nd1:1,m,empathy,r2,\nd1:1,m,empathy,r3,3.5\n")
    ratings = load_human_ratings(path)
    assert ratings["score"].tolist() == [4.0, 3.5]
    assert ratings["rater"].tolist() == ["r1", "r3"]


def test_human_ratings_from_jsonl_accept_numeric_rater_ids(tmp_path):
    path = write_rows(tmp_path, [{"item_id": "d1:1", "model": "m", "dimension": "empathy",
                                  "rater": 7, "score": 5}], name="h.jsonl")
    assert load_human_ratings(path)["rater"].tolist() == ["7"]


@pytest.mark.parametrize(("text", "line", "field", "message"), [
    pytest.param("item_id,model,rater,score\n", 1, "dimension", "missing column",
                 id="missing-column"),
    pytest.param("item_id,model,dimension,rater,score\nd1:1,m,e,r1,good\n", 2, "score",
                 "expected a number", id="not-a-number"),
    pytest.param("item_id,model,dimension,rater,score\nd1:1,m,e,r1,4\nd1:1,m,e,r1,5\n", 3,
                 "rater", "already rated", id="duplicate"),
    pytest.param("item_id,model,dimension,rater,score\n,m,e,r1,4\n", 2, "item_id",
                 "missing value", id="blank-id"),
])
def test_bad_human_ratings_are_data_errors(tmp_path, text, line, field, message):
    path = tmp_path / "h.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as info:
        load_human_ratings(path)
    assert (info.value.line, info.value.field) == (line, field)


# --------------------------------------------------------------------------- lm-eval


def lm_eval_results(folder: Path, model: str, date: str, bleu2: float, **extra) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"results_{date}.json"
    task = {"alias": "csconv_reply", "bleu2,none": bleu2, "bleu2_stderr,none": "N/A",
            "bleu4,none": 3.0, "rougeL,none": 5.0, "strategy_acc,none": 40.0,
            "strategy_f1,none": 30.0}
    path.write_text(json.dumps({"results": {"csconv_reply": task}, **extra,
                                "config": {"model_args": f"model={model},base_url=x"}}))
    return path


def test_lm_eval_results_take_the_newest_file_per_model(tmp_path):
    lm_eval_results(tmp_path / "out" / "org__m", "org/m", "2026-01-01T10-00-00.1", 7.0)
    newest = lm_eval_results(tmp_path / "out" / "org__m", "org/m", "2026-02-01T10-00-00.1", 8.0)
    records = load_automatic_metrics([tmp_path / "out"])
    assert records == [{"model": "org/m", "setting": "reference", "source": str(newest),
                        "metrics": {"bleu2": 8.0, "bleu4": 3.0, "rougeL": 5.0,
                                    "strategy_acc": 40.0, "strategy_f1": 30.0},
                        "tokenization": None, "embedded": False}]


def test_lm_eval_model_name_field_wins_over_model_args(tmp_path):
    lm_eval_results(tmp_path, "from-args", "2026-01-01", 1.0, model_name="from-name")
    assert load_automatic_metrics([tmp_path])[0]["model"] == "from-name"


def test_generated_context_metrics_json_is_read_with_its_tokenization(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps(
        {"model": "m", "setting": "generated", "metrics": {"bleu2": 5.0, "bertscore": 61.0},
         "tokenization": {"bleu": "zh"}, "embedded": True}))
    [record] = load_automatic_metrics([tmp_path])
    assert (record["setting"], record["metrics"]["bertscore"]) == ("generated", 61.0)
    assert record["tokenization"] == {"bleu": "zh"} and record["embedded"] is True


def test_lm_eval_task_metadata_gives_the_tokenization(tmp_path):
    lm_eval_results(tmp_path, "m", "2026-01-01", 1.0, configs={"csconv_reply": {
        "metadata": {"bleu": "sacrebleu zh", "version": 1}}})
    assert load_automatic_metrics([tmp_path])[0]["tokenization"] == {"bleu": "sacrebleu zh"}


@pytest.mark.parametrize(("content", "error", "message"), [
    pytest.param(None, UserError, "no lm-eval results", id="empty"),
    pytest.param("{", DataError, "invalid JSON", id="bad-json"),
    pytest.param({"model": "m", "setting": "both", "metrics": {}}, DataError, "not one of",
                 id="bad-setting"),
    pytest.param({"model": "m", "setting": "generated", "metrics": {"bleu2": "x"}},
                 DataError, "expected a number", id="bad-value"),
])
def test_bad_metric_folders_are_reported(tmp_path, content, error, message):
    if content is not None:
        text = content if isinstance(content, str) else json.dumps(content)
        (tmp_path / "metrics.json").write_text(text)
    with pytest.raises(error, match=message):
        load_automatic_metrics([tmp_path])


def test_a_nan_score_is_rejected_whichever_json_parser_reads_it(tmp_path):
    path = tmp_path / "judgments.jsonl"
    path.write_text(json.dumps(absolute_row()).replace('"score": 4.0', '"score": NaN') + "\n")
    with pytest.raises(DataError) as info:
        load_judgments([tmp_path])
    assert info.value.line == 1 and info.value.field in ("score", None)


def test_invalid_utf8_is_a_data_error_with_its_line(tmp_path):
    path = tmp_path / "judgments.jsonl"
    path.write_bytes(json.dumps(absolute_row()).encode() + b"\n" + b'{"item_id": "\xff"}\n')
    with pytest.raises(DataError) as info:
        load_judgments([tmp_path])
    assert info.value.line == 2


def test_the_stdlib_parser_gives_the_same_rows(tmp_path, monkeypatch):
    from csc_harness import jsonl as jsonl_module

    write_rows(tmp_path, [absolute_row(item_id=f"d1:{i}", score=float(1 + i % 5))
                          for i in range(30)])
    fast = load_judgments([tmp_path]).absolute
    monkeypatch.setattr(jsonl_module, "json_loads", lambda: json.loads)
    slow = load_judgments([tmp_path]).absolute
    assert fast.equals(slow)
