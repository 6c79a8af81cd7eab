"""``devices`` and ``runner build``: the phones within reach, and the native runner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.table import Table

from .common import NdkOpt, PrefixOpt, app, console, flag, user_errors

runner_app = typer.Typer(help="The native benchmark runner.", no_args_is_help=True)
app.add_typer(runner_app, name="runner")


@runner_app.command("build")
@user_errors(flags={"target": "--target"})      # bench and gate spell it --runner-target
def runner_build_cmd(
    target: Annotated[str, typer.Option(
        help="host, linux-arm64 (glibc boards), android-arm64 (any arm64-v8a phone: bundled "
             "with glibc, or the NDK build with --ndk) or android-x86_64 (emulators).")
    ] = "host",
    ndk: NdkOpt = None, executorch_prefix: PrefixOpt = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if cached.")] = False,
) -> None:
    """Build (or find in the cache) the native ExecuTorch runner for a target."""
    from ..runners.native import build_runner

    build = build_runner(target, ndk, executorch_prefix, force)
    console.print(f"{build.target} runner for {build.abi} ({build.toolchain}, launch "
                  f"{build.launch.mode}, ExecuTorch {build.executorch_version}): "
                  f"{build.folder}", highlight=False, markup=False)
    for name, path in sorted(build.files.items()):
        console.print(f"  {name}" + ("" if build.folder in path.parents else f" ({path})"),
                      highlight=False, markup=False)
    command = json.loads((build.folder / "runner.json").read_text())["command"]
    console.print(f"start it with: {command}  (see runner.json; `bench --runner "
                  f"{build.folder}` uses this folder)", highlight=False, markup=False)


@app.command("devices")
@user_errors
def devices_cmd(
    device: Annotated[Optional[list[str]], typer.Option(
        "--device", "-d", help="Also reach this serial or HOST:PORT directly (adb-shell, no "
                               "adb server); repeatable.")] = None,
    profiles: Annotated[Optional[Path], typer.Option(
        help="Device profiles folder (default: the repository's devices/).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the phones within reach (the adb server's, and --device) and probe each.

    For each: model, SoC, Android, cores, the core a bench pins, temperatures, free space, the
    transport, the matching profile (devices/) and where the probe disagrees with it. Exits 1
    when a device that should answer (state device, or --device) cannot be probed."""
    from ..api import devices

    listing = devices(device or [], profiles)
    found = listing.to_dict(flag)        # a device's error names our flags, not the fields
    if as_json:
        typer.echo(json.dumps(found, indent=2))
    else:
        _print_devices(found)
    if listing.failed:
        raise typer.Exit(1)


def _print_devices(found: dict) -> None:
    from rich.markup import escape

    server = found["server"]
    if server["running"]:
        console.print(f"adb server {server['address']} (adb {server['version']}): "
                      f"{sum(d['via'] == 'adb server' for d in found['devices'])} device(s)",
                      highlight=False)
    else:
        console.print(f"no adb server at {server['address']}: phones on USB show up once one "
                      f"runs (`adb start-server`; this command never starts one). --device "
                      f"HOST:PORT reaches a phone on the network without it.", highlight=False)
    if not found["devices"]:
        console.print("no devices within reach.")
        return
    table = Table(title="devices", box=box.SIMPLE_HEAD)
    for col in ("serial", "state", "via", "model", "SoC", "profile"):
        table.add_column(col, no_wrap=col != "profile")
    for d in found["devices"]:
        profile = d.get("profile")
        table.add_row(*map(escape, (d["serial"], d["state"], d["via"], d.get("model") or "-",
                                    d.get("soc") or d.get("board") or "-",
                                    profile["name"] if profile else "-")))
    console.print(table)
    for d in found["devices"]:
        _print_device(d)


def _print_device(d: dict) -> None:
    from rich.markup import escape

    table = Table(title=f"{d['serial']} ({d['via']})", show_header=False, box=box.SIMPLE)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    if d.get("transport"):
        table.add_row("transport", escape(d["transport"]))
    if d.get("error") or d.get("hint"):
        table.add_row("[red]error[/]" if d.get("error") else "[yellow]to do[/]",
                      escape(d.get("error") or d["hint"]))
        console.print(table)
        return
    ghz = lambda khz: f"{khz / 1e6:.2f} GHz" if khz else "? GHz"  # noqa: E731
    table.add_row("model", f"{d.get('manufacturer') or ''} {d.get('model') or '-'}".strip())
    table.add_row("SoC", " / ".join(filter(None, [d.get("soc"), d.get("board")])) or "-")
    table.add_row("Android", f"{d.get('android') or '?'} (SDK {d.get('sdk') or '?'}), "
                             f"{d.get('abi') or '?'}")
    table.add_row("cores", "\n".join(
        f"cpu{_cpu_range(c['cpus'])}: {len(c['cpus'])}x {c['core_type'] or '?'} "
        f"{ghz(c['max_khz'])}" for c in d["clusters"]))
    table.add_row("bench pins", escape(f"cpu{d['pin_core']}: {d['pin_reason']}"))
    hot, battery = d["hottest_zone"], d["battery_c"]
    table.add_row("temperatures", ", ".join(filter(None, [
        f"hottest zone {hot['celsius']:.1f} °C ({escape(hot['zone'])})" if hot else None,
        f"battery {battery:.1f} °C" if battery is not None else None])) or "-")
    free = d["free_bytes"]
    table.add_row("free space", f"{free / 2**30:.1f} GiB in /data/local/tmp"
                  if free is not None else "-")
    profile = d["profile"]
    if profile is None:
        table.add_row("profile", "none matches: add one under devices/ (devices/README.md)")
    elif d["mismatches"]:
        table.add_row("profile", f"{profile['name']} ({profile['file']}), but:\n" + "\n".join(
            f"[yellow]- {escape(m)}[/]" for m in d["mismatches"]))
    else:
        table.add_row("profile", f"{profile['name']} ({profile['file']}): matches the probe")
    console.print(table)


def _cpu_range(cpus: list[int]) -> str:
    return f"{cpus[0]}-{cpus[-1]}" if len(cpus) > 1 else str(cpus[0])
