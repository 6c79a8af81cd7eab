"""Bench devices: where artifacts run. ``local`` (this machine) is the default."""

from __future__ import annotations

from ..errors import UserError
from .base import CommandResult, Device, DeviceInfo
from .local import LocalDevice

__all__ = ["CommandResult", "Device", "DeviceInfo", "LocalDevice", "get_device"]


def get_device(spec: str | None) -> Device:
    """``None`` or ``local`` -> this machine; anything else names a phone (adb)."""
    if spec in (None, "", "local"):
        return LocalDevice()
    raise UserError(f"device {spec!r}: only the local device is available in this build "
                    f"(adb devices are not implemented yet); run without --device.")
