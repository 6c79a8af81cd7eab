"""Fixtures for the ADB test device: a host key pair, a running, authorizing device, and an
isolated real adb server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def free_port() -> int:
    """A TCP port nothing listens on (free at the time of asking): no adb server there."""
    return _free_port()


class RealAdb:
    """Debian's adb client, bound to one isolated server: ``real_adb("devices")`` runs
    ``adb devices`` against it. ``port`` and ``env`` say where that server is."""

    def __init__(self, home, tmp) -> None:
        self.port = _free_port()
        self.env = {"HOME": str(home), "PATH": os.environ["PATH"],
                    "ANDROID_ADB_SERVER_PORT": str(self.port), "TMPDIR": str(tmp)}

    def __call__(self, *args, timeout=30) -> subprocess.CompletedProcess:
        return subprocess.run(["adb", *args], env=self.env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout, check=False)


@pytest.fixture
def real_adb(tmp_path, adb_key):
    """An isolated adb server (own port, own HOME with our adbkey); killed afterwards."""
    if not shutil.which("adb"):
        if os.environ.get("SEAFORMER_REQUIRE_ADB") == "1":
            pytest.fail("SEAFORMER_REQUIRE_ADB=1 but no adb on PATH (apt-get install adb)")
        pytest.skip("Debian's adb is not installed (apt-get install adb)")
    android = tmp_path / "home/.android"
    android.mkdir(parents=True)
    shutil.copy(adb_key[0], android / "adbkey")
    (android / "adbkey.pub").write_text(adb_key[1])
    run = RealAdb(tmp_path / "home", tmp_path)
    run("start-server")
    yield run
    run("kill-server")


@pytest.fixture(scope="session")
def export_128(tmp_path_factory):
    """SeaFormer-T 128x128 exported as `bench --variant T --input-size 128x128` does it (all
    formats and precisions), once per session, so that the acceptance command finds it in its
    cache. The other benches over adb run the 64x64 FP32 .pte files (``tiny_pte_export``):
    emulated ARM64 runs them in a quarter of the time, and no fault or phone quirk depends on
    the input size."""
    from seaformer_deploy.export.pipeline import ExportOptions, export

    return export(ExportOptions(model="seaformer-t", input_size=(128, 128),
                                out_root=tmp_path_factory.mktemp("m")))


@pytest.fixture
def arm64_exec():
    """Skip (or, with SEAFORMER_REQUIRE_ARM64=1 as in CI, fail) when the test device cannot run
    ARM64 programs: qemu-aarch64-static, the aarch64 cross toolchain and a host C compiler."""
    from devices.adbtd_sandbox import elf_exec_supported

    if not elf_exec_supported():
        if os.environ.get("SEAFORMER_REQUIRE_ARM64") == "1":
            pytest.fail("SEAFORMER_REQUIRE_ARM64=1 but the test device cannot run ARM64 code")
        pytest.skip("needs qemu-aarch64-static, the aarch64 cross toolchain and a host C "
                    "compiler")
