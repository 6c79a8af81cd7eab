"""Device profiles: the shipped files load, the SD865 test device is recognised as a OnePlus 8
Pro and agrees with its profile, disagreements are spelled out, malformed files are refused, a
user's folder adds profiles and replaces shipped ones by file name."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from seaformer_deploy.devices.adb import AdbDevice
from seaformer_deploy.devices.base import DeviceInfo
from seaformer_deploy.devices.probe import CpuCore, Topology
from seaformer_deploy.devices.profiles import (
    Cluster,
    ProfileError,
    check_profile,
    load_profile,
    load_profiles,
    match_profile,
    profiles_folder,
    user_profiles_folder,
)

REPO_DEVICES = Path(__file__).resolve().parents[2] / "devices"


@pytest.fixture(scope="module")
def profiles():
    """The shipped profiles only: a developer's own user folder must not change these tests."""
    return {p.name: p for p in load_profiles(profiles_folder())}


@pytest.fixture
def probed(adb_testdevice, adb_key, monkeypatch):
    """(properties, DeviceInfo) of the SD865 test device, as AdbDevice reports them."""
    monkeypatch.setenv("ANDROID_USER_HOME", str(adb_key[0].parent))
    device = AdbDevice(adb_testdevice.serial, timeout=5,
                       transport="direct")
    try:
        info = device.probe()
    finally:
        device.close()
    return info.properties, info


def info_with(cores: list[tuple[int, str]], **properties) -> DeviceInfo:
    """A probe result with these (max kHz, core type) cores, one cluster per distinct kHz."""
    clusters = sorted({khz for khz, _ in cores})
    return DeviceInfo("phone", "adb", "test", Topology(
        [CpuCore(i, khz, 300_000, clusters.index(khz), None, kind)
         for i, (khz, kind) in enumerate(cores)], None, None), dict(properties))


def test_shipped_profiles_load(profiles):
    assert profiles_folder() == REPO_DEVICES
    assert {"OnePlus 8 Pro", "Google Pixel 4"} <= set(profiles)
    oneplus = profiles["OnePlus 8 Pro"]
    assert (oneplus.soc, oneplus.board, oneplus.abi, oneplus.pin_core,
            oneplus.runner_target) == ("SM8250", "kona", "arm64-v8a", 7, "android-arm64")
    assert [(c.cpus, c.core_type, c.max_khz) for c in oneplus.clusters] == [
        ([0, 1, 2, 3], "Cortex-A55", 1_804_800), ([4, 5, 6], "Cortex-A77", 2_419_200),
        ([7], "Cortex-A77", 2_841_600)]
    assert "IN2023" in oneplus.match["model"]
    for profile in profiles.values():
        assert profile.pin_core in profile.cpus and profile.path.suffix == ".toml"


def test_test_device_is_a_oneplus_8_pro_that_agrees(probed, profiles):
    properties, info = probed
    profile = match_profile(properties, list(profiles.values()))
    assert profile is profiles["OnePlus 8 Pro"]
    assert check_profile(profile, info) == []


def test_modified_profile_disagrees_with_the_test_device(probed, profiles):
    _, info = probed
    wrong = dataclasses.replace(
        profiles["OnePlus 8 Pro"], soc="SM8150", pin_core=6,
        clusters=[Cluster([0, 1, 2, 3], "Cortex-A55", 1_785_600),
                  Cluster([4, 5, 6, 7, 8], "Cortex-A76", 2_841_600)])
    assert check_profile(wrong, info) == [
        "SoC SM8250, the profile says SM8150",
        "online cpus 0-7, the profile has 0-8 (cores offline: power saving or thermal hotplug?)",
        "cpu 0-3: max frequency 1804800 kHz, the profile says 1785600 kHz (capped?)",
        "cpu 4-6: max frequency 2419200 kHz, the profile says 2841600 kHz (capped?)",
        "cpu 4-7: core type Cortex-A77, the profile says Cortex-A76",
        "the probe would pin cpu7, the profile says cpu6",
    ]


def test_kryo_part_numbers_count_as_their_cortex_cores(profiles):
    pixel = profiles["Google Pixel 4"]
    info = info_with([(1_785_600, "0x805")] * 4 + [(2_419_200, "0x804")] * 3
                     + [(2_841_600, "0x804")], soc="SM8150", board="msmnile")
    assert check_profile(pixel, info) == []
    capped = info_with([(1_785_600, "0x805")] * 4 + [(2_419_200, "0x804")] * 4)
    assert check_profile(pixel, capped) == [
        "cpu 7: max frequency 2419200 kHz, the profile says 2841600 kHz (capped?)"]


def test_matching_needs_every_key_and_prefers_the_most_specific(profiles, tmp_path):
    known = list(profiles.values())
    assert match_profile({"model": "Pixel 4 XL"}, known) is profiles["Google Pixel 4"]
    assert match_profile({"model": "in2023 "}, known) is profiles["OnePlus 8 Pro"]
    assert match_profile({"model": "IN2013"}, known) is None      # OnePlus 8, not the Pro
    assert match_profile({}, known) is None
    generic = tmp_path / "sd865.toml"
    generic.write_text((REPO_DEVICES / "oneplus-8-pro.toml").read_text().replace(
        'name = "OnePlus 8 Pro"', 'name = "Any Snapdragon 865"').replace(
        'model = ["IN2020", "IN2021", "IN2023", "IN2025"]', 'soc = "SM8250"'))
    specific = tmp_path / "in2023.toml"
    specific.write_text(generic.read_text().replace(
        'name = "Any Snapdragon 865"', 'name = "IN2023"').replace(
        'soc = "SM8250"\n\n', 'soc = "SM8250"\nmodel = "IN2023"\n\n'))
    both = load_profiles(tmp_path)
    assert match_profile({"soc": "SM8250", "model": "IN2023"}, both).name == "IN2023"
    assert match_profile({"soc": "SM8250", "model": "X"}, both).name == "Any Snapdragon 865"


