"""Dialogue-bootstrap intervals for the automatic metrics (BLEU-2/4, ROUGE-L, strategy
accuracy), read from lm-eval samples files and from `csc-harness generate` folders."""

from __future__ import annotations

import json

import numpy as np
import pytest

from csc_harness import metrics
from csc_harness.analysis import leaderboard, load_automatic_metrics, load_judgments
from csc_harness.analysis.automatic import MetricItems, metric_intervals
from csc_harness.analysis.stats import count_blocks, percentile_interval
from csc_harness.analysis.synthetic import synthetic_rows, write_jsonl
from csc_harness.data import load_examples
from csc_harness.errors import DataError
from csc_harness.report import leaderboard_csv, leaderboard_markdown

DATE = "2026-01-01T10-00-00.1"
REPLIES = ["您好，请问有什么可以帮您", "好的，我帮您查一下账户", "请提供您的手机号码",
           "感谢来电，祝您生活愉快", "这个问题需要技术人员处理", "您好"]


def items(n_dialogues: int = 6, per: int = 3) -> list[dict]:
    """(conversation, reference, reply, language, rougeL, acc) with varied overlap."""
    out = []
    for d in range(n_dialogues):
        for t in range(per):
            ref = REPLIES[(d + t) % len(REPLIES)]
            reply = REPLIES[(d * 2 + t) % len(REPLIES)] + ("，谢谢" if t % 2 else "")
            out.append({"cid": f"c{d}", "ref": ref, "reply": reply, "lang": "zh",
                        "rougeL": 100 * metrics.rouge_l(ref, reply, "zh"),
                        "acc": 100.0 if (d + t) % 3 == 0 else 0.0})
    return out


