"""The CSC framework: five stages, twelve strategies, and the one label parser.

Every part of the project that reads a strategy label (data files, model replies,
judge answers) goes through :func:`parse_strategy`, so all of them accept the same
forms and reject unknown labels with the same message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from .errors import LabelError
from .profiles import EMBEDDED


class Stage(str, Enum):
    """The five COPC-grounded stages of a support conversation, in order."""

    CONNECTING = "Connecting"
    IDENTIFYING = "Identifying"
    EXPLORING = "Exploring"
    RESOLVING = "Resolving"
    MAINTAINING = "Maintaining"

    @property
    def number(self) -> int:
        return list(Stage).index(self) + 1

    @property
    def zh(self) -> str:
        return _STAGE_ZH[self]


_STAGE_ZH = {
    Stage.CONNECTING: "欢迎和建立联系阶段",
    Stage.IDENTIFYING: "理解和识别问题阶段",
    Stage.EXPLORING: "寻求解决方案阶段",
    Stage.RESOLVING: "解决和确认阶段",
    Stage.MAINTAINING: "结束和保持关系阶段",
}


@dataclass(frozen=True)
class Strategy:
    code: str
    number: int
    name: str
    zh: str
    default_stage: Stage | None
    definition: str
    definition_zh: str

    @property
    def label_zh(self) -> str:
        """The form used in CSConv files: ``策略N 名称``."""
        return f"策略{self.number} {self.zh}"


STRATEGIES: tuple[Strategy, ...] = (
    Strategy("GT", 1, "Greeting", "礼貌问候", Stage.CONNECTING,
             "Open the conversation warmly and professionally; used only at the start.",
             "以热情、专业的方式开启对话，只在开头使用。"),
    Strategy("IV", 2, "Identity Verification", "确认身份", Stage.CONNECTING,
             "Ask for the details needed to serve the customer safely, after the greeting.",
             "问候之后，请客户提供安全办理业务所需的身份信息。"),
    Strategy("RP", 3, "Restatement or Paraphrasing", "重述或转述", Stage.IDENTIFYING,
             "Say the customer's issue back in other words to confirm it; add nothing new.",
             "用自己的话复述客户的问题以确认理解，不增加新信息。"),
    Strategy("PR", 4, "Problem Refinement", "细化问题", Stage.EXPLORING,
             "Ask targeted questions to collect the details still missing.",
             "针对缺失的细节提出具体问题，把问题弄清楚。"),
    Strategy("EM", 5, "Emotional Management", "情感管理", Stage.IDENTIFYING,
             "Acknowledge and ease clearly negative feelings before moving on.",
             "察觉并回应客户明显的负面情绪，先安抚再推进。"),
    Strategy("PS", 6, "Providing Suggestions", "提供建议", Stage.EXPLORING,
             "Give concrete, actionable advice or steps the customer can take.",
             "给出具体、可操作的建议或步骤。"),
    Strategy("ID", 7, "Information Delivery", "信息传达", Stage.RESOLVING,
             "Explain the objective policy, process or facts behind a solution, without advising.",
             "说明解决方案背后的客观政策、流程或事实，不提建议。"),
    Strategy("RI", 8, "Resolution Implementation", "解决实施", Stage.RESOLVING,
             "Carry out the agreed fix and report how it is progressing.",
             "执行已商定的解决办法，并告知处理进度。"),
    Strategy("FR", 9, "Feedback Request", "反馈请求", Stage.MAINTAINING,
             "Once the issue is handled, ask whether the customer is satisfied.",
             "问题处理后，询问客户是否满意。"),
    Strategy("RC", 10, "Relationship Continuation", "关系延续", Stage.MAINTAINING,
             "Point to future services and how to get help next time.",
             "介绍后续服务以及今后获得帮助的方式。"),
    Strategy("AC", 11, "Appreciation and Closure", "感谢与告别", Stage.MAINTAINING,
             "Thank the customer and close politely; bring no new information.",
             "感谢客户并礼貌结束对话，不再提供新信息。"),
    Strategy("OT", 12, "Others", "其它", None,
             "Anything that none of the other strategies describes.",
             "不属于以上任何一种策略的回复。"),
)

BY_CODE: dict[str, Strategy] = {s.code: s for s in STRATEGIES}
CODES: tuple[str, ...] = tuple(BY_CODE)

EMBEDDED_LABEL = EMBEDDED.label
"""How every output made by the bundled demo model is labelled (see :mod:`.profiles`)."""

StageMap = Mapping[str, Stage]
"""Strategy code -> stage. OT has no stage of its own (see :func:`stage_for_turns`)."""


def default_stage_map() -> dict[str, Stage]:
    """The default mapping, from a secondary summary of the paper: override it freely."""
    return {s.code: s.default_stage for s in STRATEGIES if s.default_stage is not None}


def parse_stage_map(raw: Mapping[str, str]) -> dict[str, Stage]:
    """Build a stage map from ``{label: stage name}``; unlisted strategies keep their default."""
    mapping = default_stage_map()
    by_name = {s.value.lower(): s for s in Stage} | {s.zh: s for s in Stage}
    by_name |= {str(s.number): s for s in Stage}
    for label, stage in raw.items():
        code = parse_strategy(label).code
        key = str(stage).strip()
        if key.lower() not in by_name and key not in by_name:
            valid = ", ".join(s.value for s in Stage)
            raise LabelError(f"unknown stage {stage!r} for {label!r}; valid stages: {valid}")
        mapping[code] = by_name.get(key.lower()) or by_name[key]
    return mapping


def stage_for_turns(codes: list[str], stage_map: StageMap | None = None) -> list[Stage]:
    """Stages of a dialogue's supporter turns, in order.

    A strategy without a stage in the map (OT by default) takes the stage of the
    supporter turn before it, or Connecting at the start: "others" happens inside
    whatever stage the conversation is in.
    """
    mapping = default_stage_map() if stage_map is None else stage_map
    stages: list[Stage] = []
    current = Stage.CONNECTING
    for code in codes:
        current = mapping.get(code, current)
        stages.append(current)
    return stages


def _norm(text: str) -> str:
    return re.sub(r"[\s_\-]+", " ", text).strip().lower()


_ALIASES: dict[str, str] = {}
for _s in STRATEGIES:
    for _form in (_s.code, _s.name, _s.zh, _s.label_zh, f"strategy {_s.number}",
                  f"策略{_s.number}", f"{_s.number}"):
        _ALIASES[_norm(_form)] = _s.code
for _form, _code in {"restatement": "RP", "paraphrasing": "RP", "paraphrase": "RP",
                     "emotion management": "EM", "other": "OT", "others": "OT",
                     "其他": "OT", "closure": "AC", "appreciation": "AC",
                     "suggestion": "PS", "suggestions": "PS"}.items():
    _ALIASES[_norm(_form)] = _code

_BRACKETS = "[]【】()（）<>《》\"'`*"
_NUMBERED = re.compile(r"^(?:策略|strategy)\s*(\d+)\s*[:：.、]?\s*(.*)$", re.IGNORECASE)


def _lookup(label: str) -> str | None:
    text = _norm(label.strip().strip(_BRACKETS))
    if text in _ALIASES:
        return _ALIASES[text]
    match = _NUMBERED.match(text)
    if match:
        number, name = match.groups()
        by_number = _ALIASES.get(number)
        by_name = _ALIASES.get(_norm(name)) if name else by_number
        if by_number is not None and by_name == by_number:
            return by_number
    return None


def valid_labels() -> str:
    return ", ".join(f"{s.code} ({s.name}, {s.label_zh})" for s in STRATEGIES)


def parse_strategy(label: str) -> Strategy:
    """The strategy a label names, in any accepted form.

    Accepts the code (``GT``), the English name (``Greeting``), the Chinese name
    (``礼貌问候``), the CSConv form (``策略1 礼貌问候``), ``Strategy 1``, and any of
    these in brackets, in any case, with extra spaces. A number and a name that
    disagree (``策略2 礼貌问候``) are rejected rather than guessed.
    """
    code = _lookup(label) if isinstance(label, str) else None
    if code is None:
        raise LabelError(f"unknown strategy label {label!r}; valid labels: {valid_labels()}")
    return BY_CODE[code]


def try_parse_strategy(label: str) -> Strategy | None:
    """Like :func:`parse_strategy`, but None for an unknown label."""
    code = _lookup(label) if isinstance(label, str) else None
    return BY_CODE[code] if code else None


_LEADING_LABEL = re.compile(
    r"^\s*(?:[\[【(（<《]\s*(?P<bracketed>[^\]】)）>》\n]{1,40}?)\s*[\]】)）>》]"
    r"|(?:strategy|策略)\s*[:：]\s*(?P<named>[^\n]{1,40}?)\s*(?:\n|$)"
    r"|(?P<plain>[A-Za-z]{2})\s*[:：])\s*",
    re.IGNORECASE,
)
_REPLY_PREFIX = re.compile(r"^\s*(?:reply|response|回复|客服|supporter|agent)\s*[:：]\s*",
                           re.IGNORECASE)


def parse_reply(output: str | None) -> tuple[str | None, str]:
    """Split a model answer ``[<strategy>] <reply>`` into (strategy code, reply).

    Tolerant by design: any label form, Chinese or ASCII brackets, a
    ``Strategy: X`` first line, or no label at all (strategy None, which scores as
    wrong). A bracket that holds no valid label (``[姓名]您好``) is part of the reply.
    Never raises; the reply keeps its inner blank lines.
    """
    text = (output or "").strip()
    match = _LEADING_LABEL.match(text)
    if match:
        label = match.group("bracketed") or match.group("named") or match.group("plain")
        strategy = try_parse_strategy(label)
        if strategy is not None:
            rest = _REPLY_PREFIX.sub("", text[match.end():], count=1)
            return strategy.code, rest.strip()
    return None, _REPLY_PREFIX.sub("", text, count=1).strip()


def format_reply(code: str, reply: str) -> str:
    """The target answer format, ``[English name] reply``."""
    return f"[{BY_CODE[code].name}] {reply}"
