"""Runner bundles: a folder that starts anywhere its CPU is, with nothing from the system.

Each bundle is copied alone to an empty folder and started there with an empty environment:
the aarch64 one under qemu with a sysroot that holds nothing (``-L`` an empty folder), so
neither the cross packages nor anything else of this machine's can stand in for a file the
bundle lacks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from seaformer_deploy.errors import UserError
from seaformer_deploy.runners import bundle
from seaformer_deploy.runners.native import build_runner, load_prebuilt

QEMU = shutil.which("qemu-aarch64-static")


def _version(folder, prefix=()) -> subprocess.CompletedProcess:
    description = json.loads((folder / "runner.json").read_text())
    argv = description["command"].replace(" PLAN RESULT", "").split()
    return subprocess.run([*prefix, *argv, "--version"], cwd=folder, env={},
                          capture_output=True, text=True, timeout=300)


def _copy_alone(build, tmp_path):
    folder = tmp_path / "copied"
    shutil.copytree(build.folder, folder)
    return folder


def test_x86_64_bundle_runs_from_a_copied_folder(tmp_path):
    build = build_runner("android-x86_64")
    assert (build.launch.mode, build.abi) == ("bundled-loader", "x86_64")
    folder = _copy_alone(build, tmp_path)
    proc = _version(folder)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["runtime"] == "executorch"
    names = set(json.loads((folder / "runner.json").read_text())["files"])
    assert {"seaformer-runner", "lib/ld-linux-x86-64.so.2", "lib/libc.so.6", "lib/libm.so.6",
            "lib/libstdc++.so.6", "lib/libgcc_s.so.1", "lib/libexecutorch.so"} <= names


@pytest.mark.skipif(QEMU is None and not os.environ.get("SEAFORMER_REQUIRE_ARM64"),
                    reason="needs qemu-user-static and g++-aarch64-linux-gnu")
def test_arm64_bundle_runs_with_an_empty_sysroot(tmp_path):
    build = build_runner("android-arm64")
    assert (build.launch.mode, build.abi, build.toolchain) == (
        "bundled-loader", "arm64-v8a", "glibc (bundled)")
    assert bundle.elf_interpreter(build.binary) == "/lib/ld-linux-aarch64.so.1"
    assert bundle.elf_interpreter(build.folder / build.launch.loader) is None   # static
    folder = _copy_alone(build, tmp_path)
    empty = tmp_path / "empty-sysroot"
    empty.mkdir()
    proc = _version(folder, ["qemu-aarch64-static", "-L", str(empty)])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["runtime_version"].startswith("1.5.1")
    # The program alone, as a phone's kernel would start it: its interpreter is missing.
    alone = subprocess.run(["qemu-aarch64-static", "-L", str(empty),
                            str(folder / "seaformer-runner"), "--version"],
                           capture_output=True, text=True, timeout=60, env={})
    assert alone.returncode != 0 and "ld-linux-aarch64.so.1" in alone.stderr
    # And a bundle that lost a library says which.
    (folder / "lib" / "libstdc++.so.6").unlink()
    broken = _version(folder, ["qemu-aarch64-static", "-L", str(empty)])
    assert broken.returncode != 0 and "libstdc++.so.6" in broken.stderr


def test_cached_bundle_is_reused_and_a_tampered_copy_is_refused(tmp_path):
    first = build_runner("android-x86_64")
    again = build_runner("android-x86_64")
    assert again.folder == first.folder and again.digest == first.digest
    folder = _copy_alone(first, tmp_path)
    assert load_prebuilt(folder).files.keys() == first.files.keys()
    lib = folder / "lib" / "libexecutorch.so"
    data = bytearray(lib.read_bytes())
    data[len(data) // 2] ^= 0xFF
    lib.write_bytes(bytes(data))
    with pytest.raises(UserError, match="lib/libexecutorch.so is missing or differs"):
        load_prebuilt(folder)
    with pytest.raises(UserError, match="not a runner folder"):
        load_prebuilt(tmp_path)


def test_launch_command_uses_each_files_device_location():
    launch = bundle.Launch("bundled-loader", "seaformer-runner", "lib/ld.so", ("lib",))
    where = {"seaformer-runner": "/cas/a/seaformer-runner", "lib/ld.so": "/cas/b/ld.so",
             "lib/libc.so.6": "/cas/c/libc.so.6"}
    argv, env = launch.argv(where)
    assert argv == ["/cas/b/ld.so", "--library-path", "/cas/b:/cas/c", "--inhibit-cache",
                    "/cas/a/seaformer-runner"] and env == {}
    direct = bundle.Launch("direct", "seaformer-runner", None, ("lib",))
    assert direct.argv(where) == (["/cas/a/seaformer-runner"],
                                  {"LD_LIBRARY_PATH": "/cas/b:/cas/c"})


def test_missing_library_names_it_and_who_needs_it(tmp_path):
    build = build_runner("host")
    with pytest.raises(UserError, match="seaformer-runner needs libexecutorch.so"):
        bundle.closure(build.binary, [tmp_path])