VALID = (REPO_DEVICES / "oneplus-8-pro.toml").read_text()


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("[match]", "[match"), "not valid TOML"),
    (lambda t: t.replace('name = "OnePlus 8 Pro"', ""), "`name` must be a non-empty string"),
    (lambda t: t.replace("pin_core = 7", "pin_core = 7\ncolour = 1"),
     "unknown field\\(s\\) colour"),
    (lambda t: t.replace("pin_core = 7", "pin_core = 9"),
     "`pin_core` must be one of the clusters' cpus \\[0, 1, 2, 3, 4, 5, 6, 7\\], not 9"),
    (lambda t: t.replace("max_khz = 2841600", "max_khz = \"2.84 GHz\""),
     "clusters\\[2\\].max_khz must be a positive integer in kHz"),
    (lambda t: t.replace("max_khz = 2841600", ""),
     "clusters\\[2\\] must have exactly cpus, core_type and max_khz"),
    (lambda t: t.replace("cpus = [7]", "cpus = [6]"), "a cpu appears in two clusters"),
    (lambda t: t.replace("model = [", "phone = ["), "match.phone is not a device property"),
    (lambda t: t.replace('runner_target = "android-arm64"', 'runner_target = "ios"'),
     "`runner_target` 'ios' is not one of android-arm64, android-x86_64, linux-arm64"),
])
def test_malformed_profiles_are_refused_with_file_and_reason(tmp_path, edit, message):
    path = tmp_path / "broken.toml"
    path.write_text(edit(VALID))
    with pytest.raises(ProfileError, match=f"device profile {path}: {message}"):
        load_profile(path)
    with pytest.raises(ProfileError, match="see devices/README.md"):
        load_profiles(tmp_path)


def test_profiles_folder_errors_and_copies(tmp_path):
    with pytest.raises(ProfileError, match=f"folder {tmp_path / 'none'} does not exist"):
        load_profiles(tmp_path / "none")
    assert load_profiles(tmp_path) == []
    shutil.copy(REPO_DEVICES / "oneplus-8-pro.toml", tmp_path)
    assert [p.name for p in load_profiles(tmp_path)] == ["OnePlus 8 Pro"]


def test_user_folder_follows_xdg_config_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    default = tmp_path / "home" / ".config" / "seaformer-deploy" / "devices"
    assert user_profiles_folder() == default
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/config")    # ignored, as the spec says
    assert user_profiles_folder() == default
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert user_profiles_folder() == tmp_path / "config" / "seaformer-deploy" / "devices"


def test_user_profiles_add_to_and_replace_shipped_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    shipped = {p.path.name: p.name for p in load_profiles()}     # no user folder yet
    assert shipped == {p.path.name: p.name for p in load_profiles(profiles_folder())}
    user = tmp_path / "seaformer-deploy" / "devices"
    user.mkdir(parents=True)
    (user / "oneplus-8-pro.toml").write_text(VALID.replace(
        'name = "OnePlus 8 Pro"', 'name = "My OnePlus"'))
    (user / "my-sd865.toml").write_text(VALID.replace(
        'name = "OnePlus 8 Pro"', 'name = "Any SD865"').replace(
        'model = ["IN2020", "IN2021", "IN2023", "IN2025"]', 'soc = "SM8250"'))
    known = {p.path.name: p for p in load_profiles()}
    assert {n: p.name for n, p in known.items()} == shipped | {
        "oneplus-8-pro.toml": "My OnePlus", "my-sd865.toml": "Any SD865"}
    assert known["oneplus-8-pro.toml"].path == user / "oneplus-8-pro.toml"
    assert known["google-pixel-4.toml"].path == profiles_folder() / "google-pixel-4.toml"
    assert match_profile({"model": "IN2023"},
                         list(known.values())).name == "My OnePlus"
    # An explicit folder (--profiles) is read alone.
    assert [p.name for p in load_profiles(tmp_path / "seaformer-deploy" / "devices")] == [
        "Any SD865", "My OnePlus"]


def test_bad_user_folder_and_profile_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "seaformer-deploy").mkdir()
    (tmp_path / "seaformer-deploy" / "devices").write_text("not a folder")
    with pytest.raises(ProfileError, match="devices is not a folder; it should hold your own"):
        load_profiles()
    (tmp_path / "seaformer-deploy" / "devices").unlink()
    (tmp_path / "seaformer-deploy" / "devices").mkdir()
    broken = tmp_path / "seaformer-deploy" / "devices" / "broken.toml"
    broken.write_text(VALID.replace("pin_core = 7", "pin_core = 7\ncolour = 1"))
    with pytest.raises(ProfileError, match=f"device profile {broken}: unknown field"):
        load_profiles()
