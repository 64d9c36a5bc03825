from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("data", help="inspect and validate CSConv data")
    data_sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    check = data_sub.add_parser(
        "check",
        help="validate a CSConv file and print its statistics",
        description="Validate a CSConv JSON/JSONL file (default: $CSCONV_DATA or the bundled "
        "sample) and print its statistics. Exit 0 when valid, 2 when not.",
    )
    check.add_argument("path", nargs="?", help="file path or hf:<dataset id>")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.add_argument("--stage-map", metavar="FILE",
                       help='JSON {"<strategy>": "<stage>"} overriding the default stages '
                       "(default: $CSC_STAGE_MAP)")
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    from ..data import data_spec, load_conversations, load_stage_map, statistics

    spec = data_spec(args.path)
    stats = statistics(load_conversations(spec), load_stage_map(args.stage_map))
    if args.json:
        print(json.dumps(stats, ensure_ascii=False))
        return 0
    print(f"{spec}: valid")
    for key in ("dialogues", "utterances", "supporter_turns"):
        print(f"  {key.replace('_', ' ')}: {stats[key]}")
    for key in ("strategies", "stages", "topics", "languages"):
        parts = ", ".join(f"{k} {v}" for k, v in stats[key].items())
        print(f"  {key}: {parts}")
    return 0
