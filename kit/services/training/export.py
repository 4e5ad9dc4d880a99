"""`kit export`: a fine-tune run folder -> a GGUF llama.cpp runs, checked before it is declared good.

The recipe: check the run folder -> refuse a quantisation known to break the model -> convert with
llama.cpp's own scripts (``adapter``: ``convert_lora_to_gguf.py``; ``merged``: peft merge, then
``convert_hf_to_gguf.py``, then ``llama_model_quantize``) into a staging folder -> verify (llama.cpp
loads it and generates; the runtime's rendering of the run's sample prompt tokenises exactly as in
training) -> move into place -> print (or, with ``apply``, write) the domain's model settings.
Any failure removes what was written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kit.errors import KitError, ModelError
from kit.files import replace_copy, replace_text
from kit.services.training.run_folder import ADAPTER_FILES, RUN_FILES, Run

Format = Literal["adapter", "merged"]
ADAPTER_QUANTS = ("F16", "Q8_0")
MERGED_QUANTS = ("F16", "Q8_0", "Q5_K_M", "Q4_K_M")
FOUR_BIT = ("Q4_K_M",)


@dataclass
class Exported:
    """What an export produced and how the domain uses it."""

    path: Path
    fmt: Format
    quant: str
    base_gguf: str  # the model.gguf value the runtime needs ('embedded:gemma-3-270m' or a path)
    template: str
    sample: str  # what the exported model generated for the sample prompt
    lines: str  # the domain.yaml lines that make `kit serve` use it
    applied: Path | None = None  # the domain.yaml written, when asked


def export(
    run_dir: str | Path,
    fmt: Format = "adapter",
    quant: str | None = None,
    out: str | Path | None = None,
    base_gguf: str | None = None,
    apply: bool = False,
) -> Exported:
    """Export a finished run; see the module docstring for the steps."""
    run = open_run(Path(run_dir))
    quant = (quant or ("F16" if fmt == "adapter" else "Q8_0")).upper()
    refuse(run, fmt, quant)
    out_dir = Path(out) if out else run.dir / "export"
    template = runtime_template(run)
    check_template(run, template)
    with staging(out_dir) as tmp:
        if fmt == "adapter":
            produced = convert_adapter(run, tmp, quant)
            base = base_gguf or runtime_base(run, out_dir, tmp)
            sample = verify(run, model_file(base, out_dir, tmp), produced, template)
        else:
            produced = convert_merged(run, tmp, quant, out_dir)
            base = ""
            sample = verify(run, produced, None, template)
        final = out_dir / produced.name
        for f in tmp.iterdir():
            f.replace(out_dir / f.name)
    if fmt == "merged":
        base = str(final.resolve())
    result = Exported(final, fmt, quant, base, template, sample, "")
    result.lines = settings_lines(result, run)
    if apply:
        result.applied = apply_to_domain(result, run)
        result.lines = settings_lines(result, run)
    return result


def open_run(folder: Path) -> Run:
    """A finished run folder, or one error naming every file that is missing."""
    if not folder.is_dir():
        raise KitError(f"run folder {folder} does not exist", "give the --out folder of a `kit finetune` run")
    missing = [rel for rel in (*RUN_FILES, *ADAPTER_FILES) if not (folder / rel).is_file()]
    if missing:
        raise KitError(
            f"run folder {folder} is incomplete: {', '.join(missing)} missing",
            "finish the run (`kit finetune ... --resume`) or train it again",
        )
    run = Run(folder, json.loads((folder / "run.json").read_text(encoding="utf-8")))
    if not run.info.get("finished"):
        raise KitError(f"run {folder} has not finished", "continue it with `kit finetune <domain> --out RUN --resume`")
    if not Path(run.info["base_dir"]).is_dir():
        raise KitError(f"the run's base model folder {run.info['base_dir']} is gone", "train the run again")
    return run


def refuse(run: Run, fmt: Format, quant: str) -> None:
    """Stop a quantisation that is unknown, or known to break the model, before any work."""
    from kit.components.trainer import base_info

    allowed = ADAPTER_QUANTS if fmt == "adapter" else MERGED_QUANTS
    if quant not in allowed:
        raise KitError(f"--quant {quant} is not available for --format {fmt}", f"use one of {', '.join(allowed)}")
    origin = base_info(Path(run.info["base_dir"])).get("dequantized_from", "")
    if fmt == "merged" and quant in FOUR_BIT and origin.startswith("Q4"):
        raise ModelError(
            f"quantising this model to {quant} would break it: its base weights were dequantised from a {origin} "
            "GGUF, and rounding them to 4 bits a second time ruins its answers",
            "use --quant Q8_0 or F16, or export --format adapter and keep the original 4-bit base",
        )


def sweep_stale(out_dir: Path) -> None:
    """Remove staging folders left by exports that were killed (their process is gone)."""
    for folder in out_dir.glob(".export-*"):
        pid = folder.name.split("-")[1]
        if not (pid.isdigit() and _alive(int(pid))):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def staging(out_dir: Path) -> Iterator[Path]:
    """A temporary folder inside ``out_dir``: kept files are moved out of it; it is always removed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sweep_stale(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".export-{os.getpid()}-", dir=out_dir))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def convert_adapter(run: Run, tmp: Path, quant: str) -> Path:
    """The LoRA adapter as GGUF, by llama.cpp's convert_lora_to_gguf.py."""
    from kit.components.converters import run_script

    dest = tmp / f"adapter-{quant.lower()}.gguf"
    args = [
        "--base",
        run.info["base_dir"],
        "--outfile",
        str(dest),
        "--outtype",
        quant.lower(),
        str(run.path("adapter")),
    ]
    run_script("convert_lora_to_gguf.py", args)
    return dest


