"""AdbDevice (adb-shell) against the protocol-faithful test device: commands, quoting, staging,
errors a user can act on, and a whole bench over adb with the ARM64 runner under qemu."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from devices.phone_checks import assert_commands_ran_clean
from seaformer_deploy.bench.run import BenchOptions, bench
from seaformer_deploy.cli import app
from seaformer_deploy.cli.common import flag
from seaformer_deploy.devices import get_device
from seaformer_deploy.devices.adb import ROOT, AdbDevice, AdbError
from seaformer_deploy.reports import build_report
from seaformer_deploy.runners.plan import Protocol
from seaformer_deploy.runners.session import RunnerChoice, RunnerError

HOSTILE = ["sp ace", "qu'ote", 'dq"uote', "semi;colon", "$(touch pwned)", "back`tick`",
           "new\nline"]


@pytest.fixture
def android_home(adb_key, monkeypatch):
    """Point AdbDevice at the session's key, as ~/.android would."""
    monkeypatch.setenv("ANDROID_USER_HOME", str(adb_key[0].parent))
    return adb_key[0].parent


@pytest.fixture
def phone(adb_testdevice, android_home):
    return AdbDevice(adb_testdevice.serial, timeout=5)


def test_shell_returns_stdout_stderr_and_status_apart(phone):
    result = phone.shell("echo out; echo err >&2; exit 7")
    assert (result.returncode, result.stdout, result.stderr) == (7, "out\n", "err\n")
    assert phone.shell("printf 'no newline'").stdout == "no newline"


