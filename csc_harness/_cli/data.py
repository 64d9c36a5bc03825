from __future__ import annotations

import argparse
import json
import sys

from .common import add_stage_map_option, apply_stage_map


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("data", help="inspect and validate CSConv data")
    data_sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    check = data_sub.add_parser(
        "check",
        help="validate a CSConv file and print its statistics",
        description="Validate CSConv data (default: $CSCONV_DATA or the bundled sample) and "
        "print the file actually read and its statistics. A set called CSConv that does not "
        "hold the released 1,855 dialogues, 50,587 utterances and 25,810 supporter turns "
        "gets a warning. Exit 0 when valid (warnings included), 2 when not.",
    )
    check.add_argument("path", nargs="?",
                       help="file path, or hf:<dataset id or folder>[#<set>]: the CSConv.json "
                       "file of the dataset, or #RoleCS for the training set")
    check.add_argument("--json", action="store_true",
                       help="print one JSON object (statistics, source, warnings)")
    add_stage_map_option(check)
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    from ..data import count_warnings, data_spec, load_source, load_stage_map, statistics

    apply_stage_map(args)
    spec = data_spec(args.path)
    loaded = load_source(spec)
    stats = statistics(loaded.conversations, load_stage_map())
    warnings = count_warnings(loaded.set_name, stats)
    for warning in warnings:
        print(f"csc-harness data check: warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps({**stats, "source": loaded.source, "warnings": warnings},
                         ensure_ascii=False))
        return 0
    print(f"{spec}: valid")
    print(f"  source: {loaded.source}")
    for key in ("dialogues", "utterances", "supporter_turns"):
        print(f"  {key.replace('_', ' ')}: {stats[key]}")
    for key in ("strategies", "stages", "topics", "languages"):
        parts = ", ".join(f"{k} {v}" for k, v in stats[key].items())
        print(f"  {key}: {parts}")
    return 0
