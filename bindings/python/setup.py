"""Copies liborchard.so into the package when ORCHARD_LIBRARY names it at build time (see
pyproject.toml); the metadata is in pyproject.toml."""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution


def bundled_library():
    path = os.environ.get("ORCHARD_LIBRARY")
    if not path:
        return None
    if not os.path.isfile(path):
        raise SystemExit(f"ORCHARD_LIBRARY={path}: no such file (pip builds in a copy of the package: give an "
                         "absolute path; build liborchard.so first, or unset ORCHARD_LIBRARY)")
    return path


class BuildPyWithLibrary(build_py):
    def run(self):
        super().run()
        library = bundled_library()
        if library:
            target = os.path.join(self.build_lib, "orchard", "liborchard.so")
            self.mkpath(os.path.dirname(target))
            shutil.copyfile(library, target)
            os.chmod(target, 0o755)


class BinaryDistribution(Distribution):
    # A wheel holding liborchard.so is for this platform only, not "any".
    def has_ext_modules(self):
        return bundled_library() is not None


setup(packages=["orchard"], cmdclass={"build_py": BuildPyWithLibrary}, distclass=BinaryDistribution)
