# The two set-up commands of the README: `make demo` and `make test`.
# Each creates/refreshes .venv and installs what it needs, so that a fresh Debian machine needs nothing else.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stamp-install
DEMO_DIR ?= data/demo_corpus
DEMO_OUT ?= results/demo

.PHONY: venv test demo demo-quick teachers bench system-packages clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

# Debian packages for the offline demo corpus (real recorded speech and music), for the report
# screenshot test (chromium) and tcmalloc for `make demo` (README, "Cost of a KD step"). Best effort: without root or apt the corpus falls back to synthetic
# speech and the screenshot test skips with its reason.
# The held-out corpus's packages (`dfkd corpus heldout`) are unpacked into $(DEBIAN_DIR), not installed:
# asterisk-prompt-es-co and -fr-armelle conflict with the demo's asterisk-core-sounds-es/-fr.
DEBIAN_DIR ?= /var/cache/dfkd/debian
HELDOUT_DEBS := asterisk-prompt-es-co asterisk-prompt-fr-armelle asterisk-prompt-it-menardi-wav \
                oxygen-sounds heroes-sound-effects
system-packages:
	-@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  for p in asterisk-core-sounds-en-g722 asterisk-core-sounds-es-g722 asterisk-core-sounds-fr-g722 \
	           asterisk-core-sounds-it-g722 asterisk-core-sounds-ru-g722 asterisk-moh-opsound-wav chromium \
	           libtcmalloc-minimal4; do \
	    dpkg -s $$p >/dev/null 2>&1 || NEED="$$NEED $$p"; done; \
	  for p in $(HELDOUT_DEBS); do [ -d "$(DEBIAN_DIR)/$$p" ] || NEED_DEB="$$NEED_DEB $$p"; done; \
	  if [ -n "$$NEED$$NEED_DEB" ]; then apt-get update -qq; fi; \
	  if [ -n "$$NEED" ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$NEED >/dev/null; fi; \
	  for p in $$NEED_DEB; do d=$$(mktemp -d) && mkdir -p "$(DEBIAN_DIR)" && rm -rf "$(DEBIAN_DIR)/$$p.tmp" && \
	    (cd $$d && apt-get download -qq $$p 2>/dev/null) && dpkg-deb -x $$d/$${p}_*.deb "$(DEBIAN_DIR)/$$p.tmp" && \
	    mv "$(DEBIAN_DIR)/$$p.tmp" "$(DEBIAN_DIR)/$$p" || echo "system-packages: could not unpack $$p"; rm -rf $$d; done; \
	else echo "system-packages: no root/apt-get; the demo corpus will use synthetic speech"; fi

# tcmalloc when installed (system-packages): ~1.1x-1.2x faster one-thread training steps than
# glibc's malloc, the same weights bit for bit (benchmarks/allocator_settings.py); empty: glibc
TCMALLOC = $(firstword $(wildcard /usr/lib/*-linux-gnu/libtcmalloc_minimal.so.4 /usr/lib64/libtcmalloc_minimal.so.4))

test: $(STAMP) system-packages
	$(PY) -m pytest -q

demo: $(STAMP) system-packages
	$(VENV)/bin/dfkd models
	$(VENV)/bin/dfkd corpus demo --out $(DEMO_DIR)
	LD_PRELOAD="$(TCMALLOC)" $(VENV)/bin/dfkd experiment --config configs/demo.yaml --data $(DEMO_DIR) --out $(DEMO_OUT)

# A few-minute version of the demo: Conv-TasNet only, few steps (see configs/demo_quick.yaml).
demo-quick: $(STAMP) system-packages
	$(VENV)/bin/dfkd corpus demo --out $(DEMO_DIR)
	$(VENV)/bin/dfkd experiment --config configs/demo_quick.yaml --data $(DEMO_DIR) --out results/demo_quick

# Retrain the three `small` demo teachers from scratch with their committed recipes
# (pretrained/<arch>_small/commands.sh; README, "Pretrained demo teachers"): about 4 hours on a
# 2-core CPU for the three together (Conv-TasNet and DCCRN-CL have a third stage on varied audio). Results go to runs/teachers/; the committed files are untouched.
teachers: $(STAMP) system-packages
	$(PY) pretrained/make_teacher_sources.py --out data/teacher_sources
	$(PY) pretrained/make_teacher_sources.py --out data/teacher_sources_varied --varied
	mkdir -p runs/teachers
	for a in convtasnet dptnet dccrn; do \
	  PATH="$(CURDIR)/$(VENV)/bin:$$PATH" OMP_WAIT_POLICY=PASSIVE sh pretrained/$${a}_small/commands.sh \
	    > runs/teachers/$$a.log 2>&1 & done; wait; tail -n 3 runs/teachers/*.log

# every benchmark that runs without inputs (kd_gradient_share, output_sign, paired_rows read trained runs)
bench: $(STAMP)
	for f in benchmarks/*.py; do case $$f in *kd_gradient_share.py|*output_sign.py|*paired_rows.py) continue;; esac; \
	  echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info src/*.egg-info
