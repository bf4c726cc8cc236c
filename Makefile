# Two commands for a new user:
#   make demo   set up, then run the whole pipeline on the built-in drum sounds
#   make test   set up, then lint (ruff, rules in ruff.toml) and run the tests
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test setup benchmark clean

setup: $(STAMP)

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python preprocess.py
	$(BIN)/python train.py --verbose=2
	$(BIN)/python generate.py
	$(BIN)/python plot_spectrograms.py
	@echo "Listen to the WAV files in samples/ (pictures in samples/plots/)"

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

benchmark: $(STAMP)
	$(BIN)/python benchmarks/run_benchmarks.py

clean:
	rm -rf data/spectrograms models/vae samples
