"""Chat templates: one definition renders runtime prompts and training examples alike."""

from __future__ import annotations

import pytest

from kit.components.chat_template import TEMPLATES, get_template, render, split_for_training

CONVO = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Price?"},
]


def test_gemma_folds_the_system_prompt_into_the_first_user_turn() -> None:
    assert render(CONVO, "gemma") == (
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nPrice?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_chatml_and_llama3_keep_a_system_role() -> None:
    assert render(CONVO, "chatml").startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi")
    assert render(CONVO, "chatml").endswith("<|im_start|>assistant\n")
    llama3 = render(CONVO, "llama3")
    assert llama3.startswith("<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>")
    assert llama3.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_a_follow_up_prompt_starts_with_the_previous_prompt_and_answer(name: str) -> None:
    # This is what lets llama.cpp reuse the KV cache of the previous turn.
    first = render(CONVO[:2], name)
    follow = render([*CONVO[:2], {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "x"}], name)
    assert follow.startswith(first + "Hello!")


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_training_split_is_the_runtime_prompt_plus_the_answer_and_stop(name: str) -> None:
    prompt, completion = split_for_training(CONVO[:3], name)
    assert prompt == render(CONVO[:2], name)
    assert completion == "Hello!" + get_template(name).stop[0]


def test_unknown_template_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown chat template 'alpaca'"):
        get_template("alpaca")