def convert_merged(run: Run, tmp: Path, quant: str, out_dir: Path) -> Path:
    """Merge the adapter into the base with peft, convert to F16 GGUF, then quantise with llama.cpp.

    An F16 export of this run already in ``out_dir`` (newer than the adapter) is quantised directly.
    """
    from kit.components.converters import quantize

    earlier = out_dir / "merged-f16.gguf"
    adapter = run.path(ADAPTER_FILES[1])
    if quant != "F16" and earlier.is_file() and earlier.stat().st_mtime >= adapter.stat().st_mtime:
        f16 = earlier
    else:
        f16 = merge_to_f16(run, tmp)
    if quant == "F16":
        return f16
    dest = tmp / f"merged-{quant.lower()}.gguf"
    quantize(f16, dest, quant)
    if f16 != earlier:
        f16.unlink()
    return dest


def merge_to_f16(run: Run, tmp: Path) -> Path:
    """peft's merge of the adapter into the base (float32), saved and converted by convert_hf_to_gguf.py."""
    import torch

    from kit.components.converters import run_script
    from kit.components.trainer import quiet_bitsandbytes

    quiet_bitsandbytes()
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    hf = tmp / "merged-hf"
    base = AutoModelForCausalLM.from_pretrained(run.info["base_dir"], dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, str(run.path("adapter"))).merge_and_unload()
    merged.save_pretrained(str(hf))
    shutil.copytree(run.path("tokenizer"), hf, dirs_exist_ok=True)
    del base, merged
    f16 = tmp / "merged-f16.gguf"
    run_script("convert_hf_to_gguf.py", [str(hf), "--outfile", str(f16), "--outtype", "f16"])
    shutil.rmtree(hf)
    return f16


def runtime_base(run: Run, out_dir: Path, tmp: Path) -> str:
    """The GGUF the adapter is applied to at run time: the embedded model, or the base converted once."""
    from kit.components.converters import run_script
    from kit.model_registry import EMBEDDED_PREFIX

    embedded = _trained_on_embedded(run)
    if embedded:
        return f"{EMBEDDED_PREFIX}{embedded}"
    kept = out_dir / "base-f16.gguf"
    if not kept.is_file():
        run_script(
            "convert_hf_to_gguf.py", [run.info["base_dir"], "--outfile", str(tmp / kept.name), "--outtype", "f16"]
        )
    return str(kept.resolve())


def _trained_on_embedded(run: Run) -> str | None:
    """The embedded model the run was trained on (its GGUF is the runtime's base), or None."""
    from kit.services.training.recipe import embedded_base

    return embedded_base(run.info["base"])


def model_file(base: str, out_dir: Path, tmp: Path) -> Path:
    """Where ``base`` is right now (a base converted in this export is still in the staging folder)."""
    from kit.components.llm import model_path

    path = model_path(base, Path.cwd())
    staged = tmp / path.name
    return staged if path.parent == out_dir.resolve() and staged.is_file() else path


def runtime_template(run: Run) -> str:
    """The chat template the runtime will use: the domain's model.chat_template; the run's when the domain is gone or
    the export moves it to the embedded model the run was trained on (whatever model the domain ran before)."""
    from kit.domain import load_domain

    if _trained_on_embedded(run):
        return str(run.info["chat_template"])
    domain_dir = Path(run.info["domain_dir"])
    if (domain_dir / "domain.yaml").is_file():
        return load_domain(domain_dir).spec.model.chat_template
    return str(run.info["chat_template"])


def check_template(run: Run, template: str) -> None:
    """The cheap half of the round trip, before any conversion: the runtime must render the sample as training did."""
    from kit.components.chat_template import render

    sample = json.loads(run.path("sample.json").read_text(encoding="utf-8"))
    if render(sample["messages"], template) != sample["prompt"]:
        raise ModelError(
            f"chat-template round trip failed: the runtime's '{template}' template renders the sample prompt "
            f"differently from training ('{run.info['chat_template']}')",
            round_trip_hint(template, run),
        )


