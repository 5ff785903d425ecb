# Installation, included by the top-level Makefile.
#
#   make install [PREFIX=/usr/local] [DESTDIR=]   the release library and what a C/C++ host needs to use it:
#       LIBDIR/libgfnlm.so.<version>             the library (soname libgfnlm.so.<ABI>)
#       LIBDIR/libgfnlm.so.<ABI> -> that file    what programs load (the soname)
#       LIBDIR/libgfnlm.so -> libgfnlm.so.<ABI>  what `-lgfnlm` links
#       INCLUDEDIR/gfnlm.h
#       LIBDIR/pkgconfig/gfnlm.pc                `pkg-config --cflags --libs gfnlm`
#       LIBDIR/cmake/gfnlm/gfnlmConfig.cmake     find_package(gfnlm) -> imported target gfnlm::gfnlm
#       LIBDIR/cmake/gfnlm/gfnlmConfigVersion.cmake
#   make uninstall [PREFIX=...] [DESTDIR=]       removes exactly those files
#
# <version> is GFN_VERSION_MAJOR.MINOR.PATCH and <ABI> GFN_ABI_VERSION, both read from include/gfnlm.h. DESTDIR
# stages the files under another root (packaging); the paths written into gfnlm.pc and the CMake files are the
# final ones, without DESTDIR. A plain install as root into the system (no DESTDIR) refreshes the loader's cache.

PREFIX ?= /usr/local
DESTDIR ?=
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
CMAKEDIR ?= $(LIBDIR)/cmake/gfnlm
REALNAME := libgfnlm.so.$(GFN_VERSION)
# gfnlm.pc keeps paths under the prefix relative to ${prefix} (pkg-config --define-prefix can relocate it)
PC_LIBDIR = $(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))
PC_INCLUDEDIR = $(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))
INSTALL_SUBST = sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(GFN_VERSION)|g' -e 's|@ABI@|$(GFN_ABI)|g' \
	-e 's|@MAJOR@|$(call header_number,GFN_VERSION_MAJOR)|g'

.PHONY: install uninstall

install: $(LIB)
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(CMAKEDIR)
	install -m 0755 $(LIB) $(DESTDIR)$(LIBDIR)/$(REALNAME)
	ln -sfn $(REALNAME) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sfn $(SONAME) $(DESTDIR)$(LIBDIR)/libgfnlm.so
	install -m 0644 include/gfnlm.h $(DESTDIR)$(INCLUDEDIR)/gfnlm.h
	$(INSTALL_SUBST) -e 's|@LIBDIR@|$(PC_LIBDIR)|g' -e 's|@INCLUDEDIR@|$(PC_INCLUDEDIR)|g' \
	  packaging/gfnlm.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/gfnlm.pc
	$(INSTALL_SUBST) -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' \
	  packaging/gfnlmConfig.cmake.in > $(DESTDIR)$(CMAKEDIR)/gfnlmConfig.cmake
	$(INSTALL_SUBST) packaging/gfnlmConfigVersion.cmake.in > $(DESTDIR)$(CMAKEDIR)/gfnlmConfigVersion.cmake
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then ldconfig; fi
	@echo "installed gfnlm $(GFN_VERSION) (soname $(SONAME)) into $(DESTDIR)$(PREFIX)"

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/$(REALNAME) $(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/libgfnlm.so \
	  $(DESTDIR)$(INCLUDEDIR)/gfnlm.h $(DESTDIR)$(PKGCONFIGDIR)/gfnlm.pc \
	  $(DESTDIR)$(CMAKEDIR)/gfnlmConfig.cmake $(DESTDIR)$(CMAKEDIR)/gfnlmConfigVersion.cmake
	rmdir $(DESTDIR)$(CMAKEDIR) 2>/dev/null || true
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then ldconfig; fi
	@echo "removed gfnlm from $(DESTDIR)$(PREFIX)"

## ------------------------------------------------------------------------------------------------ Python wheel

# build/wheel/gfnlm-<version>-py3-none-<platform>.whl: the bindings with libgfnlm.so inside (pip install needs no
# Swift and no build; libopenblas comes from the system). The build backend (setuptools) comes from PyPI.
WHEEL_DIR := $(BUILD)/wheel
WHEEL = $(WHEEL_DIR)/gfnlm-$(GFN_VERSION)-py3-none-$(shell $(PY) -c 'import sysconfig; print(sysconfig.get_platform().replace("-", "_").replace(".", "_"))').whl
PY_SOURCES := $(wildcard bindings/python/gfnlm/*.py) bindings/python/gfnlm/py.typed bindings/python/pyproject.toml \
	bindings/python/setup.py bindings/python/README.md

.PHONY: wheel install-test

# The wheel's copy is the release library without its DWARF debug information (the symbol table stays): about
# half the size.
wheel: $(LIB) venv $(PY_SOURCES)
	rm -rf $(WHEEL_DIR) bindings/python/build
	mkdir -p $(WHEEL_DIR)/lib
	objcopy --strip-debug $(LIB) $(WHEEL_DIR)/lib/libgfnlm.so
	GFNLM_WHEEL_LIBRARY=$(WHEEL_DIR)/lib/libgfnlm.so $(PY) -m pip wheel --quiet --disable-pip-version-check --no-deps -w $(WHEEL_DIR) \
	  bindings/python
	rm -rf bindings/python/build $(WHEEL_DIR)/lib
	@ls -l $(WHEEL_DIR)/*.whl

## The installed library and the wheel as users get them (part of `make test`, about a minute): the NEEDED list,
## make install/uninstall with pkg-config and CMake consumers, and the wheel in a fresh venv.
install-test: $(LIB) wheel
	Tests/Install/test_needed.sh $(LIB)
	Tests/Install/test_install.sh
	Tests/Install/test_wheel.sh $(WHEEL)

## The clean-machine check (not part of `make test`: a few minutes the first time, for debootstrap; then about a
## minute): a Debian 12 root with only libopenblas0 and python3 from apt runs the installed C example and the
## wheel's Python example. The base root is cached in .build-deps/debian12-base.tar. Needs root.
.PHONY: check-clean-install
check-clean-install: $(LIB) wheel
	tools/check-clean-install.sh $(WHEEL)
