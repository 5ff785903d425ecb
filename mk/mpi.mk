## Data-parallel training over MPI (issue: scale-out). libgfnlm links no MPI; the tests bring OpenMPI from Debian
## (mpicc, mpirun) and mpi4py (built by pip with mpicc) in a venv of their own, .venv-mpi. Installed when running as
## root; otherwise the command is printed and the MPI tests skip with the reason.
MPI_DEB_PACKAGES := libopenmpi-dev openmpi-bin
MPI_VENV := $(ROOT)/.venv-mpi

.PHONY: mpi-deps mpi-venv mpi-test

mpi-deps:
	@missing=""; for p in $(MPI_DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian packages for the MPI tests:$$missing"; \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	  else \
	    echo "(MPI tests will skip: missing Debian packages$$missing; run: sudo apt-get install -y$$missing)"; \
	  fi; \
	fi

mpi-venv: mpi-deps
	@if command -v mpicc >/dev/null && [ ! -f $(MPI_VENV)/.ok ]; then \
	  python3 -m venv $(MPI_VENV) && \
	  $(MPI_VENV)/bin/pip install --quiet --disable-pip-version-check numpy pytest mpi4py && touch $(MPI_VENV)/.ok \
	  || echo "(MPI tests will skip: could not build mpi4py in $(MPI_VENV))"; \
	fi

## The data-parallel tests alone (they also run inside py-test when .venv-mpi exists).
mpi-test: lib venv mpi-venv
	cd $(ROOT) && GFNLM_LIBRARY=$(LIB) GFNLM_MPI_PYTHON=$(MPI_VENV)/bin/python PYTHONPATH=$(ROOT)/bindings/python \
	  $(PY) -m pytest -q -rs bindings/python/tests/test_distributed.py
