"""What every command shares: the app, its consoles and options, one way to print an error, the
names of the flags behind the library's fields, and the progress bar."""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from ..api import check_artifacts_options, parse_size
from ..errors import UserError

__all__ = ["app", "check_artifacts_options", "console", "csv", "err_console", "flag",
           "parse_size", "print_error", "run_with_progress", "runner_choice", "user_errors"]

# Library fields whose flag is not ``--`` + the field with dashes.
FLAGS = {"out_root": "--out", "json_out": "--json", "warmup_iterations": "--warmup",
         "wait_seconds": "--wait", "prebuilt": "--runner", "target": "--runner-target",
         "transport": "--adb-transport", "direct": "--device", "cooldown_seconds": "--cooldown",
         "pause_seconds": "--block-pause", "max_wait_seconds": "--max-temp-wait"}


def flag(field: str) -> str:
    """The command-line flag of a library field (``input_size`` -> ``--input-size``)."""
    return FLAGS.get(field) or "--" + field.replace("_", "-")


def print_error(message: str) -> None:
    """One ``error:`` line on stderr. The message is plain text, never Rich markup: it carries
    paths and other user data, and a ``[/x]`` in them must neither crash the print nor vanish
    from it."""
    err_console.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False,
                      soft_wrap=True)


@contextlib.contextmanager
def _usage_errors() -> Iterator[None]:
    try:
        yield
    except typer.TyperException as exc:          # Click's exceptions (Typer vendors Click)
        if type(exc).__name__ == "NoArgsIsHelpError":    # the help is printed: not an error
            raise
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        print_error(exc.format_message() + hint)
        raise typer.Exit(exc.exit_code) from None


class OneLineErrors(TyperGroup):
    """Click's usage errors (an unknown option, a bad value, a missing argument) print as one
    ``error:`` line and exit 2, like every other refusal, not as Typer's boxed panel. The
    group's ``invoke`` runs its subcommands (and their groups), so it catches theirs too."""

    def make_context(self, info_name, args, parent=None, **extra):  # noqa: ANN001, ANN201
        with _usage_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx):  # noqa: ANN001, ANN201
        with _usage_errors():
            return super().invoke(ctx)


app = typer.Typer(cls=OneLineErrors, add_completion=False, no_args_is_help=True,
                  help="Export SeaFormer-family segmenters to ONNX / ExecuTorch and measure them.")
# Rich assumes 80 columns when output is not a terminal (CI logs, files); tables would be cropped.
console = Console() if sys.stdout.isatty() else Console(width=120)
err_console = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=120)

VariantOpt = Annotated[Optional[str], typer.Option(
    "--variant", "-v", help="SeaFormer segmentation variant: T, S, B or L (default T).")]
ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", help="Any registered model, e.g. seaformer-t++, topformer-b "
                          "(see `seaformer-deploy models`).")]
CheckpointOpt = Annotated[Optional[Path], typer.Option(
    "--checkpoint", "-c", help="Official checkpoint (.pth, mmseg or timm format).")]
TrustOpt = Annotated[bool, typer.Option(
    "--trust-checkpoint", help="Unpickle the checkpoint with full privileges. Only for files from "
                               "a source you trust: code stored in them runs as you.")]
ClassesOpt = Annotated[Optional[int], typer.Option(
    "--num-classes", help="Number of classes (default: the checkpoint's, else 150 / 1000).")]
SizeOpt = Annotated[Optional[str], typer.Option(
    "--input-size", "-s", help="HEIGHTxWIDTH, e.g. 512x512 (default: the model's).")]
RunnerTargetOpt = Annotated[Optional[str], typer.Option(
    help="adb devices: the native runner build (default: from the device's ABI, android-arm64 "
         "or android-x86_64; linux-arm64 for glibc ARM64 boards).")]
NdkOpt = Annotated[Optional[Path], typer.Option(
    help="Android NDK: build the android-arm64 runner with its toolchain (with "
         "--executorch-prefix).")]
PrefixOpt = Annotated[Optional[Path], typer.Option(
    help="ExecuTorch install prefix built for the target (the NDK build; optional for "
         "linux-arm64).")]
RunnerDirOpt = Annotated[Optional[Path], typer.Option(
    "--runner", help="A prebuilt runner folder (with its runner.json), e.g. from "
                     "`seaformer-deploy runner build` on another machine.")]


def user_errors(fn: Callable | None = None, *, flags: dict[str, str] | None = None
                ) -> Callable:
    """Turn a ``UserError`` into one ``error:`` line on stderr and its exit code, without a
    traceback; the options the message names are spelled as their flags. ``flags``: this
    command's own spelling of some fields (``@user_errors(flags={"target": "--target"})``)."""
    own = flags or {}

    def spell(field: str) -> str:
        return own.get(field) or flag(field)

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: object, **kwargs: object) -> object:
            try:
                return fn(*args, **kwargs)
            except UserError as exc:
                print_error(exc.render(spell))
                raise typer.Exit(exc.exit_code) from None
        return wrapper
    return decorate(fn) if fn is not None else decorate


def csv(text: str) -> tuple[str, ...]:
    return tuple(v.strip().lower() for v in text.split(",") if v.strip())


def runner_choice(target: str | None, ndk: Path | None, prefix: Path | None,
                  prebuilt: Path | None):  # noqa: ANN201 (a RunnerChoice; imported late)
    from ..runners.session import RunnerChoice

    return RunnerChoice(target, ndk, prefix, prebuilt)


def run_with_progress(job: Callable, label: str | None = None) -> object:
    """``job(progress)`` with a transient progress bar on stderr. The bar appears at the first
    step, so an error raised before any work (a bad option) prints alone."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ..quiet import quiet_third_party_logs

    quiet_third_party_logs()
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/"
               "{task.total}"), TimeElapsedColumn())
    with contextlib.ExitStack() as stack:
        shown: list = []

        def progress(step: str, done: int, total: int) -> None:
            if not shown:
                bar = stack.enter_context(Progress(*columns, console=err_console,
                                                   transient=True))
                shown[:] = [bar, bar.add_task(step, total=None)]
            bar, task = shown
            bar.update(task, description=f"{label}: {step}" if label else step,
                       completed=done, total=total)
        return job(progress)
