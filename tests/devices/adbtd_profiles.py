"""The phones the ADB test device can be: properties, CPUs, thermal zones, architecture.

``sd865()`` (a OnePlus 8 Pro, Android 12) is the default. ``PROFILES`` names every profile;
each call returns a fresh, mutable ``Profile`` (tests change props, ``rooted``, ...):

* ``sd865``: Snapdragon 865 "kona", Android 12, ro.soc.model SM8250.
* ``sd865-thermal-denied``: the same phone whose thermal_zone*/temp files the shell user may
  not read (SELinux denies them on many stock phones); the battery temperature stays readable.
* ``sd855-android11``: Pixel 4, Snapdragon 855 "msmnile", Android 11: no ro.soc.* properties
  (they exist from Android 12 on). Kryo 485 cores report Qualcomm's implementer 0x51 and part
  numbers 0x805 (silver, A55-based) and 0x804 (gold and prime, A76-based), as the real phone's
  /proc/cpuinfo does.
* ``sm8550``: Snapdragon 8 Gen 2 "kalama" (Galaxy S23), Android 14: 3x A510, 2x A715, 2x A710
  and one X3.
* ``emulator-x86_64``: the x86_64 Android emulator (ranchu), Android 14: 4 CPUs in one cluster,
  no cpufreq, no cpu_capacity, no cluster_id, no thermal zones (goldfish's battery reports
  25.0 C), x86 /proc/cpuinfo; its native x86-64 programs run on the host without qemu.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

ARM_FEATURES = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm "
                "lrcpc dcpop asimddp")
ARMV9_FEATURES = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                  "asimdrdm jscvt fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 asimdfhm dit "
                  "uscat ilrcpc flagm ssbs sb paca pacg dcpodp sve2 sveaes svepmull svebitperm "
                  "svesha3 svesm4 flagm2 frint svei8mm svebf16 i8mm bf16 bti")


@dataclass
class Cpu:
    part: str                    # /proc/cpuinfo "CPU part" (ARM)
    variant: str
    max_khz: int | None          # None: no cpufreq (a VM)
    policy: int                  # first CPU of its cpufreq policy
    cluster: int
    capacity: int | None         # None: no cpu_capacity file
    min_khz: int = 300_000
    governor: str = "schedutil"
    implementer: str = "0x41"    # ARM Ltd; 0x51: Qualcomm
    revision: int = 0


@dataclass
class Profile:
    """What the fake phone reports."""

    props: dict[str, str]
    cpus: list[Cpu]
    thermal: list[tuple[str, int]]       # (type, millidegrees C)
    name: str = "sd865"
    arch: str = "aarch64"                # the ELF machine it runs: aarch64 | x86_64
    battery_decidegrees: int | None = 285
    loadavg: str = "0.52 0.61 0.70 1/1432 12345"
    kernel_release: str = "4.19.113-perf+"
    hardware: str = "Qualcomm Technologies, Inc kona"   # ARM "Hardware"; x86 "model name"
    cpu_features: str = ARM_FEATURES
    cluster_ids: bool = True             # topology/cluster_id files
    df_total_kb: int = 113_058_636
    df_avail_kb: int = 98_188_800
    rooted: bool = False                 # an su binary (Magisk-style) in /system/bin
    thermal_readable: bool = True        # False: thermal_zone*/temp mode 0000

    @property
    def has_cpufreq(self) -> bool:
        return any(c.max_khz for c in self.cpus)


def _arm(n: int, part: str, variant: str, khz: int, policy: int, cluster: int, capacity: int,
         **kw) -> list[Cpu]:
    return [Cpu(part, variant, khz, policy, cluster, capacity, **kw) for _ in range(n)]


def sd865(thermal_readable: bool = True) -> Profile:
    """Snapdragon 865 (SM8250, "kona"): 4x A55 @1.80 GHz, 3x A77 @2.42 GHz, 1x A77 @2.84 GHz."""
    cpus = (_arm(4, "0xd05", "0x1", 1_804_800, 0, 0, 404)
            + _arm(3, "0xd0d", "0x1", 2_419_200, 4, 1, 911)
            + _arm(1, "0xd0d", "0x1", 2_841_600, 7, 2, 1024))
    props = {
        "ro.product.name": "OnePlus8Pro", "ro.product.model": "IN2023",
        "ro.product.device": "OnePlus8Pro", "ro.product.brand": "OnePlus",
        "ro.product.manufacturer": "OnePlus", "ro.soc.manufacturer": "Qualcomm",
        "ro.soc.model": "SM8250", "ro.board.platform": "kona", "ro.hardware": "qcom",
        "ro.build.version.release": "12", "ro.build.version.sdk": "31",
        "ro.build.type": "user", "ro.product.cpu.abi": "arm64-v8a",
        "ro.product.cpu.abilist": "arm64-v8a,armeabi-v7a,armeabi",
        "ro.build.fingerprint":
            "OnePlus/OnePlus8Pro_EEA/OnePlus8Pro:12/RKQ1.211119.001/Q.1a2b3c4-5d6e:user/release-keys",
        "ro.serialno": "5f1e2d3c", "ro.debuggable": "0", "sys.boot_completed": "1",
    }
    zones = [("aoss0-usr", 33_900), ("cpu-0-0-usr", 36_100), ("cpu-1-0-usr", 41_300),
             ("cpu-1-6-usr", 42_000), ("gpuss-0-usr", 35_200), ("skin-therm", 31_000)]
    return Profile(props=props, cpus=cpus, thermal=zones, thermal_readable=thermal_readable,
                   name="sd865" if thermal_readable else "sd865-thermal-denied")


def sd865_thermal_denied() -> Profile:
    return sd865(thermal_readable=False)


def sd855_android11() -> Profile:
    """Pixel 4 (Snapdragon 855, "msmnile"), Android 11: 4x Kryo 485 silver @1.79 GHz, 3x gold
    @2.42 GHz, 1x prime @2.84 GHz; no ro.soc.* properties."""
    qcom = {"implementer": "0x51", "revision": 14}
    cpus = (_arm(4, "0x805", "0x7", 1_785_600, 0, 0, 379, **qcom)
            + _arm(3, "0x804", "0xd", 2_419_200, 4, 1, 948, **qcom)
            + _arm(1, "0x804", "0xd", 2_841_600, 7, 2, 1024, **qcom))
    props = {
        "ro.product.name": "flame", "ro.product.model": "Pixel 4", "ro.product.device": "flame",
        "ro.product.brand": "google", "ro.product.manufacturer": "Google",
        "ro.board.platform": "msmnile", "ro.hardware": "flame",
        "ro.build.version.release": "11", "ro.build.version.sdk": "30",
        "ro.build.type": "user", "ro.product.cpu.abi": "arm64-v8a",
        "ro.product.cpu.abilist": "arm64-v8a,armeabi-v7a,armeabi",
        "ro.build.fingerprint": "google/flame/flame:11/RQ3A.211001.001/7641976:user/release-keys",
        "ro.serialno": "9A201FFAZ004XC", "ro.debuggable": "0", "sys.boot_completed": "1",
    }
    zones = [("aoss-0-usr", 32_800), ("cpu-0-0-usr", 35_400), ("cpu-1-0-usr", 39_900),
             ("cpu-1-7-usr", 40_600), ("gpuss-0-usr", 34_100), ("skin-therm", 30_200)]
    return Profile(props=props, cpus=cpus, thermal=zones, name="sd855-android11",
                   kernel_release="4.14.190-g8b4a6e3e5d8f-ab7051573",
                   hardware="Qualcomm Technologies, Inc SM8150", battery_decidegrees=301)


def sm8550() -> Profile:
    """Snapdragon 8 Gen 2 (SM8550, "kalama"), Galaxy S23, Android 14: 3x A510 @2.02 GHz,
    2x A715 and 2x A710 @2.80 GHz (one policy), 1x X3 @3.19 GHz."""
    cpus = (_arm(3, "0xd46", "0x1", 2_016_000, 0, 0, 411)
            + _arm(2, "0xd4d", "0x1", 2_803_200, 3, 1, 889)
            + _arm(2, "0xd47", "0x2", 2_803_200, 3, 1, 868)
            + _arm(1, "0xd4e", "0x1", 3_187_200, 7, 2, 1024))
    props = {
        "ro.product.name": "dm1qxxx", "ro.product.model": "SM-S911B",
        "ro.product.device": "dm1q", "ro.product.brand": "samsung",
        "ro.product.manufacturer": "samsung", "ro.soc.manufacturer": "QTI",
        "ro.soc.model": "SM8550", "ro.board.platform": "kalama", "ro.hardware": "qcom",
        "ro.build.version.release": "14", "ro.build.version.sdk": "34",
        "ro.build.type": "user", "ro.product.cpu.abi": "arm64-v8a",
        "ro.product.cpu.abilist": "arm64-v8a,armeabi-v7a,armeabi",
        "ro.build.fingerprint":
            "samsung/dm1qxxx/dm1q:14/UP1A.231005.007/S911BXXS3CXD1:user/release-keys",
        "ro.serialno": "R5CW21ABCDE", "ro.debuggable": "0", "sys.boot_completed": "1",
    }
    zones = [("aoss-0", 34_000), ("cpu-0-0-0", 37_200), ("cpu-1-3-0", 43_900),
             ("cpu-1-5-0", 44_400), ("cpu-1-7-0", 46_100), ("gpuss-0", 36_000),
             ("skin-therm", 32_500)]
    return Profile(props=props, cpus=cpus, thermal=zones, name="sm8550",
                   kernel_release="5.15.123-android14-11-28576433-abS911BXXS3CXD1",
                   hardware="Qualcomm Technologies, Inc KALAMA", cpu_features=ARMV9_FEATURES,
                   battery_decidegrees=297, df_total_kb=228_529_152, df_avail_kb=181_403_648)


def emulator_x86_64() -> Profile:
    """The x86_64 Android emulator (ranchu, Android 14): 4 CPUs, no cpufreq, no thermal."""
    cpus = [Cpu("", "", None, 0, 0, None) for _ in range(4)]
    props = {
        "ro.product.name": "sdk_gphone64_x86_64", "ro.product.model": "sdk_gphone64_x86_64",
        "ro.product.device": "emu64xa", "ro.product.brand": "google",
        "ro.product.manufacturer": "Google", "ro.hardware": "ranchu", "ro.kernel.qemu": "1",
        "ro.build.version.release": "14", "ro.build.version.sdk": "34",
        "ro.build.type": "user", "ro.build.characteristics": "emulator",
        "ro.product.cpu.abi": "x86_64", "ro.product.cpu.abilist": "x86_64",
        "ro.build.fingerprint":
            "google/sdk_gphone64_x86_64/emu64xa:14/UE1A.230829.036.A1/11228894:user/release-keys",
        "ro.serialno": "EMULATOR34X1X14X0", "ro.debuggable": "0", "sys.boot_completed": "1",
    }
    return Profile(props=props, cpus=cpus, thermal=[], name="emulator-x86_64", arch="x86_64",
                   battery_decidegrees=250, kernel_release="6.1.23-android14-4-00257-gd4a1a3b",
                   hardware="Intel(R) Core(TM) i7-10700 CPU @ 2.90GHz", cluster_ids=False,
                   cpu_features="fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov "
                                "pat pse36 clflush mmx fxsr sse sse2 ss ht syscall nx rdtscp lm "
                                "constant_tsc rep_good nopl xtopology cpuid pni pclmulqdq ssse3 "
                                "fma cx16 sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c "
                                "rdrand hypervisor lahf_lm abm 3dnowprefetch fsgsbase bmi1 avx2 "
                                "smep bmi2 erms invpcid rdseed adx smap clflushopt xsaveopt "
                                "xsavec xgetbv1 xsaves arat",
                   df_total_kb=6_064_208, df_avail_kb=3_917_416)


PROFILES: dict[str, Callable[[], Profile]] = {
    "sd865": sd865,
    "sd865-thermal-denied": sd865_thermal_denied,
    "sd855-android11": sd855_android11,
    "sm8550": sm8550,
    "emulator-x86_64": emulator_x86_64,
}


def cpuinfo(profile: Profile) -> str:
    """/proc/cpuinfo in the format of the profile's architecture."""
    return _x86_cpuinfo(profile) if profile.arch == "x86_64" else _arm_cpuinfo(profile)