def write_lm_eval(folder, rows, *, bleu2=None) -> None:
    """A results file and its samples file, as lm-eval writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    corpus = metrics.corpus_bleu([r["ref"] for r in rows], [r["reply"] for r in rows],
                                 [r["lang"] for r in rows])
    task = {"alias": "csconv_reply", "bleu2,none": corpus["bleu2"] if bleu2 is None else bleu2,
            "bleu4,none": corpus["bleu4"],
            "rougeL,none": float(np.mean([r["rougeL"] for r in rows])),
            "strategy_acc,none": float(np.mean([r["acc"] for r in rows]))}
    (folder / f"results_{DATE}.json").write_text(json.dumps(
        {"results": {"csconv_reply": task}, "model_name": "org/m"}))
    with open(folder / f"samples_csconv_reply_{DATE}.jsonl", "w", encoding="utf-8") as f:
        for i, r in enumerate(rows):
            triple = [r["ref"], r["reply"], r["lang"]]
            f.write(json.dumps({"doc_id": i, "doc": {"conversation_id": r["cid"]},
                                "bleu2": triple, "bleu4": triple, "rougeL": r["rougeL"],
                                "strategy_acc": r["acc"]}, ensure_ascii=False) + "\n")


def test_bleu_interval_recomputes_corpus_bleu_on_each_dialogue_resample(tmp_path):
    rows = items()
    write_lm_eval(tmp_path, rows)
    [rec] = load_automatic_metrics([tmp_path])
    assert isinstance(rec["per_item"], MetricItems)
    got = metric_intervals(rec["per_item"], rec["metrics"], rounds=40, seed=3, confidence=0.9)
    # Independently: redraw the same dialogues, expand the items, run sacrebleu's corpus BLEU.
    ids = sorted({r["cid"] for r in rows})
    reps = {"bleu2": [], "bleu4": [], "rougeL": []}
    for block in count_blocks(len(ids), 40, np.random.default_rng([3, 2])):
        for counts in block.astype(int):
            pick = [r for c, k in zip(ids, counts) for r in rows if r["cid"] == c for _ in range(k)]
            bleu = metrics.corpus_bleu([r["ref"] for r in pick], [r["reply"] for r in pick],
                                       [r["lang"] for r in pick])
            reps["bleu2"].append(bleu["bleu2"])
            reps["bleu4"].append(bleu["bleu4"])
            reps["rougeL"].append(np.mean([r["rougeL"] for r in pick]))
    for name, values in reps.items():
        low, high = percentile_interval(np.array(values), 0.9)
        assert got[name]["ci_low"] == pytest.approx(low[0])
        assert got[name]["ci_high"] == pytest.approx(high[0])
        assert got[name]["ci_low"] <= got[name]["value"] <= got[name]["ci_high"]
        assert (got[name]["n_items"], got[name]["n_dialogues"]) == (18, 6)


def test_corpus_bleu_from_summed_counts_is_not_the_mean_of_item_bleu():
    rows = items()
    refs, hyps = [r["ref"] for r in rows], [r["reply"] for r in rows]
    stats = metrics.bleu_statistics(refs, hyps, ["zh"] * len(rows))
    summed = metrics.bleu_from_statistics(np.sum(stats, axis=0))
    assert summed == pytest.approx(metrics.corpus_bleu(refs, hyps, ["zh"] * len(rows)))
    mean_of_items = np.mean([metrics.bleu_from_statistics(s)["bleu2"] for s in stats])
    assert abs(mean_of_items - summed["bleu2"]) > 0.5


def test_samples_of_another_run_give_no_interval_and_say_why(tmp_path):
    write_lm_eval(tmp_path, items(), bleu2=55.0)
    [rec] = load_automatic_metrics([tmp_path])
    got = metric_intervals(rec["per_item"], rec["metrics"], rounds=20, seed=0, confidence=0.95)
    assert got["bleu2"]["ci_low"] is None and "not the same run" in got["bleu2"]["ci_reason"]
    assert got["rougeL"]["ci_low"] is not None


def test_one_dialogue_gives_no_interval(tmp_path):
    write_lm_eval(tmp_path, items(n_dialogues=1))
    [rec] = load_automatic_metrics([tmp_path])
    got = metric_intervals(rec["per_item"], rec["metrics"], rounds=20, seed=0, confidence=0.95)
    assert got["bleu4"]["ci_low"] is None and "one dialogue" in got["bleu4"]["ci_reason"]


def test_a_malformed_samples_line_is_a_data_error_with_its_line(tmp_path):
    write_lm_eval(tmp_path, items())
    path = tmp_path / f"samples_csconv_reply_{DATE}.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[2] = json.dumps({"doc": {"conversation_id": "c0"}, "bleu2": "oops"})
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="bleu2") as info:
        load_automatic_metrics([tmp_path])
    assert info.value.line == 3


def test_generate_folder_is_joined_with_the_data_for_intervals(tmp_path):
    examples = load_examples(None)[:40]
    rows = []
    for i, ex in enumerate(examples):
        reply = ex.reply if i % 3 else "您好"
        rows.append({"item_id": ex.item_id, "model": "m", "reply": reply, "raw": reply,
                     "predicted_strategy": ex.strategy if i % 2 else None,
                     "setting": "generated"})
    (tmp_path / "candidates.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    scored = metrics.score([metrics.Scored(ex.strategy, r["predicted_strategy"], ex.reply,
                                           r["reply"], ex.language)
                            for ex, r in zip(examples, rows)])
    (tmp_path / "metrics.json").write_text(json.dumps(
        {"model": "m", "setting": "generated", "metrics": scored}))
    [rec] = load_automatic_metrics([tmp_path])
    got = metric_intervals(rec["per_item"], rec["metrics"], rounds=50, seed=0, confidence=0.95)
    dialogues = len({ex.conversation_id for ex in examples})
    for name in ("bleu2", "bleu4", "rougeL", "strategy_acc"):
        assert "ci_reason" not in got[name], got[name]
        assert got[name]["ci_low"] <= got[name]["value"] <= got[name]["ci_high"]
        assert got[name]["n_dialogues"] == dialogues


def test_leaderboard_json_csv_and_markdown_carry_metric_intervals(tmp_path):
    rows = items()
    write_lm_eval(tmp_path / "lm", rows)
    write_jsonl(synthetic_rows(("org/m",), dialogues=4, turns=2, seed=1),
                tmp_path / "j" / "judgments.jsonl")
    board = leaderboard(load_judgments([tmp_path / "j"]),
                        load_automatic_metrics([tmp_path / "lm"]), rounds=30)
    [model] = board["models"]
    iv = model["metric_intervals"]["reference"]["bleu2"]
    assert iv["ci_low"] < iv["value"] < iv["ci_high"] and iv["n_dialogues"] == 6
    assert model["metrics"]["reference"]["bleu2"] == iv["value"]
    json.dumps(board, allow_nan=False)
    csv_text = leaderboard_csv(board)
    assert "reference:bleu2:ci_low" in csv_text and "reference:rougeL:n_dialogues" in csv_text
    md = leaderboard_markdown(board)
    assert f"{iv['value']:.2f} [{iv['ci_low']:.2f}, {iv['ci_high']:.2f}]" in md
