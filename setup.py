"""Packaging that pyproject.toml cannot state: the repository's devices/ ships inside the package.

The phone profiles stay at the root of the tree (devices/, next to models/ and reports/) and are
mapped into the wheel as the package ``seaformer_deploy.profiles``; a mapped folder is not found
by ``[tool.setuptools.packages.find]``, and that table cannot be combined with a list, so the
package list is made here. Everything else is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["seaformer_deploy*"]), "seaformer_deploy.profiles"],
    package_dir={"seaformer_deploy.profiles": "devices"},
)
