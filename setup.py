"""Packages: every folder under the three roots, so a new sub-package cannot be left out of the
wheel. The top-level runtime/ and grammar/ folders install as growlang.runtime and
growlang.grammar (one import namespace; nothing called bare `runtime` or `grammar` lands in
site-packages). Everything else is in pyproject.toml; .ci/run checks the wheel against git."""

from setuptools import find_namespace_packages, setup

ROOTS = {"growlang": "growlang", "growlang.runtime": "runtime", "growlang.grammar": "grammar"}


def packages() -> list[str]:
    found = []
    for name, folder in ROOTS.items():
        found.append(name)
        found += [f"{name}.{sub}" for sub in find_namespace_packages(folder, exclude=["*__pycache__*"])]
    return found


setup(packages=packages(), package_dir=ROOTS)
