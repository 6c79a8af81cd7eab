"""What must match for two latency measurements to be comparable: a device fingerprint."""

from __future__ import annotations

import hashlib
import json

from .base import DeviceInfo


def device_fingerprint(info: DeviceInfo, core_index: int, state: dict,
                       runners: dict[str, dict]) -> dict:
    """SoC and device model, OS build, the pinned core (type, top frequency, governor) and the
    runtime versions, with a short digest of them all.

    Args:
        info: the device's probe.
        core_index: the core the measurements were pinned to.
        state: a device state record (``DeviceState.to_dict()``) taken while measuring.
        runners: each format's runner identity (its ``runtime_version`` is recorded).

    Returns:
        ``{"fields": {...}, "digest": 16 hex digits}``."""
    topo = info.topology
    core = topo.core(core_index)
    fields = {
        "kind": info.kind, "cpu_model": topo.cpu_model,
        "device_model": info.properties.get("model"),
        "os": info.properties.get("os_build") or info.properties.get("os"),
        "core": core_index, "core_type": core.core_type if core else None,
        "core_max_khz": core.max_khz if core else None,
        "governor": (state.get("governors") or {}).get(str(core_index)),
        "runtimes": {f: r.get("runtime_version") for f, r in runners.items()},
    }
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
    return {"fields": fields, "digest": digest}
