"""The ``seaformer-deploy`` command line: a skin over ``seaformer_deploy.api``.

Each command parses its flags into the API's keyword arguments, calls it and prints what it
returns; library errors name fields, which ``user_errors`` prints as flags. One module per
command group; importing them registers their commands on ``app``.
"""

from __future__ import annotations

from .common import app, check_artifacts_options, parse_size, user_errors
# Registered in this order, listed in this order by --help.
from . import zoo, export_cli, bench_cli, gate_cli, evaluate_cli, devices_cli  # noqa: E402, F401, I001
from .export_cli import print_parity

__all__ = ["app", "check_artifacts_options", "main", "parse_size", "print_parity",
           "user_errors"]


def main() -> None:
    app()
