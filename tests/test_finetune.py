"""Fine-tuning pieces on real parts: presets, grounded examples, assistant-only labels, batches, bad data, QLoRA.

The end-to-end path (finetune -> export -> llama.cpp, resume) is in test_finetune_export.py.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import click
import pytest

from kit.components.chat_template import TEMPLATES, render, render_with_spans, split_for_training
from kit.errors import KitError, ValidationFailed

ROOT = Path(__file__).resolve().parent.parent
CONVO = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Price?"},
    {"role": "assistant", "content": "$5 [1]."},
]


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_spans_cover_each_answer_and_its_stop_and_the_text_is_the_runtime_rendering(name: str) -> None:
    text, spans = render_with_spans(CONVO, name)
    assert text == render(CONVO, name, add_generation_prompt=False)
    _, completion = split_for_training(CONVO, name)
    assert [text[s:e] for s, e in spans] == [split_for_training(CONVO[:3], name)[1], completion]
    # what precedes the last answer is exactly the prompt the runtime sends for that turn
    assert text[: spans[-1][0]] == render(CONVO[:-1], name)


def test_every_shipped_preset_loads_and_opens_with_the_command_that_uses_it() -> None:
    from kit.services.training.preset import load_preset, preset_names

    assert set(preset_names()) >= {"cpu-270m", "gpu-8b", "gpu-14b", "tiny"}
    for name in preset_names():
        preset = load_preset(name)
        first = (ROOT / "kit" / "presets" / f"{name}.yaml").read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# kit finetune ") and f"--preset {name}" in first
        assert preset.lora.targets
    assert load_preset("gpu-8b").quantize == "nf4"
    assert load_preset("cpu-270m").base == "embedded:gemma-3-270m"


def test_preset_overrides_apply_and_bad_ones_are_one_clear_error() -> None:
    from kit.services.training.preset import load_preset

    p = load_preset("tiny", {"lora.rank": 16, "lr": 0.01, "max_steps": 7, "lora.targets": ["q_proj"]})
    assert (p.lora.rank, p.lr, p.max_steps, p.lora.targets) == (16, 0.01, 7, ["q_proj"])
    with pytest.raises(KitError, match=r"preset 'tiny' is invalid: lr"):
        load_preset("tiny", {"lr": 5.0})
    with pytest.raises(KitError, match=r"unknown preset 'huge'.*cpu-270m"):
        load_preset("huge")


def test_length_grouped_batches_cover_everything_once_with_little_padding() -> None:
    from kit.components.trainer import length_grouped_batches

    lengths = [10 * (i % 17) + 5 for i in range(200)]
    batches = length_grouped_batches(lengths, 4, seed=1)
    assert sorted(i for b in batches for i in b) == list(range(200))
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded < 1.1 * sum(lengths)  # vs. ~2x when padding to the longest example
    assert batches == length_grouped_batches(lengths, 4, seed=1) != length_grouped_batches(lengths, 4, seed=2)


def test_the_loss_counts_only_assistant_tokens() -> None:
    import torch

    from kit.components.trainer import IGNORE, assistant_loss

    class Model(torch.nn.Module):
        def forward(self, input_ids, attention_mask, logits_to_keep):
            logits = torch.zeros(*input_ids.shape, 11)
            logits[..., 3] = 5.0  # always predicts token 3
            return type("Out", (), {"logits": logits[:, logits_to_keep]})()

    ids = torch.tensor([[1, 2, 3, 4, 3, 0]])
    labels = torch.tensor([[IGNORE, IGNORE, 3, 4, IGNORE, IGNORE]])
    loss, n = assistant_loss(Model(), {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})
    assert n == 2
    good = torch.nn.functional.cross_entropy(torch.tensor([[0.0] * 3 + [5.0] + [0.0] * 7]), torch.tensor([3]))
    bad = torch.nn.functional.cross_entropy(torch.tensor([[0.0] * 3 + [5.0] + [0.0] * 7]), torch.tensor([4]))
    assert float(loss) == pytest.approx(float(good + bad), rel=1e-5)


# ----------------------------------------------------------------------------------------------------
# Grounded examples and bad data, on the real tokenizer and a real index (no model is loaded).


@pytest.fixture(scope="module")
def tokenizer():
    from kit.components.trainer import embedded_tokenizer_dir, load_tokenizer

    return load_tokenizer(embedded_tokenizer_dir())


@pytest.fixture
def domain_copy(example_dir: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "example"
    shutil.copytree(example_dir, dest)
    return dest


def test_examples_hold_the_runtime_prompt_with_retrieved_documents_and_label_only_answers(
    domain_copy: Path, tokenizer
) -> None:
    from kit.components.trainer import IGNORE
    from kit.domain import load_domain
    from kit.services.assistant.prompt import system_prompt
    from kit.services.retrieval.retrieve import Retriever
    from kit.services.training.data import build_examples

    domain = load_domain(domain_copy)
    examples = build_examples(domain, Retriever.open(domain), tokenizer, "gemma", 2048, 2)
    assert [e.where for e in examples] == ["data/train.jsonl:1", "data/train.jsonl:2"]
    multi = examples[1]
    roles = [m["role"] for m in multi.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    assert multi.messages[0]["content"] == system_prompt(domain)
    assert "<documents>" in multi.messages[1]["content"] and multi.messages[1]["content"].endswith(
        "Question: Can I return something?"
    )
    assert "<documents>" in multi.messages[3]["content"]
    learned = tokenizer.decode([t for t in multi.labels if t != IGNORE])
    # an answer learns to cite the document of its recorded source (docs/policies.md) that holds its facts; the
    # follow-up's documents (returns, and a FAQ entry) do not hold "$50" or "3–5", so its answer cites nothing
    assert learned == (
        "Yes: unused items can be returned within 30 days of delivery for a full refund [1].<end_of_turn>"
        "Orders over $50 ship free; standard delivery takes 3–5 business days.<end_of_turn>"
    )
    assert multi.messages[1]["content"].split("<documents>\n", 1)[1].startswith("[1] (docs/policies.md")
    assert "$50" not in multi.messages[3]["content"]


def test_training_and_runtime_send_byte_identical_prompts_through_the_api_and_the_ui(
    domain_copy: Path, tokenizer, engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The two-turn training conversation, grounded for training, against what the runtime sends the model for the
    same conversation: from an API client that keeps only the text of earlier turns, and from the UI, which keeps
    the turns as they were sent."""
    from kit.components.chat_template import get_template
    from kit.domain import load_domain
    from kit.server.openai_format import Message, split_conversation
    from kit.services.assistant.chat import ChatService
    from kit.services.retrieval.retrieve import Retriever
    from kit.services.training.data import build_examples

    domain = load_domain(domain_copy)
    k = domain.spec.retrieval.k  # as fine-tuning grounds (grounded_examples)
    trained = build_examples(domain, Retriever.open(domain), tokenizer, "gemma", 2048, k)[1].messages[:-1]
    first, answer, follow_up = trained[1], trained[2]["content"], "and shipping?"
    service = ChatService.open(domain, engine=engine)
    sent: list[list[dict[str, str]]] = []

    def record(messages: Any, max_tokens: int | None = None, stop: Any = ()) -> Any:
        sent.append([dict(m) for m in messages])
        return iter(["Noted."])

    monkeypatch.setattr(engine, "stream", record)
    api = [Message(role="user", content="Can I return something?"), Message(role="assistant", content=answer),
           Message(role="user", content=follow_up)]  # fmt: skip
    service.ask(*split_conversation(api)).finish()
    ui_first = service.ask("Can I return something?", [])
    ui_first.finish()
    assert ui_first.sent == first  # the UI's first turn is the training conversation's first prompt
    service.ask(follow_up, [ui_first.sent, {"role": "assistant", "content": answer}]).finish()
    gemma = get_template("gemma")
    assert sent[0] == sent[2] == trained
    assert gemma.render(sent[0]).encode() == gemma.render(sent[2]).encode() == gemma.render(trained).encode()


