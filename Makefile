PYTHON ?= python3

.PHONY: install test lint bench demo

install:
	$(PYTHON) -m pip install torch==2.13.0 -e '.[all,test]'

test: install
	$(PYTHON) -m pytest -q -ra

lint:
	$(PYTHON) -m ruff check bisect_runs tests benchmarks
	$(PYTHON) -m mypy bisect_runs

bench:
	$(PYTHON) benchmarks/diff_speed.py
	$(PYTHON) benchmarks/overhead.py
	$(PYTHON) benchmarks/demo_speed.py
	$(PYTHON) benchmarks/search_suite.py --quick

demo:
	$(PYTHON) -m pip install torch==2.13.0 -e '.[demo,report]'
	bisect-runs diff configs/baseline configs/run11 --defaults configs/speech_defaults.yaml
	bisect-runs search --resume
