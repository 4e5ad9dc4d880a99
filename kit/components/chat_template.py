"""Chat templates, defined once: the runtime renders prompts with them and fine-tuning trains on them.

The embedded Gemma 3 270M is a base model with no template in its GGUF (llama-cpp-python would fall
back to llama-2 turns and loop), so the format is explicit here. The tokenizer adds BOS itself, so no
template writes it. Gemma has no system role: the system prompt opens the first user turn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypedDict

TemplateName = Literal["gemma", "chatml", "llama3"]


class ChatMessage(TypedDict):
    """One message as OpenAI's API and kit's conversation files write it."""

    role: str
    content: str


@dataclass(frozen=True)
class ChatTemplate:
    """How one model family writes a conversation."""

    name: str
    turn: Callable[[str, str], str]  # (role, content) -> one rendered turn
    generation_prefix: str  # what opens the assistant's turn the model completes
    stop: tuple[str, ...]  # strings that end the assistant's turn
    system_role: bool  # False: the system prompt is folded into the first user turn

    def render(self, messages: Sequence[ChatMessage], add_generation_prompt: bool = True) -> str:
        """The prompt for ``messages``; with ``add_generation_prompt``, ready for the model to answer."""
        text = "".join(self.turn(m["role"], m["content"]) for m in self.fold_system(messages))
        return text + self.generation_prefix if add_generation_prompt else text

    def fold_system(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        """Messages as this template sees them: a system prompt moves into the first user turn if needed."""
        msgs = [ChatMessage(role=m["role"], content=m["content"]) for m in messages]
        if self.system_role or not msgs or msgs[0]["role"] != "system":
            return msgs
        system, rest = msgs[0]["content"], msgs[1:]
        if rest and rest[0]["role"] == "user":
            return [ChatMessage(role="user", content=f"{system}\n\n{rest[0]['content']}"), *rest[1:]]
        return [ChatMessage(role="user", content=system), *rest]


def _gemma_turn(role: str, content: str) -> str:
    return f"<start_of_turn>{'model' if role == 'assistant' else 'user'}\n{content}<end_of_turn>\n"


def _chatml_turn(role: str, content: str) -> str:
    return f"<|im_start|>{role}\n{content}<|im_end|>\n"


def _llama3_turn(role: str, content: str) -> str:
    return f"<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>"


TEMPLATES: dict[str, ChatTemplate] = {
    "gemma": ChatTemplate(
        "gemma", _gemma_turn, "<start_of_turn>model\n", ("<end_of_turn>", "<start_of_turn>"), system_role=False
    ),
    "chatml": ChatTemplate(
        "chatml", _chatml_turn, "<|im_start|>assistant\n", ("<|im_end|>", "<|im_start|>"), system_role=True
    ),
    "llama3": ChatTemplate(
        "llama3",
        _llama3_turn,
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        ("<|eot_id|>", "<|end_of_text|>", "<|start_header_id|>"),
        system_role=True,
    ),
}


def get_template(name: str) -> ChatTemplate:
    """The template named in ``ModelSettings.chat_template``."""
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ValueError(f"unknown chat template '{name}'; use one of {', '.join(TEMPLATES)}") from None


def render(messages: Sequence[ChatMessage], template: str = "gemma", add_generation_prompt: bool = True) -> str:
    """Render ``messages`` with the named template (the function fine-tuning imports)."""
    return get_template(template).render(messages, add_generation_prompt)


def split_for_training(messages: Sequence[ChatMessage], template: str = "gemma") -> tuple[str, str]:
    """(prompt, completion) for a conversation ending with the assistant: the loss goes on the completion."""
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError("a training conversation must end with an assistant message")
    tpl = get_template(template)
    prompt = tpl.render(messages[:-1], add_generation_prompt=True)
    return prompt, messages[-1]["content"] + tpl.stop[0]


def render_with_spans(messages: Sequence[ChatMessage], template: str = "gemma") -> tuple[str, list[tuple[int, int]]]:
    """A whole conversation rendered for training, with the character spans the loss goes on.

    Each span is one assistant message plus the stop string that ends it, i.e. exactly what
    ``split_for_training`` calls the completion; everything else (system, user turns, turn
    headers) is context. The text equals ``render(messages, add_generation_prompt=False)``.
    """
    tpl = get_template(template)
    text, spans = "", []
    for m in tpl.fold_system(messages):
        turn = tpl.turn(m["role"], m["content"])
        if m["role"] == "assistant":
            answer = m["content"] + tpl.stop[0]
            if not turn.startswith(tpl.generation_prefix + answer):
                raise ValueError(f"template '{tpl.name}' does not write an assistant turn as prefix + answer + stop")
            start = len(text) + len(tpl.generation_prefix)
            spans.append((start, start + len(answer)))
        text += turn
    return text, spans
