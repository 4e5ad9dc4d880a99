"""Fine-tuning the embedded Qwen instruct models from their GGUF: the dequantisation, the base names, and (slow) a
short cpu-qwen-0.5b run -> `kit export --format adapter` -> `kit ask` with the adapter in llama.cpp.

The values test holds the ``gguf`` package's dequantisation (what transformers uses to read a GGUF, and what kit
compares the dequantised model with before publishing it, ``kit.components.trainer.dequantised_problems``) to
llama.cpp's own C routines, on real Q4_K and Q6_K rows of the default model's file (a base dependency).
"""

from __future__ import annotations

import ctypes
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from runtime_fixtures import tune_domain

from kit.model_registry import MODELS

QWEN_05 = "qwen2.5-coder-0.5b-instruct"
QWEN_15 = "qwen2.5-coder-1.5b-instruct"


def llama_cpp_rows(raw: np.ndarray, kind: str, row_length: int) -> np.ndarray:
    """Rows of a quantised GGUF tensor (``raw``: their bytes), dequantised by ggml's own ``dequantize_row_<kind>``."""
    import llama_cpp

    lib = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
    fn = getattr(lib, f"dequantize_row_{kind[0].lower()}{kind[1:]}")  # Q4_K -> dequantize_row_q4_K
    fn.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int64]
    raw = np.ascontiguousarray(raw)
    out = np.zeros(len(raw) * row_length, dtype=np.float32)
    fn(raw.ctypes.data, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), out.size)
    return out.reshape(len(raw), row_length)


def test_the_dequantisation_of_real_qwen2_rows_matches_llama_cpps_own() -> None:
    from gguf import GGMLQuantizationType

    from kit.components.models import gguf_header, named_gguf
    from kit.components.trainer import SPOT_CHECKS, gguf_raw_rows, gguf_rows

    path = named_gguf(QWEN_15)
    tensors = gguf_header(path).tensors
    checked = set()
    for name in ("blk.0.attn_q.weight", "blk.0.ffn_down.weight", "output.weight", "blk.27.ffn_up.weight"):
        t = tensors[name]
        kind = GGMLQuantizationType(t.kind).name
        ours = gguf_rows(path, t, 3)
        theirs = llama_cpp_rows(gguf_raw_rows(path, t, 3), kind, t.shape[0])
        assert ours.shape == (3, t.shape[0]) and np.isfinite(ours).all() and np.abs(ours).max() > 0
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6, err_msg=name)
        checked.add(kind)
    assert checked == {"Q4_K", "Q6_K"}
    # the tensors kit compares with the dequantised model are in a qwen2 GGUF, a bias among them
    assert all(g in tensors for g, _ in SPOT_CHECKS)
    assert gguf_rows(path, tensors["blk.0.attn_k.bias"], 4).shape == (1, 256)


def test_embedded_bases_name_a_trainable_model_and_others_are_one_clear_error() -> None:
    from kit.services.training.preset import load_preset
    from kit.services.training.recipe import embedded_base

    assert {n for n, m in MODELS.items() if m.trainable} == {"gemma-3-270m", QWEN_05, QWEN_15}
    for preset, name in (("cpu-qwen-0.5b", QWEN_05), ("cpu-qwen-1.5b", QWEN_15), ("gpu-qwen-1.5b", QWEN_15)):
        p = load_preset(preset)
        assert p.base == f"embedded:{name}" and p.chat_template == MODELS[name].chat_template == "chatml"
        assert embedded_base(p.base) == name
    assert load_preset("gpu-qwen-1.5b").dtype == "bfloat16" and load_preset("cpu-qwen-0.5b").dtype == "float32"
    assert embedded_base("embedded") == "gemma-3-270m"  # what an older run folder wrote for the 270M
    assert embedded_base("tiny") is None and embedded_base("Qwen/Qwen2.5-1.5B-Instruct") is None


def test_a_base_kit_cannot_dequantise_is_refused_before_any_model_loads(example_copy: Path, run_kit) -> None:
    result = run_kit("finetune", str(example_copy), "--preset", "cpu-qwen-0.5b", "--base",
                     "embedded:smollm2-135m-instruct")  # fmt: skip
    assert result.code != 0
    assert "cannot be fine-tuned from its GGUF" in result.err and f"embedded:{QWEN_05}" in result.err
    result = run_kit("finetune", str(example_copy), "--preset", "cpu-qwen-0.5b", "--base", "embedded:nope")
    assert result.code != 0 and "unknown embedded model 'nope'" in result.err
    assert not (example_copy / "build" / "runs" / "cpu-qwen-0.5b" / "run.json").exists()


# ---- slow: a real run on the 0.5B (its packages: `make test-slow`) ------------------------------------------------


@pytest.mark.slow
def test_a_short_cpu_qwen_run_exports_an_adapter_that_kit_ask_answers_with(
    run_kit, example_dir: Path, tmp_path: Path
) -> None:
    from kit.components.trainer import base_info, embedded_hf_dir
    from kit.services.training.export import export
    from kit.services.training.recipe import finetune

    domain = tmp_path / "shop"
    shutil.copytree(example_dir, domain, ignore=shutil.ignore_patterns("build", "runs"))
    tune_domain(domain, gguf=f"embedded:{QWEN_05}", chat_template="chatml", sampling={"max_tokens": 48})
    overrides = {"max_steps": 3, "grad_accum": 1, "save_every": 100, "eval_every": 100}
    run = finetune(domain, "cpu-qwen-0.5b", overrides, tmp_path / "run", progress=False)

    info = json.loads(run.path("run.json").read_text(encoding="utf-8"))
    assert info["finished"] and info["step"] == 3 and info["base"] == f"embedded:{QWEN_05}"
    assert info["chat_template"] == "chatml" and info["train_tokens"] > 0
    assert base_info(embedded_hf_dir(QWEN_05)) == {
        "source": MODELS[QWEN_05].file, "embedded": QWEN_05, "dequantized_from": "Q4_K_M"
    }  # fmt: skip

    done = export(run.dir, "adapter", apply=True)  # llama.cpp loads base + adapter; tokens equal training's
    assert done.base_gguf == f"embedded:{QWEN_05}" and done.path.is_file() and done.sample.strip()
    model = yaml.safe_load((domain / "domain.yaml").read_text(encoding="utf-8"))["model"]
    assert model["gguf"] == f"embedded:{QWEN_05}" and model["adapters"][0]["path"] == "adapters/cpu-qwen-0.5b.gguf"

    answer = run_kit("ask", str(domain), "How much is the Folding Lantern?", "--json")
    assert answer.code == 0, answer.err
    out = json.loads(answer.out)
    print(f"tuned 0.5B: {out['answer']!r}")
    assert out["model"] == f"{QWEN_05} + LoRA cpu-qwen-0.5b" and out["answer"].strip()
