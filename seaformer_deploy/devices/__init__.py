"""Bench devices: where artifacts run. ``local`` (this machine) is the default."""

from __future__ import annotations

import os

from ..errors import OptionError, option
from .base import CommandResult, Device, DeviceInfo
from .choice import device_profile, pick_core
from .fingerprint import device_fingerprint
from .local import LocalDevice

__all__ = ["CommandResult", "Device", "DeviceInfo", "LocalDevice", "device_fingerprint",
           "device_profile", "get_device", "pick_core"]


def get_device(spec: str | None, transport: str = "auto") -> Device:
    """``local`` (or ``None`` with no ``ANDROID_SERIAL``) -> this machine; ``adb`` -> the
    only phone the adb server lists; anything else is an adb serial (or HOST:PORT).

    ``transport``: how to reach a phone (``auto``: the adb server when it lists the serial,
    else adb-shell directly). Which runner build a device gets is decided from its probe
    (``runners.session``)."""
    if spec is None and os.environ.get("ANDROID_SERIAL"):
        spec = os.environ["ANDROID_SERIAL"]      # adb's own default: a phone, never the host
    if spec is None or spec == "local":
        return LocalDevice()
    if not spec.strip():
        raise OptionError(f"{option('device')} is empty: pass a phone's adb serial (or "
                          f"HOST:PORT), `adb` for the only attached phone, or `local` for this "
                          f"machine.")
    from .adb import AdbDevice

    return AdbDevice(None if spec == "adb" else spec, transport=transport)
