"""Bench devices: where artifacts run. ``local`` (this machine) is the default."""

from __future__ import annotations

from ..errors import UserError
from .base import CommandResult, Device, DeviceInfo
from .local import LocalDevice

__all__ = ["CommandResult", "Device", "DeviceInfo", "LocalDevice", "get_device"]


def get_device(spec: str | None, runner_target: str | None = None,
               transport: str = "auto") -> Device:
    """``None`` or ``local`` -> this machine; anything else is an adb serial (or HOST:PORT).

    ``runner_target`` overrides the native runner build a phone gets (``android-arm64``):
    ``linux-arm64`` for ARM64 Linux boards and the test device. ``transport``: how to reach a
    phone (``auto``: the adb server when it lists the serial, else adb-shell directly)."""
    if spec in (None, "", "local"):
        if runner_target not in (None, "host"):
            raise UserError(f"--runner-target {runner_target} is for adb devices; the local "
                            f"device runs the host runner.")
        return LocalDevice()
    from .adb import AdbDevice

    return AdbDevice(spec, runner_target=runner_target or "android-arm64", transport=transport)
