"""Candidates in: real lm-eval output folders and {item_id, model, reply} JSONL files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_judge_support import write_jsonl

from csc_harness.data import load_examples
from csc_harness.errors import DataError, UserError
from csc_harness.judge import load_candidates
from csc_harness.llm import StubServer

ROOT = Path(__file__).resolve().parents[1]
def lm_eval_run(out: Path, model: str, answer: str) -> None:
    """A real lm-eval run of csconv_reply against a stub, saved as the CLI saves it."""
    from lm_eval import simple_evaluate
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager

    tracker = EvaluationTracker(output_path=str(out))
    with StubServer(lambda body: f"[Problem Refinement] {answer} #{len(body['messages'])}") as stub:
        results = simple_evaluate(
            model="local-chat-completions",
            model_args=f"model={model},base_url={stub.base_url}/chat/completions,"
            "num_concurrent=1,max_retries=1",
            tasks=["csconv_reply"],
            task_manager=TaskManager(include_path=str(ROOT / "tasks"), include_defaults=False),
            apply_chat_template=True, bootstrap_iters=0, log_samples=True,
            evaluation_tracker=tracker,
        )
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples)
    for task in results["configs"]:
        tracker.save_results_samples(task_name=task, samples=samples[task])


def test_reads_several_models_from_a_real_lm_eval_output_folder(data_file, tmp_path):
    out = tmp_path / "lm-eval-out"
    lm_eval_run(out, "org/model-x", "请稍等")
    lm_eval_run(out, "model-y", "One moment")
    cands = load_candidates([out])
    assert sorted({c.model for c in cands}) == ["model-y", "org/model-x"]
    assert len(cands) == 8
    by_key = {(c.item.item_id, c.model): c for c in cands}
    cand = by_key[("z1:3", "org/model-x")]
    assert cand.predicted_strategy == "PR"
    assert cand.reply.startswith("请稍等 #")
    assert cand.item.strategy == "ID" and cand.item.stage == "Resolving"
    assert [u.text for u in cand.item.context] == [
        "你好，我想问一下理财产品。", "您好，很高兴为您服务！", "那个产品收益多少？"]
    assert cand.item == next(e for e in load_examples() if e.item_id == "z1:3")


def test_jsonl_candidates_join_with_the_dataset(data_file, tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [
        {"item_id": "e1:3", "model": "m", "reply": "[Problem Refinement] Which phone?"},
        {"item_id": "z1:1", "model": "m", "reply": "您好！", "strategy": "策略1 礼貌问候"},
        {"item_id": "e1:1", "model": "m", "reply": "[姓名] hello"},
    ])
    cands = {c.item.item_id: c for c in load_candidates([path])}
    assert (cands["e1:3"].predicted_strategy, cands["e1:3"].reply) == ("PR", "Which phone?")
    assert (cands["z1:1"].predicted_strategy, cands["z1:1"].reply) == ("GT", "您好！")
    assert (cands["e1:1"].predicted_strategy, cands["e1:1"].reply) == (None, "[姓名] hello")
    assert cands["e1:3"].item.context[-1].text == "It crashes at login."


def test_data_option_overrides_the_environment(data_file, tmp_path, monkeypatch):
    monkeypatch.delenv("CSCONV_DATA")
    path = write_jsonl(tmp_path / "c.jsonl", [{"item_id": "z1:3", "model": "m", "reply": "x"}])
    with pytest.raises(DataError, match="not in bundled:sample"):
        load_candidates([path])
    assert len(load_candidates([path], data=str(data_file))) == 1


@pytest.mark.parametrize("lines, message, line, field", [
    pytest.param(['{"item_id": "z1:1", "model": "m", "reply": "ok"}', "{not json"],
                 "invalid JSON", 2, None, id="bad-json"),
    pytest.param(['["a list"]'], "expected a JSON object", 1, None, id="not-object"),
    pytest.param(['{"model": "m", "reply": "ok"}'], "missing", 1, "item_id", id="no-item-id"),
    pytest.param(['{"item_id": "z1:1", "reply": "ok"}'], "missing", 1, "model", id="no-model"),
    pytest.param(['{"item_id": "z1:1", "model": "m", "reply": 3}'], "expected a non-empty",
                 1, "reply", id="reply-not-text"),
    pytest.param(['{"item_id": "z1:1", "model": "m", "reply": "x", "strategy": "Juggling"}'],
                 "unknown strategy label", 1, "strategy", id="bad-strategy"),
])
def test_bad_jsonl_names_file_line_and_field(data_file, tmp_path, lines, message, line, field):
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=message) as err:
        load_candidates([path])
    assert (err.value.path, err.value.line, err.value.field) == (str(path), line, field)
    assert "\n" not in str(err.value)


def test_unknown_item_ids_are_an_error_that_names_them(data_file, tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [
        {"item_id": "z1:1", "model": "m", "reply": "ok"},
        {"item_id": "nope:1", "model": "m", "reply": "ok"},
        {"item_id": "nope:2", "model": "m", "reply": "ok"},
    ])
    with pytest.raises(DataError, match=r"2 item id\(s\) not in .*'nope:1', 'nope:2'"):
        load_candidates([path])


def test_duplicate_item_and_model_is_an_error_across_files(data_file, tmp_path):
    first = write_jsonl(tmp_path / "a.jsonl", [{"item_id": "z1:1", "model": "m", "reply": "a"}])
    second = write_jsonl(tmp_path / "b.jsonl", [{"item_id": "e1:1", "model": "m", "reply": "b"},
                                                {"item_id": "z1:1", "model": "m", "reply": "c"}])
    with pytest.raises(DataError, match=r"duplicate candidate for item 'z1:1' and model 'm'") as err:
        load_candidates([first, second])
    assert (err.value.path, err.value.line) == (str(second), 2)
    assert f"{first}:1" in str(err.value)


def test_same_item_from_different_models_is_fine(data_file, tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"item_id": "z1:1", "model": m, "reply": "x"}
                                              for m in ("a", "b")])
    assert len(load_candidates([path])) == 2


def lm_eval_folder(tmp_path: Path, doc_edit=None, row_edit=None, samples=True) -> Path:
    """A hand-made lm-eval folder in the real layout (for malformed-input cases)."""
    folder = tmp_path / "out" / "m"
    folder.mkdir(parents=True)
    (folder / "results_2026-01-01T00-00-00.json").write_text(json.dumps(
        {"results": {"csconv_reply": {}}, "config": {"model_args": "model=m,base_url=x"}}))
    if samples:
        doc = load_examples()[1].to_doc()
        doc.update(doc_edit or {})
        row = {"doc_id": 0, "doc": doc, "filtered_resps": ["[Greeting] hi"]}
        row.update(row_edit or {})
        write_jsonl(folder / "samples_csconv_reply_2026-01-01T00-00-00.jsonl", [row])
    return tmp_path / "out"


def test_model_name_falls_back_to_model_args(data_file, tmp_path):
    (cand,) = load_candidates([lm_eval_folder(tmp_path)])
    assert cand.model == "m" and cand.predicted_strategy == "GT"


@pytest.mark.parametrize("kwargs, message, field", [
    pytest.param({"samples": False}, "run lm-eval with --log_samples", None, id="no-samples"),
    pytest.param({"doc_edit": {"turn_index": "3"}}, "differs from", "doc.turn_index",
                 id="bad-doc-field"),
    pytest.param({"doc_edit": {"strategy": "XX"}}, "differs from", "doc.strategy",
                 id="bad-gold-strategy"),
    pytest.param({"row_edit": {"filtered_resps": [None]}}, "answer as a string",
                 "filtered_resps", id="no-answer"),
])
def test_bad_lm_eval_folders_name_the_file_and_field(data_file, tmp_path, kwargs, message, field):
    with pytest.raises(DataError, match=message) as err:
        load_candidates([lm_eval_folder(tmp_path, **kwargs)])
    assert err.value.field == field and err.value.path.endswith((".json", ".jsonl"))


def test_a_folder_without_lm_eval_results_and_a_missing_path_are_user_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no lm-eval results"):
        load_candidates([tmp_path / "empty"])
    with pytest.raises(UserError, match="does not exist"):
        load_candidates([tmp_path / "missing.jsonl"])


def test_a_rerun_in_the_same_lm_eval_folder_uses_the_newest_samples(data_file, tmp_path):
    from csc_harness.judge.candidates import read_lm_eval_folder

    folder = tmp_path / "out" / "m"
    folder.mkdir(parents=True)
    for date, reply in (("2026-01-01T00-00-00", "[Greeting] old"),
                        ("2026-02-01T00-00-00", "[Greeting] new")):
        (folder / f"results_{date}.json").write_text(json.dumps(
            {"model_name": "m", "results": {"csconv_reply": {}}}))
        doc = next(ex.to_doc() for ex in load_examples() if ex.item_id == "z1:1")
        (folder / f"samples_csconv_reply_{date}.jsonl").write_text(json.dumps(
            {"doc": doc, "filtered_resps": [reply]}, ensure_ascii=False) + "\n")
    examples = {ex.item_id: ex for ex in load_examples()}
    (cand,) = read_lm_eval_folder(tmp_path / "out", examples)
    assert cand.reply == "new"


def test_generate_rows_keep_their_predicted_strategy(data_file, tmp_path):
    path = tmp_path / "candidates.jsonl"
    path.write_text(json.dumps({"item_id": "z1:1", "model": "m", "reply": "您好！",
                                "raw": "[Greeting] 您好！", "predicted_strategy": "GT",
                                "setting": "generated"}, ensure_ascii=False) + "\n")
    (cand,) = load_candidates([path])
    assert (cand.predicted_strategy, cand.reply) == ("GT", "您好！")


def generated_row(item_id: str, reply: str, strategy: str | None = "PS", model: str = "m",
                  setting: str = "generated") -> dict:
    return {"item_id": item_id, "model": model, "reply": reply, "raw": f"[x] {reply}",
            "predicted_strategy": strategy, "setting": setting}


def test_generated_setting_replies_are_judged_in_the_context_the_model_saw(data_file, tmp_path):
    path = write_jsonl(tmp_path / "candidates.jsonl", [
        generated_row("z1:3", "第二句。", "ID"),
        generated_row("z1:1", "第一句。", "GT"),
        generated_row("z1:1", "Other model's turn.", model="other", setting="reference"),
        generated_row("z1:3", "Reference setting.", model="other", setting="reference"),
    ])
    by_key = {(c.item.item_id, c.model): c for c in load_candidates([path])}
    seen = by_key[("z1:3", "m")].item
    assert [(u.speaker, u.text, u.strategy) for u in seen.context] == [
        ("customer", "你好，我想问一下理财产品。", None), ("supporter", "第一句。", "GT"),
        ("customer", "那个产品收益多少？", None)]
    assert seen.reply == "该产品近一年年化收益为3.2%。"  # the gold reply stays the reference
    gold = by_key[("z1:3", "other")].item
    assert gold.context[1].text == "您好，很高兴为您服务！"


def test_a_generated_reply_without_its_earlier_turns_names_the_missing_one(data_file, tmp_path):
    path = write_jsonl(tmp_path / "candidates.jsonl", [generated_row("z1:3", "第二句。")])
    with pytest.raises(DataError) as failure:
        load_candidates([path])
    assert "'z1:1'" in str(failure.value) and "candidates.jsonl" in str(failure.value)
    assert failure.value.line == 1 and failure.value.field == "item_id"
