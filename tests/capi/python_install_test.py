#!/usr/bin/env python3
"""`pip install --no-build-isolation --no-index bindings/python` into a fresh virtual environment
(with the system's setuptools and wheel, nothing from PyPI), liborchard.so copied into the
package from ORCHARD_LIBRARY at build time; then the venv's python, in another folder and without
ORCHARD_LIBRARY, imports it and generates the first stories260K case exactly.

    python_install_test.py BINDINGS_DIR LIBORCHARD_SO SHARED_DIR
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def base_python():
    """An interpreter with setuptools and wheel (Debian's python3-setuptools, python3-wheel),
    which --no-build-isolation builds with: this one, else /usr/bin/python3."""
    for candidate in (sys.executable, "/usr/bin/python3"):
        if candidate and Path(candidate).exists():
            check = subprocess.run([candidate, "-c", "import setuptools, wheel, ensurepip"], capture_output=True)
            if check.returncode == 0:
                return candidate
    sys.exit("no python3 with setuptools, wheel and venv (Debian: python3-setuptools python3-wheel python3-venv)")


def main():
    bindings, library, shared = (Path(a).resolve() for a in sys.argv[1:4])
    case = json.loads((shared / "models/stories260K/expected_generation.json").read_text())["cases"][0]
    with tempfile.TemporaryDirectory(prefix="orchard-venv-") as tmp:
        tmp = Path(tmp)
        # Built from a copy: an in-tree build writes build/ and *.egg-info beside the sources, and
        # two suites (plain and sanitizer trees) may run at once.
        source = tmp / "src"
        shutil.copytree(bindings, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        venv = tmp / "venv"
        subprocess.run([base_python(), "-m", "venv", "--system-site-packages", str(venv)], check=True)
        env = dict(os.environ, ORCHARD_LIBRARY=str(library), PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
        env.pop("PYTHONPATH", None)
        subprocess.run([str(venv / "bin/pip"), "install", "--quiet", "--no-build-isolation", "--no-index", str(source)],
                       check=True, env=env, cwd=tmp)
        env.pop("ORCHARD_LIBRARY")
        script = (
            "import json, sys, orchard\n"
            "from pathlib import Path\n"
            "assert 'site-packages' in orchard.__file__, orchard.__file__\n"
            "assert (Path(orchard.__file__).parent / 'liborchard.so').is_file()\n"
            "case = json.loads(sys.argv[2])\n"
            "model = orchard.Model(sys.argv[1])\n"
            "text = ''.join(model.generate(case['prompt'], max_tokens=case['generated_tokens'], temperature=0))\n"
            "assert text == case['expected_continuation'], repr(text)\n"
            "print('venv generation ok:', orchard.version(), orchard.__file__)\n")
        subprocess.run([str(venv / "bin/python"), "-c", script, str(shared / "models/stories260K/stories260K.gguf"),
                        json.dumps(case)], check=True, env=env, cwd=tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
