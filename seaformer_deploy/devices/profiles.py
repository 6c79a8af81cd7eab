"""Device profiles: what a known phone should look like (``devices/*.toml``, see its README).

The profiles come from two places, a user's file replacing a shipped one of the same file name:
the ones that ship with the package (the repository's ``devices/``, mapped into the wheel as the
package ``seaformer_deploy.profiles``) and the user's folder,
``$XDG_CONFIG_HOME/seaformer-deploy/devices`` (default ``~/.config/seaformer-deploy/devices``).

A profile names the phone, the properties that identify it, its SoC and CPU clusters, the core
to pin and the runner build it needs. ``check_profile`` compares it with a probe, so a phone in
a power-saving mode, with cores offline or capped, or simply not the phone we think, is noticed
before its numbers are trusted.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

from ..errors import UserError
from .base import DeviceInfo
from .probe import choose_core

# The keys of AdbDevice.properties(), which `match` may name.
PROPERTY_KEYS = ("model", "manufacturer", "soc", "board", "android", "sdk", "abi", "os_build")
RUNNER_TARGETS = ("android-arm64", "android-x86_64", "linux-arm64")
FIELDS = {"name", "match", "soc", "board", "abi", "clusters", "pin_core", "runner_target",
          "notes"}
# Kryo 4xx (Snapdragon 855) cores report Qualcomm's own part numbers, not ARM's (Linux
# arch/arm64/include/asm/cputype.h: QCOM_CPU_PART_KRYO_4XX_GOLD / _SILVER); they are built on
# Cortex-A76 and Cortex-A55, which is what profiles name.
PART_ALIASES = {"0x804": "Cortex-A76", "0x805": "Cortex-A55"}
# The repository's devices/ inside a wheel (setup.py maps it there).
SHIPPED_PACKAGE = "seaformer_deploy.profiles"


class ProfileError(UserError):
    pass


@dataclass
class Cluster:
    cpus: list[int]
    core_type: str
    max_khz: int


@dataclass
class Profile:
    name: str
    path: Path
    match: dict[str, list[str]]
    soc: str
    clusters: list[Cluster]
    pin_core: int
    runner_target: str = "android-arm64"
    board: str | None = None
    abi: str | None = None
    notes: str = ""
    cpus: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.cpus = sorted(c for cluster in self.clusters for c in cluster.cpus)

    def to_dict(self) -> dict:
        return {"name": self.name, "file": self.path.name, "soc": self.soc,
                "pin_core": self.pin_core, "runner_target": self.runner_target}


def profiles_folder() -> Path | None:
    """The folder of the profiles that ship with the package, None if there is none.

    Imported from a source tree (``pip install -e .``, or the checkout on ``PYTHONPATH``):
    that tree's ``devices/``. It comes first: an editable install made before the mapping
    existed maps the package nowhere, one made from another checkout maps it there.
    Installed from a wheel: the package ``seaformer_deploy.profiles`` the build mapped it to."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and _holds_profiles(root / "devices"):
        return root / "devices"
    spec = find_spec(SHIPPED_PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec else []:
        if _holds_profiles(Path(location)):
            return Path(location)
    return None


def user_profiles_folder() -> Path:
    """``$XDG_CONFIG_HOME/seaformer-deploy/devices``; ``~/.config`` when the variable is unset
    or not absolute (as the XDG base directory spec says)."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    config = Path(base) if os.path.isabs(base) else Path.home() / ".config"
    return config / "seaformer-deploy" / "devices"


def _holds_profiles(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.toml"))


def load_profiles(folder: Path | None = None) -> list[Profile]:
    """Every ``*.toml`` in ``folder``, sorted by file name. Without a folder: the shipped
    profiles and the user's (``user_profiles_folder()``), a user's file replacing the shipped
    one of the same file name."""
    if folder is not None:
        folder = Path(folder)
        if not folder.is_dir():
            raise ProfileError(f"device profiles folder {folder} does not exist; pass the "
                               f"folder that holds the *.toml profiles (such as the "
                               f"repository's devices/).")
        return [load_profile(path) for path in _toml_files(folder)]
    files = {path.name: path for path in _toml_files(profiles_folder())}
    user = user_profiles_folder()
    if user.exists() and not user.is_dir():
        raise ProfileError(f"{user} is not a folder; it should hold your own device profiles "
                           f"(*.toml). Remove or rename the file.")
    files |= {path.name: path for path in _toml_files(user)}
    return [load_profile(files[name]) for name in sorted(files)]


def _toml_files(folder: Path | None) -> list[Path]:
    return sorted(folder.glob("*.toml")) if folder is not None and folder.is_dir() else []


def load_profile(path: Path) -> Profile:
    def bad(what: str) -> ProfileError:
        return ProfileError(f"device profile {path}: {what}; see devices/README.md for the "
                            f"format.")

    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise bad(f"not valid TOML ({exc})") from None
    if unknown := sorted(set(data) - FIELDS):
        raise bad(f"unknown field(s) {', '.join(unknown)} (expected: {', '.join(sorted(FIELDS))})")
    for key in ("name", "soc"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise bad(f"`{key}` must be a non-empty string")
    for key in ("board", "abi", "notes"):
        if not isinstance(data.get(key, ""), str):
            raise bad(f"`{key}` must be a string")
    clusters = [_cluster(c, i, bad) for i, c in enumerate(_list(data, "clusters", bad))]
    cpus = [c for cluster in clusters for c in cluster.cpus]
    if len(cpus) != len(set(cpus)):
        raise bad(f"a cpu appears in two clusters ({cpus})")
    pin = data.get("pin_core")
    if not isinstance(pin, int) or pin not in cpus:
        raise bad(f"`pin_core` must be one of the clusters' cpus {sorted(cpus)}, not {pin!r}")
    target = data.get("runner_target", "android-arm64")
    if target not in RUNNER_TARGETS:
        raise bad(f"`runner_target` {target!r} is not one of {', '.join(RUNNER_TARGETS)}")
    return Profile(data["name"], Path(path), _match(data.get("match"), bad), data["soc"],
                   clusters, pin, target, data.get("board"), data.get("abi"),
                   data.get("notes", "").strip())


def _list(data: dict, key: str, bad) -> list:
    value = data.get(key)
    if not isinstance(value, list) or not value:
        raise bad(f"`{key}` must be a non-empty list ([[{key}]] tables)")
    return value


def _cluster(table: object, index: int, bad) -> Cluster:
    where = f"clusters[{index}]"
    if not isinstance(table, dict) or set(table) != {"cpus", "core_type", "max_khz"}:
        raise bad(f"{where} must have exactly cpus, core_type and max_khz")
    cpus, core_type, khz = table["cpus"], table["core_type"], table["max_khz"]
    if not isinstance(cpus, list) or not cpus or not all(
            isinstance(c, int) and c >= 0 for c in cpus):
        raise bad(f"{where}.cpus must be a non-empty list of cpu numbers, not {cpus!r}")
    if not isinstance(core_type, str) or not core_type:
        raise bad(f"{where}.core_type must be a string such as \"Cortex-A77\"")
    if not isinstance(khz, int) or khz <= 0:
        raise bad(f"{where}.max_khz must be a positive integer in kHz (cpuinfo_max_freq), "
                  f"not {khz!r}")
    return Cluster(cpus, core_type, khz)


def _match(table: object, bad) -> dict[str, list[str]]:
    if not isinstance(table, dict) or not table:
        raise bad(f"`match` must be a table of property = value(s), with keys among "
                  f"{', '.join(PROPERTY_KEYS)}")
    match = {}
    for key, values in table.items():
        if key not in PROPERTY_KEYS:
            raise bad(f"match.{key} is not a device property (expected one of "
                      f"{', '.join(PROPERTY_KEYS)})")
        values = [values] if isinstance(values, str) else values
        if not isinstance(values, list) or not values or not all(
                isinstance(v, str) for v in values):
            raise bad(f"match.{key} must be a string or a list of strings")
        match[key] = values
    return match


def match_profile(properties: dict[str, str], profiles: list[Profile]) -> Profile | None:
    """The profile all of whose ``match`` keys agree with the device (case-insensitive; any
    listed value will do); the most specific (most keys) wins."""
    def agrees(profile: Profile) -> bool:
        return all(properties.get(key, "").strip().lower() in {v.lower() for v in values}
                   for key, values in profile.match.items())

    found = [p for p in profiles if agrees(p)]
    return max(found, key=lambda p: len(p.match), default=None)


def check_profile(profile: Profile, info: DeviceInfo) -> list[str]:
    """Where the probe disagrees with the profile, one sentence each; empty when it agrees."""
    props, cores = info.properties, {c.index: c for c in info.topology.cores}
    problems = []
    if props.get("soc") and props["soc"].lower() != profile.soc.lower():
        problems.append(f"SoC {props['soc']}, the profile says {profile.soc}")
    if profile.board and props.get("board") and props["board"] != profile.board:
        problems.append(f"board platform {props['board']}, the profile says {profile.board}")
    if profile.abi and props.get("abi") and props["abi"] != profile.abi:
        problems.append(f"ABI {props['abi']}, the profile says {profile.abi}")
    if sorted(cores) != profile.cpus:
        problems.append(f"online cpus {_cpus(sorted(cores))}, the profile has "
                        f"{_cpus(profile.cpus)} (cores offline: power saving or thermal "
                        f"hotplug?)")
    for cluster in profile.clusters:
        present = [cores[c] for c in cluster.cpus if c in cores]
        slow = [c for c in present if c.max_khz is not None and c.max_khz != cluster.max_khz]
        if slow:
            found = ", ".join(sorted({f"{c.max_khz} kHz" for c in slow}))
            problems.append(f"cpu {_cpus([c.index for c in slow])}: max frequency {found}, "
                            f"the profile says {cluster.max_khz} kHz (capped?)")
        other = [c for c in present if c.core_type and
                 PART_ALIASES.get(c.core_type, c.core_type) != cluster.core_type]
        if other:
            found = ", ".join(sorted({c.core_type for c in other}))
            problems.append(f"cpu {_cpus([c.index for c in other])}: core type {found}, the "
                            f"profile says {cluster.core_type}")
    if cores:
        chosen = choose_core(info.topology).core
        if chosen != profile.pin_core:
            problems.append(f"the probe would pin cpu{chosen}, the profile says "
                            f"cpu{profile.pin_core}")
    return problems


def _cpus(cpus: list[int]) -> str:
    """[0, 1, 2, 3, 7] -> "0-3,7"."""
    runs: list[list[int]] = []
    for c in sorted(cpus):
        if runs and c == runs[-1][-1] + 1:
            runs[-1].append(c)
        else:
            runs.append([c])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs) or "none"
