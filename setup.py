"""Maps the repository's folders onto the import names.

``engine/`` is ``portside.engine`` and ``kernel/`` is ``portside.kernel``; ``portside/`` holds only
the small top-level package that makes ``%load_ext portside`` work.
"""
from setuptools import find_packages, setup

PACKAGE_DIR = {"portside": "portside", "portside.engine": "engine", "portside.kernel": "kernel"}
packages = ["portside"] + [
    "portside." + name
    for name in find_packages(include=["engine", "engine.*", "kernel", "kernel.*"])
]
# bin/portside rather than a [project.scripts] entry point: see the script's comment
setup(packages=packages, package_dir=PACKAGE_DIR, scripts=["bin/portside"])