def verify(run: Run, model: Path, adapter: Path | None, template: str) -> str:
    """Load the export in llama.cpp, check the chat-template round trip, and generate a few tokens."""
    from kit.components.llm import LlamaEngine
    from kit.settings import Adapter, ModelSettings, Sampling

    sample = json.loads(run.path("sample.json").read_text(encoding="utf-8"))
    expected: list[int] = sample["prompt_ids"]
    settings = ModelSettings(
        gguf=str(model), adapters=[Adapter(path=str(adapter))] if adapter else [], chat_template=template,
        n_ctx=max(512, len(expected) + 64), n_threads=2, sampling=Sampling(temperature=0.0, max_tokens=8),
    )  # fmt: skip
    engine = LlamaEngine(settings, Path.cwd())
    try:
        got = engine.tokens(engine.template.render(sample["messages"]))
        if got != expected:
            raise ModelError(round_trip_message(got, expected, template, run), round_trip_hint(template, run))
        out = engine.llm.create_completion(engine.template.render(sample["messages"]), max_tokens=8, temperature=0.0)
        if int(out["usage"]["completion_tokens"]) < 1:
            raise ModelError(f"the exported model {model.name} loaded but generated nothing", "check the run's base")
        return str(out["choices"][0]["text"])
    finally:
        engine.llm.close()


def round_trip_message(got: list[int], expected: list[int], template: str, run: Run) -> str:
    at = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b), min(len(got), len(expected)))
    return (
        f"chat-template round trip failed: the runtime ('{template}' template, llama.cpp tokenizer) renders the "
        f"sample prompt as {len(got)} tokens, training ('{run.info['chat_template']}') as {len(expected)}; "
        f"they differ from token {at}"
    )


def round_trip_hint(template: str, run: Run) -> str:
    trained = run.info["chat_template"]
    if template != trained:
        return (
            f"set model.chat_template: {trained} in {run.info['domain_dir']}/domain.yaml (the run was trained with it)"
        )
    return "the tokenizers disagree: export from a run whose base matches model.gguf"


# ----------------------------------------------------------------------------------------------------
# The domain's model settings.


def settings_lines(result: Exported, run: Run) -> str:
    """The ``model:`` lines of domain.yaml that make `kit serve` use the export."""
    lines = ["model:", f"  gguf: {result.base_gguf}", f"  chat_template: {result.template}"]
    if result.fmt == "adapter":
        path = (
            adapter_target(run).relative_to(Path(run.info["domain_dir"])).as_posix() if result.applied else result.path
        )
        lines += ["  adapters:", f"    - path: {path}", "      scale: 1.0"]
    else:
        lines.append("  adapters: []")
    return "\n".join(lines)


def adapter_target(run: Run) -> Path:
    return Path(run.info["domain_dir"]) / "adapters" / f"{run.info['preset']}.gguf"


def apply_to_domain(result: Exported, run: Run) -> Path:
    """Write the model settings into the run's domain.yaml, in place (comments and order kept), then validate."""
    from kit.domain import read_spec

    spec_file = Path(run.info["domain_dir"]) / "domain.yaml"
    if not spec_file.is_file():
        raise KitError(f"the run's domain {spec_file} is gone", "add the printed lines to your domain.yaml by hand")
    values: dict[str, list[str]] = {"gguf": [f"gguf: {result.base_gguf}"], "chat_template": [
        f"chat_template: {result.template}"]}  # fmt: skip
    if result.fmt == "adapter":
        target = adapter_target(run)
        replace_copy(result.path, target)
        rel = target.relative_to(spec_file.parent).as_posix()
        values["adapters"] = ["adapters:", f"  - path: {rel}", "    scale: 1.0"]
    else:
        values["adapters"] = ["adapters: []"]
    original = spec_file.read_text(encoding="utf-8")
    replace_text(spec_file, set_model_keys(original, values))
    spec, problems = read_spec(spec_file)
    if spec is None:
        replace_text(spec_file, original)
        raise KitError(f"writing the model settings into {spec_file} made it invalid: {problems[0]}",
                       "add the printed lines by hand")  # fmt: skip
    return spec_file


def set_model_keys(text: str, values: dict[str, list[str]]) -> str:
    """``text`` with each key of the top-level ``model:`` block replaced (or added) by its lines."""
    lines = text.splitlines()
    start = next((i for i, x in enumerate(lines) if re.match(r"^model:\s*(#.*)?$", x)), None)
    if start is None:
        lines += ["", "model:"] + [f"  {v}" for vs in values.values() for v in vs]
        return "\n".join(lines) + "\n"
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"^[^\s#]", lines[i])), len(lines))
    for key, new in values.items():
        block = lines[start + 1 : end]
        at = next((i for i, x in enumerate(block) if re.match(rf"^  {key}:", x)), None)
        rendered = [f"  {v}" for v in new]
        if at is None:
            last = max((i for i, x in enumerate(block) if x.strip()), default=-1)
            lines[start + 1 + last + 1 : start + 1 + last + 1] = rendered
            end += len(rendered)
            continue
        stop = at + 1
        while stop < len(block) and (block[stop].startswith("   ") or block[stop].startswith("  - ")):
            stop += 1
        lines[start + 1 + at : start + 1 + stop] = rendered
        end += len(rendered) - (stop - at)
    return "\n".join(lines) + "\n"


def describe(result: Exported) -> dict[str, Any]:
    return {"path": str(result.path), "format": result.fmt, "quant": result.quant, "sample": result.sample}