def _arm_cpuinfo(p: Profile) -> str:
    blocks = [f"processor\t: {i}\nBogoMIPS\t: 38.40\nFeatures\t: {p.cpu_features}\n"
              f"CPU implementer\t: {cpu.implementer}\nCPU architecture: 8\n"
              f"CPU variant\t: {cpu.variant}\nCPU part\t: {cpu.part}\n"
              f"CPU revision\t: {cpu.revision}\n" for i, cpu in enumerate(p.cpus)]
    return "\n".join(blocks) + f"\nHardware\t: {p.hardware}\n"


def _x86_cpuinfo(p: Profile) -> str:
    n = len(p.cpus)
    blocks = [f"processor\t: {i}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 165\n"
              f"model name\t: {p.hardware}\nstepping\t: 5\nmicrocode\t: 0x1\n"
              f"cpu MHz\t\t: 2903.998\ncache size\t: 16384 KB\nphysical id\t: 0\n"
              f"siblings\t: {n}\ncore id\t\t: {i}\ncpu cores\t: {n}\napicid\t\t: {i}\n"
              f"initial apicid\t: {i}\nfpu\t\t: yes\nfpu_exception\t: yes\ncpuid level\t: 22\n"
              f"wp\t\t: yes\nflags\t\t: {p.cpu_features}\nbogomips\t: 5807.99\n"
              "clflush size\t: 64\ncache_alignment\t: 64\n"
              "address sizes\t: 39 bits physical, 48 bits virtual\npower management:\n"
              for i in range(n)]
    return "\n".join(blocks) + "\n"
