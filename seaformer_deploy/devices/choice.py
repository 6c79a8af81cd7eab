"""Which known phone a probe is, and which core to time on: shared by the bench, the A/B gate
and ``seaformer-deploy devices``."""

from __future__ import annotations

from dataclasses import replace

from .base import Device, DeviceInfo
from .probe import CoreChoice
from .profiles import Profile, check_profile, load_profiles, match_profile


def device_profile(info: DeviceInfo, profiles: list[Profile] | None = None) -> dict | None:
    """The known-phone profile matching the probe, with the disagreements (None: unknown).

    Args:
        info: the device's probe.
        profiles: the profiles to match against (default: every installed one).

    Returns:
        The profile's record plus ``mismatches`` (what the probe contradicts), or None."""
    found = match_profile(info.properties, load_profiles() if profiles is None else profiles)
    if found is None:
        return None
    return {**found.to_dict(), "mismatches": check_profile(found, info)}


def pick_core(device: Device, info: DeviceInfo, requested: int | None,
              profile: dict | None) -> CoreChoice:
    """The requested core, else the profile's core when it is online, else the fastest core.

    Args:
        device: the device whose rules choose (and check) the core.
        info: its probe.
        requested: the core the user asked for, or None.
        profile: the matching profile record (``device_profile``), or None.

    Returns:
        The core and the reason it was chosen."""
    online = {c.index for c in info.topology.cores}
    by_profile = profile["pin_core"] if profile and profile["pin_core"] in online else None
    choice = device.choose_core(info, requested if requested is not None else by_profile)
    if requested is None and by_profile is not None:
        choice = replace(choice, reason=f"{profile['name']} profile ({profile['file']})")
    return choice
