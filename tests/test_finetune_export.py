"""The `tiny` preset end to end: finetune 3 steps -> export adapter and merged (F16, Q8_0) -> llama.cpp runs each.

Also: resume after a killed run continues at the saved step; the chat-template round trip catches a
mismatched template; a quantisation known to break the model and an incomplete run folder are refused.
The converters come from the llama-cpp-python sdist, fetched once per machine (skipped when offline).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kit.errors import KitError, ModelError

EXTRA = [
    ("What does the camp mug cost?", "The Enamel Camp Mug (EX-MUG-001) costs $14.50 [1]."),
    ("How long do I have to return an item?", "Unused items can be returned within 30 days of delivery [1]."),
    ("Is shipping free?", "Orders over $50 ship free [1]."),
    ("When will my order arrive?", "Standard delivery takes 3–5 business days [1]."),
]


@pytest.fixture(scope="session")
def converters() -> Path:
    from kit.components.converters import converters_dir

    try:
        return converters_dir()
    except KitError as exc:  # no network on this machine and no KIT_LLAMA_CPP_SDIST
        pytest.skip(f"llama.cpp converters unavailable: {exc}")


@pytest.fixture(scope="module")
def trained(example_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 3-step tiny run on a copy of the indexed example domain (with a few more conversations)."""
    from kit.services.training.recipe import finetune

    domain = tmp_path_factory.mktemp("ft") / "example"
    shutil.copytree(example_dir, domain)
    with (domain / "data" / "train.jsonl").open("a", encoding="utf-8") as f:
        for q, a in EXTRA:
            f.write(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}))
            f.write("\n")
    run = finetune(domain, "tiny", {"max_steps": 3, "save_every": 2}, domain / "runs" / "tiny", progress=False)
    return run.dir


@pytest.fixture(scope="module")
def merged_f16(trained: Path, converters: Path):
    """The run merged and converted to F16 once (the Q8_0 export quantises this file)."""
    from kit.services.training.export import export

    return export(trained, "merged", "F16")


def copy_run(run: Path, dest: Path) -> Path:
    """A copy of the run and its domain, so a test may break either."""
    info = json.loads((run / "run.json").read_text(encoding="utf-8"))
    domain = dest / "domain"
    shutil.copytree(info["domain_dir"], domain, ignore=shutil.ignore_patterns("runs"))
    shutil.copytree(run, dest / "run", ignore=shutil.ignore_patterns("export"))
    info.update(domain_dir=str(domain), base_dir=str(dest / "run" / "base"))
    (dest / "run" / "run.json").write_text(json.dumps(info), encoding="utf-8")
    return dest / "run"


