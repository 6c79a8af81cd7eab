"""The device interface every bench target implements (the local host, a phone over adb)."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path

from ..export import formats as fmts
from .probe import (PROBE_SCRIPT, CoreChoice, DeviceState, Topology, choose_core, device_state,
                    parse_snapshot, topology)


@dataclass
class DeviceInfo:
    """What a probe found: identity, CPU topology, platform facts."""

    name: str
    kind: str
    transport: str
    topology: Topology
    properties: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "transport": self.transport,
                "topology": self.topology.to_dict(), "properties": self.properties}


@dataclass
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


class Device(abc.ABC):
    """Where artifacts run. Subclasses move files and run commands; probing is shared."""

    kind: str
    name: str
    transport: str

    @property
    def formats(self) -> tuple[str, ...]:
        """Artifact formats this device can run: those whose bench runner runs on its kind."""
        return fmts.runnable_on(self.kind)

    @abc.abstractmethod
    def shell(self, script: str, timeout: float | None = 60) -> CommandResult:
        """Run a POSIX shell script on the device."""

    @abc.abstractmethod
    def stage(self, files: list[Path]) -> dict[Path, str]:
        """Make local files available on the device; return where each one is there."""

    @abc.abstractmethod
    def run(self, argv: list[str], timeout: float | None, cwd: str | None = None,
            env: dict[str, str] | None = None) -> CommandResult:
        """Run a program on the device (in ``cwd``, a device folder, with ``env`` added to its
        environment) and wait for it."""

    @abc.abstractmethod
    def fetch(self, device_path: str, local: Path) -> None:
        """Copy a file from the device to ``local``."""

    @abc.abstractmethod
    def workdir(self) -> str:
        """A scratch folder on the device for plans, results and outputs."""

    @abc.abstractmethod
    def write_text(self, device_path: str, text: str) -> None:
        """Create a small text file on the device (plans)."""

    @abc.abstractmethod
    def read_text(self, device_path: str) -> str:
        """Read a small text file from the device (results)."""

    @abc.abstractmethod
    def cleanup(self) -> None:
        """Remove what this session left on the device."""

    def properties(self) -> dict[str, str]:
        """Platform facts beyond sysfs (OS, model, SoC); empty by default."""
        return {}

    # Robustness hooks; the defaults suit a device that cannot disconnect.
    def acquire_lock(self, wait: float = 0.0) -> None:
        """Keep other benches off this device until ``release_lock``."""

    def release_lock(self) -> None:
        pass

    def reconnect(self) -> str:
        """Reopen a lost connection; returns what happened, for the report's events."""
        return "nothing to reconnect"

    def kill_session(self) -> None:
        """Stop whatever this session still runs on the device."""

    def remove_cache(self) -> None:
        """Delete cached files the device keeps across sessions."""

    def close(self) -> None:
        pass

    def snapshot(self) -> dict[str, str]:
        result = self.shell(PROBE_SCRIPT)
        return parse_snapshot(result.stdout)

    def probe(self) -> DeviceInfo:
        return DeviceInfo(self.name, self.kind, self.transport, topology(self.snapshot()),
                          self.properties())

    def state(self) -> DeviceState:
        return device_state(self.snapshot())

    def choose_core(self, info: DeviceInfo, requested: int | None = None) -> CoreChoice:
        return choose_core(info.topology, requested)
