"""Checks shared by the bench tests on the ADB test device."""

from __future__ import annotations

import re

from devices.adb_testdevice import AdbTestDevice

# What mksh and toybox say when a command or a flag does not exist.
TOOL_FAILURES = re.compile(r"not found|inaccessible|Unknown option|unrecognized option|"
                           r"invalid option|applet not found|usage: ", re.I)


def assert_commands_ran_clean(device: AdbTestDevice) -> None:
    """Every command the product sent ran under mksh + toybox without a missing tool or flag.
    Probe reads of files a phone may hide (thermal zones) are expected to be skipped, not
    to fail, so they do not show here either."""
    log = device.command_log()
    assert log, "the device logged no command"
    bad = [(c.command[:160], c.text()[-300:]) for c in log if TOOL_FAILURES.search(c.text())]
    assert bad == []