def test_the_run_folder_describes_itself(trained: Path) -> None:
    info = json.loads((trained / "run.json").read_text(encoding="utf-8"))
    assert info["finished"] and info["step"] == 3 and info["preset"] == "tiny" and info["chat_template"] == "gemma"
    assert info["train_examples"] + info["val_examples"] == 6 and info["val_examples"] >= 1
    assert info["hparams"]["lora"]["rank"] == 4 and info["tokens_per_s"] > 0
    assert info["peak_rss_mb"] > 100 and info["peak_gpu_mb"] is None  # GPU memory only where CUDA ran
    for rel in ("spec.yaml", "chat_template.json", "tokenizer/tokenizer.json", "adapter/adapter_config.json",
                "data/train.jsonl", "data/val.jsonl", "loss.svg", "sample.json"):  # fmt: skip
        assert (trained / rel).is_file(), rel
    log = [json.loads(x) for x in (trained / "loss.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [e["step"] for e in log if e["split"] == "train"] == [1, 2, 3]
    assert [e["step"] for e in log if e["split"] == "val"] == [2, 3]
    assert sorted(p.name for p in (trained / "checkpoints").iterdir()) == ["step-000002", "step-000003"]
    sample = json.loads((trained / "sample.json").read_text(encoding="utf-8"))
    assert sample["prompt"].endswith("<start_of_turn>model\n") and "<documents>" in sample["prompt"]


def test_adapter_export_loads_in_llama_cpp_and_apply_makes_the_runtime_use_it(
    trained: Path, converters: Path, tmp_path: Path
) -> None:
    from kit.components.llm import build_engine
    from kit.domain import load_domain
    from kit.services.training.export import export

    run = copy_run(trained, tmp_path)
    result = export(run, "adapter", apply=True)
    assert result.path.name == "adapter-f16.gguf" and result.path.read_bytes()[:4] == b"GGUF"
    assert result.sample  # llama.cpp generated with the adapter applied
    domain = load_domain(tmp_path / "domain")
    [adapter] = domain.spec.model.adapters
    assert adapter.path == "adapters/tiny.gguf" and (tmp_path / "domain" / "adapters" / "tiny.gguf").is_file()
    assert domain.spec.model.gguf == str((run / "export" / "base-f16.gguf").resolve())
    engine = build_engine(domain.spec.model, domain.root)  # what `kit serve` does
    assert "".join(engine.stream([{"role": "user", "content": "Hi"}], max_tokens=3)) is not None


@pytest.mark.parametrize("quant", ["F16", "Q8_0"])
def test_merged_export_loads_in_llama_cpp_and_generates(trained: Path, merged_f16, quant: str) -> None:
    from kit.services.training.export import export

    result = merged_f16 if quant == "F16" else export(trained, "merged", quant)
    assert result.path.name == f"merged-{quant.lower()}.gguf" and result.sample
    assert result.lines.splitlines()[1] == f"  gguf: {result.path.resolve()}"
    assert not [p for p in (trained / "export").iterdir() if p.name.startswith(".export-")]


def test_the_round_trip_check_catches_a_mismatched_template(trained: Path, converters: Path, tmp_path: Path) -> None:
    from kit.services.training.export import export

    run = copy_run(trained, tmp_path)
    spec = tmp_path / "domain" / "domain.yaml"
    spec.write_text(spec.read_text(encoding="utf-8").replace("chat_template: gemma", "chat_template: chatml"))
    with pytest.raises(ModelError, match="chat-template round trip failed") as err:
        export(run, "adapter")  # refused before any conversion: nothing is written
    assert "set model.chat_template: gemma" in err.value.hint
    assert not list((run / "export").glob("*.gguf")) and not list((run / "export").glob(".export-*"))


def test_the_token_level_round_trip_catches_a_mismatch_in_llama_cpp(trained: Path, merged_f16) -> None:
    from kit.services.training.export import verify
    from kit.services.training.run_folder import Run

    run = Run(trained, json.loads((trained / "run.json").read_text(encoding="utf-8")))
    with pytest.raises(ModelError, match=r"round trip failed.*differ from token"):
        verify(run, merged_f16.path, None, "chatml")


def test_requantising_a_dequantised_4bit_base_to_4_bits_is_refused(trained: Path, tmp_path: Path) -> None:
    from kit.services.training.export import export

    run = copy_run(trained, tmp_path)
    (run / "base" / "kit-base.json").write_text(json.dumps({"dequantized_from": "Q4_K_M"}), encoding="utf-8")
    with pytest.raises(ModelError, match="would break it") as err:
        export(run, "merged", "Q4_K_M")
    assert "Q8_0" in err.value.hint and not (run / "export").exists()


def test_an_incomplete_run_folder_names_every_missing_file(trained: Path, tmp_path: Path, run_kit) -> None:
    run = copy_run(trained, tmp_path)
    (run / "sample.json").unlink()
    shutil.rmtree(run / "adapter")
    result = run_kit("export", str(run))
    assert result.code == 1
    assert "sample.json, adapter/adapter_config.json, adapter/adapter_model.safetensors missing" in result.err


def test_resume_after_a_kill_continues_at_the_saved_step(
    trained: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import torch
    from safetensors.torch import load_file

    from kit.services.training.recipe import finetune

    run = copy_run(trained, tmp_path)
    # As if killed during step 3: the last checkpoint is step 2, step 3's log line and the adapter never landed.
    shutil.rmtree(run / "checkpoints" / "step-000003")
    shutil.rmtree(run / "adapter")
    info = json.loads((run / "run.json").read_text(encoding="utf-8"))
    (run / "run.json").write_text(json.dumps({**info, "finished": False, "step": 2}), encoding="utf-8")
    caplog.set_level("INFO", logger="kit")
    finetune(tmp_path / "domain", out=run, resume=True, progress=False)
    assert f"resuming {run} from step 2" in caplog.text
    info = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert info["finished"] and info["step"] == 3
    log = [json.loads(x) for x in (run / "loss.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [e["step"] for e in log if e["split"] == "train"] == [1, 2, 3]
    resumed = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    straight = load_file(str(trained / "adapter" / "adapter_model.safetensors"))
    assert resumed.keys() == straight.keys()
    assert all(torch.allclose(resumed[k], straight[k], atol=1e-6) for k in straight)


def test_cli_finetune_and_export_help_show_examples(run_kit) -> None:
    assert "kit finetune domains/retail --out runs/retail --resume" in run_kit("finetune", "--help").out
    assert "--format merged --quant Q4_K_M" in run_kit("export", "--help").out


def test_apply_rewrites_only_the_model_keys_and_keeps_comments() -> None:
    from kit.services.training.export import set_model_keys

    text = (Path(__file__).resolve().parent.parent / "domains" / "retail" / "domain.yaml").read_text(encoding="utf-8")
    new = set_model_keys(text, {"adapters": ["adapters:", "  - path: adapters/x.gguf", "    scale: 1.0"]})
    again = set_model_keys(new, {"adapters": ["adapters:", "  - path: adapters/y.gguf", "    scale: 1.0"]})
    assert again.count("adapters:") == 1 and "adapters/y.gguf" in again and "adapters/x.gguf" not in again
    assert [x for x in text.splitlines() if "adapters" not in x and "scale: 1.0" not in x] == [
        x for x in again.splitlines() if "adapters" not in x and "scale: 1.0" not in x
    ]
