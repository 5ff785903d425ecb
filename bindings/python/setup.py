"""Build hooks for the gfnlm Python package (the metadata is in pyproject.toml).

- The version is GFN_VERSION_STRING from the repository's include/gfnlm.h (the one place versions are written);
  GFNLM_VERSION overrides it when the header is not beside these bindings.
- GFNLM_WHEEL_LIBRARY=/path/to/libgfnlm.so (set by `make wheel`) bundles that library into the package as
  gfnlm/libgfnlm.so and tags the wheel for the platform (py3-none-<platform>: the bindings are ctypes, any
  Python 3 works), so installing it needs no Swift and no build. Without it the package is pure Python and uses
  an installed libgfnlm (see gfnlm/_lib.py for the lookup order).
"""
import os
import re
import shutil
import sysconfig

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = os.path.join(HERE, "..", "..", "include", "gfnlm.h")


def header_version() -> str:
    if os.environ.get("GFNLM_VERSION"):
        return os.environ["GFNLM_VERSION"]
    try:
        with open(HEADER, encoding="utf-8") as f:
            m = re.search(r'^#define GFN_VERSION_STRING "([^"]+)"', f.read(), re.M)
    except OSError:
        m = None
    if m is None:
        raise RuntimeError(f"cannot read GFN_VERSION_STRING from {HEADER}; set GFNLM_VERSION")
    return m.group(1)


BUNDLE = os.environ.get("GFNLM_WHEEL_LIBRARY")


class BuildPy(build_py):
    """Copies the library named by GFNLM_WHEEL_LIBRARY into the built package (never into the source tree)."""

    def run(self):
        super().run()
        target = os.path.join(self.build_lib, "gfnlm", "libgfnlm.so")
        if not BUNDLE and os.path.exists(target):  # left in build/ by an earlier wheel build: not for this one
            os.remove(target)
        if BUNDLE:
            if not os.path.isfile(BUNDLE):
                raise RuntimeError(f"GFNLM_WHEEL_LIBRARY={BUNDLE}: no such file")
            shutil.copyfile(os.path.realpath(BUNDLE), target)
            os.chmod(target, 0o755)


cmdclass = {"build_py": BuildPy}

if BUNDLE:
    try:
        from setuptools.command.bdist_wheel import bdist_wheel
    except ImportError:  # setuptools < 70.1
        from wheel.bdist_wheel import bdist_wheel

    class PlatformWheel(bdist_wheel):
        """A wheel that carries a native library but no extension module: py3-none-<platform>."""

        def finalize_options(self):
            super().finalize_options()
            self.root_is_pure = False

        def get_tag(self):
            return "py3", "none", sysconfig.get_platform().replace("-", "_").replace(".", "_")

    class BinaryDistribution(Distribution):
        """Installs into platlib (the wheel's root), as a package with native code must."""

        def has_ext_modules(self):
            return True

    cmdclass["bdist_wheel"] = PlatformWheel
    setup(version=header_version(), cmdclass=cmdclass, distclass=BinaryDistribution)
else:
    setup(version=header_version(), cmdclass=cmdclass)
