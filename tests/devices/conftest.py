"""Fixtures for the ADB test device: a host key pair and a running, authorizing device."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def adb_key(tmp_path_factory):
    """(private key path, adbkey.pub text), generated once per session like adb does."""
    from adb_shell.auth.keygen import keygen

    path = tmp_path_factory.mktemp("adbkey") / "adbkey"
    keygen(str(path))
    return path, path.with_name("adbkey.pub").read_text()


@pytest.fixture
def adb_testdevice(adb_key):
    """A started test device (SD865 profile) that trusts ``adb_key``."""
    from devices.adb_testdevice import AdbTestDevice

    with AdbTestDevice(authorized_keys=[adb_key[1]]) as device:
        yield device
