# The two set-up commands of the README: `make demo` and `make test`. Both work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
# torch==2.13.0 is a local CPU wheel on the project machines; installing it first keeps pip from pulling a
# several-GB CUDA build when monge's `torch>=2.4` requirement is resolved.
TORCH  ?= torch==2.13.0

.PHONY: demo test test-slow bench venv clean

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install "$(TORCH)"
	touch $@

venv: $(VENV)/.created

demo: $(VENV)/.created
	$(PIP) install -e ".[demo]"
	$(VENV)/bin/monge demo --out report

test: $(VENV)/.created
	$(PIP) install -e ".[test]"
	$(PY) -m pytest -q

test-slow: $(VENV)/.created
	$(PIP) install -e ".[test]"
	$(PY) -m pytest -q -m slow

bench: $(VENV)/.created
	$(PIP) install -e ".[bench,test]"
	$(PY) benchmarks/run_all.py

clean:
	rm -rf build report .pytest_cache
