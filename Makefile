# CLASS lunar XRF plugin: set-up, tests, demo, benchmarks and packaging.
# Everything runs from a fresh Debian 12 machine as root: `make test`, `make demo`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PLUGIN_NAME := class_qgis
APT_PACKAGES := qgis python3-qgis qgis-providers xvfb python3-venv
STAMP_APT := $(VENV)/.apt-done
STAMP_PIP := $(VENV)/.pip-done
export QT_QPA_PLATFORM := offscreen
export OMP_NUM_THREADS ?= 2

.PHONY: setup test demo demo-full demo-moon bench package clean

setup: $(STAMP_PIP)

$(STAMP_APT):
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(APT_PACKAGES); \
	fi
	@test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	@touch $@

$(STAMP_PIP): requirements.txt $(STAMP_APT)
	$(PY) -m pip install -q -r requirements.txt
	@touch $@

test: setup
	$(PY) -m pytest -q tests

demo: setup
	$(PY) -m class_qgis_plugin.cli demo --out demo_output

# the demo plus super-resolution of the region (a few minutes on 2 CPU cores)
demo-full: setup
	$(PY) -m class_qgis_plugin.cli demo --out demo_output --superres

# the archive run: six simulated days over two neighbouring regions on a local Dask cluster, every
# region super-resolved with a halo (a short training), one mosaic COG per element (a few minutes on 2 cores)
demo-moon: setup
	$(PY) -m class_qgis_plugin.cli demo --moon --out demo_moon

bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

package:
	@rm -f $(PLUGIN_NAME).zip
	git archive --format=zip --prefix=$(PLUGIN_NAME)/ -o $(PLUGIN_NAME).zip HEAD \
	    -- metadata.txt LICENSE __init__.py plugin.py class_qgis_plugin processing_provider resources requirements.txt README.md
	@echo "wrote $(PLUGIN_NAME).zip"

clean:
	rm -rf $(VENV) $(PLUGIN_NAME).zip demo_output demo_moon .pytest_cache

# QGIS desktop under Xvfb with the plugin installed in a temporary profile: checks the provider's
# algorithms are registered and saves screenshot.png (basemap + a graduated abundance layer).
.PHONY: screenshot
screenshot: setup
	QT_QPA_PLATFORM= $(PY) scripts/screenshot.py --out screenshot.png