def test_a_socket_numbered_past_1024_still_works(adb_testdevice, android_home):
    """select() refuses file descriptors >= 1024; a host process with many files open must
    still reach the phone (this failed a whole CI run once the suite had leaked that many)."""
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"this machine allows only {hard} open files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    filler = []
    try:
        while not filler or filler[-1] < 1030:      # descriptors are allocated lowest first
            filler.append(os.open(os.devnull, os.O_RDONLY))
        phone = AdbDevice(adb_testdevice.serial, timeout=5)
        assert phone.shell("echo far").stdout == "far\n"
        phone.close()
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_probe_finds_the_snapdragon_865_and_picks_the_prime_core(phone):
    info = phone.probe()
    assert info.properties["soc"] == "SM8250" and info.properties["abi"] == "arm64-v8a"
    assert [c.max_khz for c in info.topology.cores] == [1804800] * 4 + [2419200] * 3 + [2841600]
    assert phone.choose_core(info).core == 7
    assert phone.transport == "adb-shell over TCP (no adb server)"


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_file_names_are_quoted_everywhere(phone, adb_testdevice, tmp_path, name):
    local = tmp_path / f"{name}.bin"
    local.write_bytes(os.urandom(4096))
    remote = phone.stage([local])[local]
    assert remote.startswith(f"{ROOT}/cas/") and remote.endswith(f"/{name}.bin")
    phone.fetch(remote, tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == local.read_bytes()
    phone.write_text(f"{phone.workdir()}/{name}.txt", "plan\n")
    assert phone.read_text(f"{phone.workdir()}/{name}.txt") == "plan\n"
    assert phone.run(["echo", name], timeout=10).stdout == f"{name}\n"
    assert not list(adb_testdevice.root.rglob("pwned"))


def test_hung_command_is_a_clear_error(phone, adb_testdevice):
    adb_testdevice.faults.hang_commands.append(r"sleepy")
    with pytest.raises(AdbError, match="no answer within 2 s"):
        phone.shell("echo sleepy", timeout=2)


def test_staging_is_content_addressed_and_skips_what_is_there(phone, tmp_path, monkeypatch):
    a, b = tmp_path / "a.pte", tmp_path / "b.pte"
    a.write_bytes(b"A" * 1000)
    b.write_bytes(b"B" * 1000)
    first = phone.stage([a, b])
    pushed = []
    monkeypatch.setattr(phone, "_push", lambda local, remote: pushed.append(local))
    assert phone.stage([a, b]) == first and pushed == []
    a.write_bytes(b"C" * 1000)
    assert phone.stage([a, b])[a] != first[a] and pushed == [a]


def test_full_storage_is_a_clear_error_before_pushing(phone, adb_testdevice, tmp_path):
    adb_testdevice.faults.storage_full()
    big = tmp_path / "model.pte"
    big.write_bytes(os.urandom(1 << 20))
    with pytest.raises(AdbError, match="MB free under .* MB to push; free space"):
        phone.stage([big])
    assert not list(adb_testdevice.root.rglob("model.pte*"))


def test_unauthorized_key_tells_the_user_to_accept_the_prompt(adb_testdevice, android_home):
    adb_testdevice.faults.keep_unauthorized = True
    with pytest.raises(AdbError, match="accept the 'Allow USB debugging\\?' prompt"):
        AdbDevice(adb_testdevice.serial, timeout=2)


def test_key_is_created_private_when_absent(adb_testdevice, tmp_path, monkeypatch):
    monkeypatch.setenv("ANDROID_USER_HOME", str(tmp_path / "android"))
    with pytest.raises(AdbError):            # a new key the phone has not accepted yet
        AdbDevice(adb_testdevice.serial, timeout=2)
    assert (tmp_path / "android" / "adbkey").stat().st_mode & 0o777 == 0o600


def test_serial_comes_from_android_serial(adb_testdevice, android_home, monkeypatch):
    monkeypatch.setenv("ANDROID_SERIAL", adb_testdevice.serial)
    assert AdbDevice(timeout=5).serial == adb_testdevice.serial
    monkeypatch.delenv("ANDROID_SERIAL")
    with pytest.raises(AdbError, match="ANDROID_SERIAL"):
        AdbDevice()


@pytest.mark.parametrize("serial", HOSTILE + ["127.0.0.1:1;touch pwned"])
def test_hostile_serials_are_refused_without_reaching_a_shell(serial, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", "1")      # no server: the direct path
    with pytest.raises(AdbError):
        get_device(serial)
    assert list(tmp_path.iterdir()) == []


def test_usb_serial_without_usb_support_says_what_to_do():
    with pytest.raises(AdbError, match="adb tcpip 5555"):
        get_device("R58M12345XY")


def test_bench_over_adb_runs_the_bundled_arm64_runner(adb_testdevice, android_home, tmp_path,
                                                      export_128, arm64_exec):
    """The acceptance command, `bench --device 127.0.0.1:PORT --variant T --input-size 128x128`
    with no --runner-target (export cached by the fixture): the device's ABI picks the glibc
    bundle, which a stock phone starts. FP32 and FP16 .pte with a short protocol: emulated
    ARM64 is about 100x slower than native."""
    result = CliRunner().invoke(app, [
        "bench", "--device", adb_testdevice.serial, "--variant", "T", "--input-size", "128x128",
        "--models-dir", str(export_128.folder.parent), "--formats", "pte",
        "--iterations", "3", "--min-seconds", "0", "--rounds", "1", "--warmup", "1",
        "--precision", "0",
        "--warmup-seconds", "0", "--blocks", "1", "--out", str(tmp_path / "reports")])
    assert result.exit_code == 0, result.output
    assert "(cached)" in result.output
    [folder] = (tmp_path / "reports").iterdir()
    report = json.loads((folder / "report.json").read_text())
    device = report["device"]
    assert device["kind"] == "adb" and device["core"]["index"] == 7
    assert device["profile"]["name"] == "OnePlus 8 Pro" and device["profile"]["mismatches"] == []
    assert device["core"]["reason"] == "OnePlus 8 Pro profile (oneplus-8-pro.toml)"
    assert device["properties"]["soc"] == "SM8250" and len(device["topology"]["cores"]) == 8
    assert {a["unit"] for a in report["artifacts"]} == {"model", "stem", "context", "spatial",
                                                        "head"}
    assert {a["precision"] for a in report["artifacts"]} == {"fp32", "fp16"}
    assert all(a["parity"]["passed"] and a["stats"]["n"] >= 3 for a in report["artifacts"])
    runner = report["runners"]["pte"]
    assert (runner["target"], runner["launch"], runner["abi"]) == (
        "android-arm64", "bundled-loader", "arm64-v8a")
    assert runner["chosen_by"].startswith("OnePlus 8 Pro profile")
    assert {"seaformer-runner", "lib/ld-linux-aarch64.so.1", "lib/libc.so.6",
            "lib/libstdc++.so.6", "lib/libexecutorch.so"} <= set(runner["files"])
    assert all(len(h) == 64 for h in runner["files"].values())
    assert runner["version_output"]["runtime"] == "executorch"
    summary = (folder / "summary.md").read_text()
    assert "android-arm64 for arm64-v8a (glibc (bundled), launch bundled-loader" in summary
    assert_commands_ran_clean(adb_testdevice)          # every command, under mksh + toybox
    assert any("only 3 samples, too few to judge" in w for w in report["warnings"])   # n = 3
    assert report["components"][0]["sum_over_whole"] > 0.5
    assert any(call.startswith("80 ") for call in adb_testdevice.taskset_calls())  # cpu7 mask
    leftovers = adb_testdevice.host_path(ROOT)
    assert not [p for p in leftovers.iterdir() if p.name.startswith("run-")]   # cleaned up


def test_unbundled_glibc_runner_is_refused_before_timing(adb_testdevice, android_home,
                                                         tiny_pte_export, arm64_exec):
    """A glibc runner without its loader cannot start on a phone (its ELF interpreter
    /lib/ld-linux-aarch64.so.1 does not exist): one clear error before any timing, naming it."""
    opts = BenchOptions(tiny_pte_export.folder, device=adb_testdevice.serial, formats=("pte",),
                        precisions=("fp32",), blocks=1, runner=RunnerChoice("linux-arm64"),
                        protocol=Protocol(warmup_iterations=1, warmup_seconds=0, iterations=1,
                                          min_seconds=0, rounds=1), precision=0.0)
    with pytest.raises(RunnerError) as raised:
        bench(opts)
    message = str(raised.value)
    assert "linux-arm64 runner cannot start on" in message
    assert "ELF interpreter /lib/ld-linux-aarch64.so.1 does not exist there" in message
    assert "Drop target to get the bundled runner" in message
    assert "Drop --runner-target to get" in raised.value.render(flag)
    ran = [c.command for c in adb_testdevice.command_log()
           if "taskset" in c.command and "seaformer-runner" in c.command]
    assert ran and all("--version" in c for c in ran)      # started once, never timed
    assert not [p for p in adb_testdevice.host_path(ROOT).iterdir()
                if p.name.startswith("run-")]                         # cleaned up


def test_runner_for_another_abi_is_refused_before_pushing(adb_testdevice, android_home,
                                                          tiny_pte_export):
    opts = BenchOptions(tiny_pte_export.folder, device=adb_testdevice.serial, formats=("pte",),
                        precisions=("fp32",), runner=RunnerChoice("android-x86_64"))
    with pytest.raises(RunnerError, match="built for x86_64, but .* is arm64-v8a"):
        bench(opts)
    assert not adb_testdevice.host_path(f"{ROOT}/cas").exists()


def test_bench_through_a_running_adb_server(real_adb, adb_testdevice, tiny_pte_export, arm64_exec,
                                            tmp_path, monkeypatch):
    """A phone already in `adb devices` is benched through that server, not around it."""
    assert "connected to" in real_adb("connect", adb_testdevice.serial).stdout
    assert real_adb("-s", adb_testdevice.serial, "wait-for-device", timeout=15).returncode == 0
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(real_adb.port))
    run = bench(BenchOptions(tiny_pte_export.folder, device=adb_testdevice.serial, formats=("pte",),
                             precisions=("fp32",), blocks=1,
                             protocol=Protocol(warmup_iterations=1, warmup_seconds=0,
                                               iterations=2, min_seconds=0, rounds=1),
                             precision=0.0))
    report = build_report(run)
    assert report["device"]["transport"].startswith(f"adb server 127.0.0.1:{real_adb.port}")
    assert report["status"] == "complete" and len(report["artifacts"]) == 5
    assert all(a["parity"]["passed"] for a in report["artifacts"])
