# Two entry points for a fresh machine: `make repro` (the default pipeline) and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
export OMP_WAIT_POLICY := PASSIVE

.PHONY: setup repro test

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

repro: setup
	@test -d .git || (echo "error: run inside the git clone (dvc needs it)"; exit 1)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" dvc repro

# Two workers, one per core (each torch in one thread); loadfile keeps each file's tests on one worker and in order,
# since the user guide's tests build on each other's `dvc repro`. --no-loadscope-reorder: hand the files out in the
# order tests/conftest.py gives them (the long end-to-end files first); xdist's default hands out the files with the
# most tests first, which left the long files with few tests (test_chaos.py, test_graph.py) for the end.
# --durations=15 lists the slowest tests at the end: the first place to look when the suite grows past 8 minutes.
test: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder \
		--durations=15 tests
