"""Automatic metrics at CSConv scale: 1,855 dialogues, 25,810 Chinese supporter turns.

Goal on a 2-core machine: under 30 s and under 1 GB. Prints one JSON object last.
``--smoke`` scores 300 turns, to keep this script working (the test suite runs it).
Usage: python benchmarks/bench_metrics.py [--turns N] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import time

from csc_harness import metrics
from csc_harness.framework import CODES

PHRASES = (
    "您好", "请问", "您的", "银行卡", "账户", "这笔交易", "我们", "已经", "为您", "查询到",
    "处理", "申请", "退款", "预计", "个工作日内", "到账", "手机银行", "验证码", "如果",
    "还有", "其他问题", "随时", "联系", "我们的", "客服热线", "理财产品", "年化收益",
    "风险等级", "非常理解", "您的心情", "给您带来不便", "深表歉意", "请您", "提供",
    "[手机号码]", "[身份证号]", "[金额]", "元", "，", "。", "？", "感谢", "耐心等待",
)


def synthetic_items(turns: int, seed: int = 0) -> list[metrics.Scored]:
    """Gold replies of 25-90 characters and candidates that reuse about half of them."""
    rng = random.Random(seed)
    items = []
    for _ in range(turns):
        gold = "".join(rng.choice(PHRASES) for _ in range(rng.randint(8, 30)))
        words = [w if rng.random() < 0.5 else rng.choice(PHRASES)
                 for w in rng.sample(PHRASES, k=rng.randint(6, 25))]
        code = rng.choice(CODES)
        items.append(metrics.Scored(code, code if rng.random() < 0.4 else rng.choice(CODES),
                                    gold, "".join(words), "zh"))
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=25_810)
    parser.add_argument("--smoke", action="store_true",
                        help="300 turns: checks the script runs, measures nothing")
    args = parser.parse_args()
    items = synthetic_items(300 if args.smoke else args.turns)
    start = time.perf_counter()
    scores = metrics.score(items)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"smoke": args.smoke, "turns": len(items), "seconds": round(seconds, 2),
                      "peak_rss_mb": round(peak_mb, 1),
                      "scores": {k: round(v, 2) for k, v in scores.items()}}))


if __name__ == "__main__":
    main()