def test_a_conversation_longer_than_max_length_is_reported_with_its_line(domain_copy: Path, tokenizer) -> None:
    from kit.domain import load_domain
    from kit.services.retrieval.retrieve import Retriever
    from kit.services.training.data import build_examples

    long = {"messages": [{"role": "user", "content": "tent? " * 400}, {"role": "assistant", "content": "Yes."}]}
    with (domain_copy / "data" / "train.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(long) + "\n")
    domain = load_domain(domain_copy)
    with pytest.raises(ValidationFailed) as err:
        build_examples(domain, Retriever.open(domain), tokenizer, "gemma", 512, 2)
    [problem] = err.value.problems
    assert (problem.file, problem.line) == ("data/train.jsonl", 3)
    assert "more than max_length=512" in problem.what and "--max-length" in problem.hint


def test_an_empty_training_set_is_a_clear_error_before_any_model_loads(domain_copy: Path, run_kit) -> None:
    (domain_copy / "data" / "train.jsonl").write_text("\n", encoding="utf-8")
    result = run_kit("finetune", str(domain_copy), "--preset", "tiny", "--max-steps", "1")
    assert result.code == 1
    assert "data/train.jsonl: holds no records" in result.err
    assert not (domain_copy / "build" / "runs").exists()


def test_finetune_refuses_to_overwrite_a_run_and_resume_needs_one(domain_copy: Path, run_kit, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_kit("finetune", str(domain_copy), "--preset", "tiny", "--out", str(out), "--resume")
    assert result.code == 1 and "holds no run to resume" in result.err
    out.mkdir()
    (out / "run.json").write_text("{}", encoding="utf-8")
    result = run_kit("finetune", str(domain_copy), "--preset", "tiny", "--out", str(out))
    assert result.code == 1 and "already holds a run" in result.err and "--resume" in result.err


def test_the_gpu_presets_ask_for_a_base_model(domain_copy: Path, run_kit) -> None:
    result = run_kit("finetune", str(domain_copy), "--preset", "gpu-8b")
    assert result.code == 1
    assert "preset 'gpu-8b' needs a base model" in result.err and "--base" in result.err


def test_every_preset_field_is_a_flag_whose_value_overrides_the_preset(
    domain_copy: Path, run_kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kit.commands.finetune import NOT_FLAGS, command
    from kit.services.training import recipe
    from kit.services.training.preset import Lora, Preset, load_preset

    helps = {o.name: o.help for o in command.params if isinstance(o, click.Option)}
    fields = {**{n: f for n, f in Preset.model_fields.items() if n not in NOT_FLAGS | {"lora"}}, **Lora.model_fields}
    assert all(helps[name] == field.description for name, field in fields.items())
    passed: dict[str, Any] = {}

    def fake(domain_dir: str, preset: str, overrides: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        passed.update(overrides)
        raise KitError("stopped before training")

    monkeypatch.setattr(recipe, "finetune", fake)
    flags = ["--rank", "16", "--targets", "q_proj, k_proj", "--lr", "0.01", "--no-gradient-checkpointing", "-k", "3",
             "--chat-template", "chatml", "--weight-decay", "0.1"]  # fmt: skip
    result = run_kit("finetune", str(domain_copy), "--preset", "tiny", *flags)
    assert result.code == 1 and "stopped before training" in result.err
    p = load_preset("tiny", passed)
    assert (p.lora.rank, p.lora.targets, p.lr, p.gradient_checkpointing, p.k, p.chat_template, p.weight_decay) == (
        16, ["q_proj", "k_proj"], 0.01, False, 3, "chatml", 0.1
    )  # fmt: skip
    assert p.model_dump(exclude={"lora", "lr", "gradient_checkpointing", "k", "chat_template", "weight_decay"}) == (
        load_preset("tiny").model_dump(exclude={"lora", "lr", "gradient_checkpointing", "k", "chat_template",
                                                "weight_decay"})
    )  # fmt: skip
    bad = run_kit("finetune", str(domain_copy), "--lr", "5")
    assert bad.code == 2 and "'--lr'" in bad.err and "0<x<1" in bad.err


# ----------------------------------------------------------------------------------------------------
# Several processes (`accelerate launch`): only the main one sets up, writes, logs and shows progress.


def test_one_process_alone_is_the_main_one_and_launchers_are_counted() -> None:
    from kit.services.training.processes import Processes, current, launched

    assert current({}) == Processes() and Processes().main and not Processes(rank=1, count=2).main
    assert launched({"WORLD_SIZE": "4", "RANK": "3"}) == 4 and launched({"OMPI_COMM_WORLD_SIZE": "2"}) == 2
    assert launched({"WORLD_SIZE": "1"}) == launched({}) == 1


def test_a_process_whose_main_one_died_during_setup_says_so_in_one_line(domain_copy: Path, tmp_path: Path) -> None:
    from kit.domain import load_domain
    from kit.services.training import recipe
    from kit.services.training.processes import Processes

    def barrier_of_a_dead_peer() -> None:
        raise RuntimeError("Connection closed by peer")

    with pytest.raises(KitError, match="process 1 of 2 lost the others while the run was set up") as err:
        recipe.setup(load_domain(domain_copy), "tiny", {}, tmp_path / "run", False, None,
                     Processes(1, 2, barrier_of_a_dead_peer))  # fmt: skip
    assert "first error printed above" in err.value.hint and not (tmp_path / "run").exists()


def test_kits_log_speaks_on_the_main_process_only(caplog: pytest.LogCaptureFixture) -> None:
    from kit.services.training.processes import Processes, main_logs_only

    log = logging.getLogger("kit.services.training.recipe")
    caplog.set_level(logging.INFO, logger="kit")
    with main_logs_only(Processes(rank=1, count=2)):
        log.info("rank 1 says")
        log.error("rank 1 fails")
    with main_logs_only(Processes(rank=0, count=2)):
        log.info("rank 0 says")
    assert [r.getMessage() for r in caplog.records] == ["rank 1 fails", "rank 0 says"]
    assert logging.getLogger("kit").level == logging.INFO  # restored


def test_only_the_main_process_writes_the_run_folder_logs_and_shows_progress(
    domain_copy: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two processes as `accelerate launch` starts them, played in one (no GPU needed): rank 0 sets the run up, rank
    1 waits for it, reads the same examples and trains its share of each step, writing, logging and showing
    nothing; rank 0 then trains and writes the run."""
    from kit.domain import load_domain
    from kit.services.training import recipe
    from kit.services.training.processes import Processes

    domain, out, waits = load_domain(domain_copy), tmp_path / "run", []
    main = Processes(0, 2, lambda: waits.append("main"))
    other = Processes(1, 2, lambda: waits.append("other"))
    first = recipe.setup(domain, "tiny", {"max_steps": 2}, out, False, None, main)
    written = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert out / "run.json" in written and out / "data" / "train.jsonl" in written
    again = recipe.setup(domain, "tiny", {"max_steps": 2}, out, False, None, other)
    assert (again.train, again.val, again.preset, again.template) == (first.train, first.val, first.preset, "gemma")
    caplog.set_level(logging.DEBUG, logger="kit")
    capsys.readouterr()
    recipe.finetune(domain_copy, "tiny", {"max_steps": 2}, out, progress=True, procs=other)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == written
    assert not [r for r in caplog.records if r.name.startswith("kit")]
    assert "finetune example" not in capsys.readouterr().err
    assert waits == ["main", "other", "other"]
    recipe.fit(first, domain, progress=False)
    info = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert info["finished"] and info["step"] == 2 and (out / "adapter" / "adapter_model.safetensors").is_file()
    assert [json.loads(x)["step"] for x in (out / "loss.jsonl").read_text().splitlines()][:2] == [1, 2]
    assert any("finished at step 2" in r.getMessage() for r in caplog.records)


@pytest.mark.slow  # two processes each load torch and the model: about a minute on 2 cores
def test_two_launched_processes_train_one_run_that_the_main_one_writes(domain_copy: Path, tmp_path: Path) -> None:
    """torchrun's two CPU processes (gloo): what `accelerate launch` does on several GPUs."""
    import subprocess
    import sys

    out = tmp_path / "run"
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "kit",
           "finetune", str(domain_copy), "--preset", "tiny", "--max-steps", "3", "--out", str(out), "-q"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained 3 steps") == 1  # the main process reports, once
    log = [json.loads(x) for x in (out / "loss.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [e["step"] for e in log if e["split"] == "train"] == [1, 2, 3]  # each step written once
    info = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert info["finished"] and info["step"] == 3 and (out / "adapter" / "adapter_model.safetensors").is_file()


# ----------------------------------------------------------------------------------------------------
# QLoRA: the gpu presets' 4-bit path, on a tiny Llama on the CPU (bitsandbytes runs there too).


def test_qlora_trains_lora_on_a_4bit_llama(tmp_path: Path, tokenizer) -> None:
    import torch

    from kit.components.trainer import TinySpec, add_lora, assistant_loss, build_tiny, collate, load_model
    from kit.services.training.data import tokenise

    spec = TinySpec("llama", layers=2, hidden_size=64, intermediate_size=128, heads=2, kv_heads=1, head_dim=32)
    base = build_tiny(spec, tokenizer, tmp_path / "base", seed=0)
    model = load_model(base, "float32", "nf4", "cpu")
    assert type(model.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    model = add_lora(model, 4, 8, 0.0, ["q_proj", "v_proj"], quantized=True, checkpointing=True)
    example = tokenise(
        [{"role": "user", "content": "Price of the mug?"}, {"role": "assistant", "content": "$14.50 [1]."}],
        tokenizer,
        "llama3",
        "test:1",
    )
    batch = collate([example.__dict__], tokenizer.pad_token_id)
    lora = [p for n, p in model.named_parameters() if p.requires_grad]
    assert lora and all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    before = [p.detach().clone() for p in lora]
    optimizer = torch.optim.AdamW(lora, lr=1e-2)
    losses = []
    for _ in range(3):
        loss, n = assistant_loss(model, batch)
        (loss / n).backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()) / n)
    assert any(not torch.equal(a, b) for a, b in zip(before, lora, strict=True))
    assert losses[-1] < losses[0]


@pytest.mark.slow
@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA GPU")
def test_qlora_on_gpu_runs_the_gpu_preset_recipe(tmp_path: Path, tokenizer) -> None:
    """The gpu-8b code path (NF4 base on the GPU, bf16 compute, checkpointing) on a scaled-down Llama."""
    from kit.components.trainer import TinySpec, add_lora, assistant_loss, build_tiny, collate, load_model
    from kit.services.training.data import tokenise
    from kit.services.training.preset import load_preset

    p = load_preset("gpu-8b")
    spec = TinySpec("llama", layers=2, hidden_size=256, intermediate_size=512, heads=4, kv_heads=2, head_dim=64)
    model = load_model(build_tiny(spec, tokenizer, tmp_path / "base", 0), p.dtype, p.quantize, {"": 0})
    model = add_lora(model, p.lora.rank, p.lora.alpha, 0.0, p.lora.targets, True, p.gradient_checkpointing)
    example = tokenise(
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello [1]."}], tokenizer, "llama3", "t"
    )
    batch = {k: v.cuda() for k, v in collate([example.__dict__], tokenizer.pad_token_id).items()}
    loss, n = assistant_loss(model, batch)
    (loss / n).backward()
    assert n > 0 and float(loss) > 0
