# Two commands do all set-up: `make demo` (the main job) and `make test` (all tests).
# Both create/refresh .venv and install factacq with its pinned dependencies.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv demo test reproduce lab bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/factacq run params/default.yaml

reproduce: $(STAMP)
	$(BIN)/factacq sweep params/sweep_miniature.yaml

test: $(STAMP)
	$(BIN)/python -m pytest tests notebooks --nbval-lax -p no:cacheprovider

lab: $(STAMP)
	$(BIN)/jupyter lab --ServerApp.root_dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .cache
