"""The phones within reach, each probed: what ``seaformer-deploy devices`` lists.

The adb server's devices (it is asked, never started) and any serial reached directly; each
record holds the probe (model, SoC, Android, cores), the core a bench would pin, temperatures,
free space and the matching device profile. A device that cannot be probed gets an ``error``
(or, when the server lists it in a state adb cannot use, a ``hint``), so the others still show.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path

from ..errors import UserError

TMP = "/data/local/tmp"


@dataclass
class Listing:
    server: dict                     # address, running and (when running) version
    devices: list[dict] = field(default_factory=list)
    # The UserError behind a record's ``error`` (by position), which names options as fields:
    # ``to_dict(name)`` spells them again, as the command line's flags for instance.
    errors: dict[int, UserError] = field(default_factory=dict, repr=False)

    @property
    def failed(self) -> bool:
        """A device that should answer (listed ready, or asked for directly) could not be
        probed."""
        return any(d.get("error") for d in self.devices)

    def add(self, record: dict) -> None:
        """Append a record; an ``error`` that is a UserError is kept and shown as its text."""
        if isinstance(record.get("error"), UserError):
            self.errors[len(self.devices)] = record["error"]
            record = record | {"error": str(record["error"])}
        self.devices.append(record)

    def to_dict(self, name: Callable[[str], str] = str) -> dict:
        """The server and the records; the options an error names are spelled by ``name``
        (default: the field, as ``UserError.render``)."""
        devices = [d | {"error": self.errors[i].render(name)} if i in self.errors else d
                   for i, d in enumerate(self.devices)]
        return {"server": self.server, "devices": devices}


def survey(direct: list[str], profiles: Path | None = None) -> Listing:
    """The adb server's devices, then each of ``direct`` (adb-shell, no server), probed."""
    from .adb_server import AdbServer, server_address
    from .profiles import load_profiles

    known = load_profiles(profiles)
    server = AdbServer(*server_address())
    listing = Listing({"address": server.address, "running": server.running()})
    if listing.server["running"]:
        listing.server["version"] = server.version()
        for listed in server.devices():
            entry = {"serial": listed.serial, "state": listed.state, "via": "adb server",
                     "model": listed.model}
            listing.add(entry | (describe(listed.serial, "server", known)
                                 if listed.state == "device" else {"hint": state_hint(listed)}))
    for serial in direct:
        entry = {"serial": serial, "state": "device", "via": "direct"}
        listing.add(entry | describe(serial, "direct", known))
    return listing


def state_hint(listed: object) -> str:
    """What to do about a device the server lists but cannot use."""
    from .adb_link import unauthorized_message

    if listed.state == "unauthorized":
        return unauthorized_message(listed.serial)
    if listed.state == "offline":
        return (f"{listed.serial} is offline: check the cable or network, then "
                f"`adb reconnect`; it may just be booting.")
    return f"{listed.serial} is in state {listed.state!r}, not ready for adb commands."


def describe(serial: str, transport: str, profiles: list) -> dict:
    """Probe one device; a failure becomes the record's error (the UserError itself:
    ``Listing.add`` keeps it and records its text)."""
    from .choice import device_profile, pick_core
    from .adb import AdbDevice

    try:
        dev = AdbDevice(serial, transport=transport)
    except UserError as exc:
        return {"state": "unreachable", "error": exc}
    try:
        info, state = dev.probe(), dev.state()
        profile = device_profile(info, profiles)
        choice = pick_core(dev, info, None, profile)
        free = dev.free_bytes(TMP)
    except UserError as exc:
        return {"transport": dev.transport, "error": exc}
    finally:
        dev.close()
    props = info.properties
    hottest = max(state.thermal_c.items(), key=lambda kv: kv[1], default=None)
    return {
        "transport": dev.transport, "model": props.get("model"),
        "manufacturer": props.get("manufacturer"), "soc": props.get("soc"),
        "board": props.get("board"), "android": props.get("android"), "sdk": props.get("sdk"),
        "abi": props.get("abi"), "clusters": clusters(info.topology),
        "pin_core": choice.core, "pin_reason": choice.reason,
        "hottest_zone": {"zone": hottest[0].partition(":")[2] or hottest[0],
                         "celsius": hottest[1]} if hottest else None,
        "battery_c": state.battery_c, "free_bytes": free,
        "profile": {k: v for k, v in profile.items() if k != "mismatches"} if profile else None,
        "mismatches": profile["mismatches"] if profile else [],
    }


def clusters(topology: object) -> list[dict]:
    """Consecutive cores of one cluster, max frequency and core type, as one group."""
    return [{"cpus": [c.index for c in group], "core_type": key[2], "max_khz": key[1]}
            for key, group in groupby(topology.cores,
                                      lambda c: (c.cluster, c.max_khz, c.core_type))]
