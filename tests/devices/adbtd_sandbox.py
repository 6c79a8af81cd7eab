"""The test device's filesystem and process sandbox: a stock, unrooted Android phone.

Design (no chroot, no namespaces, nothing registered system-wide):

* The device filesystem is a host directory ``root`` laid out as on a phone: system/bin,
  system/xbin, system/lib64, system/etc, vendor/bin, vendor/lib64, apex, data (0751),
  data/local/tmp (the shell user's), sdcard, storage/emulated/0 -> sdcard, sys, proc, and the
  Android 10+ symlinks bin -> system/bin, etc -> system/etc. There is no lib and no usr:
  nothing of glibc. Sync requests map any absolute device path into the root (``..`` cannot
  escape).
* Shell commands run as ``/system/bin/sh -c CMD`` where that sh is the host's **mksh** (the
  shell Android ships) and system/bin holds symlinks to the host's **toybox** for the applets
  Android's toybox has (``android_applets``); PATH is system/bin, system/xbin and vendor/bin
  only. The command text gets a documented *prefix rewrite*: an absolute path whose first
  component is a device top-level directory (``DEVICE_TOP_DIRS``) or a host one a phone lacks
  (``HOST_ONLY_DIRS``: usr, lib, lib64, tmp, ...) is prefixed with ``<root>``, so /usr/bin/env
  is as absent as on a phone; /dev and a bare / keep naming the host. The output goes through
  the reverse rewrite, so ``pwd`` or a probe printing ``/sys/...`` shows device paths.
* Commands run as the adb shell user, uid/gid 2000 with the shell's groups, when the tests
  run as root (otherwise as the test user); the rooted profile keeps the host user, see
  ``Sandbox.shell_user``. Pushes are written with the same identity (adbd runs as shell).
* Shims in system/bin, ``#!/system/bin/sh`` scripts using only mksh and toybox: getprop (the
  profile's properties), df (the configured free space), uname (the profile's kernel and
  machine) and taskset (checks and logs the device mask, applies its host image); the rooted
  profile adds su and an id that still says uid 2000 (see ``adbtd_root_shims``).
* LD_PRELOAD libraries in the shell and its tools (``adbtd_preloads``): ``adbtd_exec_hook.c``
  makes execve behave as the phone's kernel (device paths, ``#!`` interpreters looked up in
  the root, ELF machine and PT_INTERP checks, noexec /sdcard; aarch64 programs run under
  ``qemu-aarch64-static -L <root>``); ``adbtd_shell_compat.c`` gives users and groups their
  Android names (``id`` says uid=2000(shell), ``ls -l`` shows shell) and drops the "E: "
  prefix Debian's mksh puts before its messages.
* CPUs: the device has ``len(profile.cpus)`` of them; device cpu d runs on host cpu
  ``host_cpus[d % len(host_cpus)]`` (the CPUs the test process may use). taskset applies that
  image, and ``adbtd_affinity.c``, preloaded into device programs, translates
  sched_setaffinity/sched_getaffinity/sched_getcpu and the CPU count. Native (x86-64) device
  programs also preload ``adbtd_paths.c``, which maps their absolute paths into the sandbox.
* sysfs/procfs are plain files generated from a ``Profile`` (``adbtd_profiles``), root-owned
  and 0644 as on a phone (cpufreq scaling files are not writable by the shell user; the
  thermal-denied profile makes thermal_zone*/temp unreadable). Tests change them with
  ``write_file``, which keeps a replaced file's mode and owner.

Host requirement: qemu-user resolves a guest path under ``-L <root>`` first and falls back to
the same path on the host. If the host had /lib/ld-linux-aarch64.so.1 or aarch64 libraries in
/lib/aarch64-linux-gnu or /usr/lib/aarch64-linux-gnu (Debian's libc6:arm64), a glibc program
that does not bundle its libraries would find them and start, where a phone refuses it; so an
aarch64 profile refuses to start on such a host (``HostLeaksGlibc``). Those folders may exist
with binutils' ldscripts and bfd-plugins in them: only shared objects count.

Closed gaps (the device used to hide these phone failures): a glibc program that does not
bring its loader fails with ENOENT as on a phone (no <root>/lib link to the cross sysroot);
the shell is mksh and the tools toybox, with no host directory on PATH and no host /usr, /lib
or /tmp visible by path; ``#!`` interpreters are device paths; programs of the wrong machine
fail with ENOEXEC, /sdcard is noexec; taskset really pins (onto the host image of the mask)
and device programs see device CPU numbers; commands run as uid 2000, cpufreq is not writable
and thermal zones can be unreadable; there are five phones instead of one.

How the test device still differs from a real phone:

* No SELinux (no contexts, ``id`` prints none; no denials except the thermal-denied
  profile's file modes). No bionic: there is no /system/bin/linker64, so NDK-built (bionic)
  programs cannot run; only static ones, or glibc programs that bring their loader and
  libraries (``ld-linux-aarch64.so.1 --library-path DIR PROGRAM``).
* aarch64 programs run under qemu-user on the host's cores (timings mean nothing; several
  device cpus share one host cpu). qemu does not map an execve made *by* a guest program, so
  a device program cannot start another one. A guest program can still open host files that
  the sandbox lacks (qemu's fallback; only glibc is checked for). Static programs, and raw
  syscalls, bypass the affinity preload and see host CPUs. 32-bit ARM programs are refused
  (ENOEXEC), which a phone with armeabi-v7a would run.
* The x86_64 emulator profile runs its programs natively: the host kernel, the host's
  /lib64/ld-linux-x86-64.so.2 for a program that names it (once the sandbox holds a file at
  that path) and the host's default library folders after the bundled ones. Their file calls
  go through ``adbtd_paths.c`` (device paths, as qemu -L gives aarch64 programs), except what
  glibc opens internally (locale, iconv, its loader). A real x86_64 image may also translate
  arm64 programs (native bridge); this one refuses them.
* Paths are mapped by rewriting the command text: paths assembled at run time from pieces
  that are not literal absolute paths stay host paths (the exec hook maps them for execve
  only), ``ls /`` lists the host root, /dev is the host's, and the fake /proc has no process
  entries (``cat /proc/self/status`` fails; toybox's ps and pkill read the host's /proc and
  see host processes). The shell's environment holds host paths (PATH, HOME, TMPDIR, the
  ADBTD_* variables and LD_PRELOAD), hidden from output by the reverse rewrite; a command
  that unsets LD_PRELOAD leaves the sandbox's exec rules.
* Host tools: Debian's mksh (59c with later upstream changes) and toybox 0.8.9, not Android's
  builds, so a few messages and options differ. Debian's toybox lacks applets Android's has
  (tr, dd, expr, diff, gzip, getopt, vi, more, stty, lsof, the SELinux tools; and awk, which
  Android ships as a separate one-true-awk): those fail here although a phone has them.
  ``nproc`` counts host CPUs.
* When the tests do not run as root, commands run as the test user, who owns the sandbox:
  files the phone protects by ownership are protected by mode bits instead (0444 cpufreq
  scaling files, 0000 denied thermal zones), pushes are not checked as uid 2000, and ``id``
  shows the test user's uid, named "shell".
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import posixpath
import re
import shutil
import stat
import subprocess
from pathlib import Path

from .adbtd_preloads import (
    QEMU,
    build_shell_compat,
    build_device_preloads,
    build_exec_hook,
    elf_exec_supported,
)
from .adbtd_profiles import (  # noqa: F401  (re-exported: tests import profiles from here)
    PROFILES,
    Cpu,
    Profile,
    cpuinfo,
    emulator_x86_64,
    sd855_android11,
    sd865,
    sd865_thermal_denied,
    sm8550,
)

__all__ = ["PROFILES", "Cpu", "HostLeaksGlibc", "OutputUnmapper", "Profile", "Sandbox",
           "build_exec_hook", "elf_exec_supported", "sd865"]

HERE = Path(__file__).resolve().parent
DEVICE_TOP_DIRS = ("data", "sdcard", "storage", "sys", "proc", "system", "vendor", "odm",
                   "product", "apex", "mnt", "config", "cache", "metadata", "bin", "etc")
# Top-level folders of a Linux host that a phone lacks: rewritten too, so that the device does
# not see the host's /usr/bin/env, /lib64/ld-linux-x86-64.so.2 or /tmp. Only /dev (the host's
# stands in for the phone's: /dev/null) and a bare "/" keep naming the host.
HOST_ONLY_DIRS = ("usr", "lib", "lib32", "lib64", "libx32", "sbin", "tmp", "var", "opt", "home",
                  "root", "run", "srv", "boot", "media")
SHELL_UID = SHELL_GID = 2000
# The adb shell's supplementary groups on Android 12+: input, log, adb, sdcard_rw, sdcard_r,
# ext_data_rw, ext_obb_rw, net_bt_admin, net_bt, inet, net_bw_stats, readproc, uhid, readtracefs.
SHELL_GROUPS = (1004, 1007, 1011, 1015, 1028, 1078, 1079, 3001, 3002, 3003, 3006, 3009, 3011,
                3012)
# (device path, mode, owned by the shell user)
LAYOUT = (("/system/bin", 0o755, False), ("/system/xbin", 0o755, False),
          ("/system/lib64", 0o755, False), ("/system/etc", 0o755, False),
          ("/vendor/bin", 0o755, False), ("/vendor/lib64", 0o755, False),
          ("/apex", 0o755, False), ("/data", 0o751, False), ("/data/local", 0o751, False),
          ("/data/local/tmp", 0o771, True), ("/sdcard", 0o770, True),
          ("/storage/emulated", 0o755, False), ("/sys", 0o755, False), ("/proc", 0o755, False))
SYMLINKS = {"/bin": "system/bin", "/etc": "system/etc", "/storage/emulated/0": "../../sdcard"}
SHELL_OWNED = ("/data/local/tmp", "/sdcard")         # where the shell user creates files
SETTABLE_CPUFREQ = frozenset({"scaling_governor", "scaling_max_freq", "scaling_min_freq"})
# Applets of Debian's toybox that Android's toybox does not have (or that Android provides
# otherwise: su only on rooted builds, reboot as its own program).
NOT_ON_ANDROID = frozenset("""
    arch ascii base32 bunzip2 bzcat chvt count crc32 deallocvt dnsdomainname eject factor fstype
    ftpget ftpput gpiodetect gpiofind gpioget gpioinfo gpioset halt hexedit host httpd killall5
    link linux32 logger login mcookie mix mkpasswd nbd-server oneit openvt passwd poweroff pwgen
    readahead reboot reset sha3sum shred sntp su switch_root tunctl unicode vconfig w watchdog
    wget who""".split())
HOST_GLIBC_PATHS = ("/lib/ld-linux-aarch64.so.1",)
HOST_GLIBC_DIRS = ("/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu")


class HostLeaksGlibc(RuntimeError):
    """The host has aarch64 glibc where qemu-user would find it (see the module docstring)."""


def host_glibc_leaks() -> list[str]:
    """aarch64 glibc files on the host that a guest program would find through qemu."""
    found = [p for p in HOST_GLIBC_PATHS if os.path.lexists(p)]
    for folder in HOST_GLIBC_DIRS:
        with contextlib.suppress(OSError):
            found += [f"{folder}/{n}" for n in sorted(os.listdir(folder)) if ".so" in n]
    return found


@functools.cache
def host_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"the ADB test device needs {name} (Debian: apt-get install {name})")
    return os.path.realpath(path)


@functools.cache
def android_applets() -> tuple[str, ...]:
    """The applets of the host's toybox that Android's toybox has too."""
    listing = subprocess.run([host_tool("toybox")], capture_output=True, text=True, check=True)
    return tuple(a for a in listing.stdout.split() if a not in NOT_ON_ANDROID)


def host_cpus() -> list[int]:
    """The host CPUs device programs run on: those this process may use."""
    return sorted(os.sched_getaffinity(0))


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _cpu_list(cpus: list[int]) -> str:
    return f"{cpus[0]}-{cpus[-1]}" if len(cpus) > 1 else str(cpus[0])


def _under(device_path: str, folders: tuple[str, ...]) -> bool:
    return any(device_path == f or device_path.startswith(f + "/") for f in folders)


class Sandbox:
    """A device filesystem under ``state_dir/root`` plus host-side state (props, logs)."""

    def __init__(self, state_dir: Path, profile: Profile) -> None:
        if profile.arch == "aarch64" and (leaks := host_glibc_leaks()):
            raise HostLeaksGlibc(
                f"this host has aarch64 glibc files where qemu-user falls back to host paths "
                f"({', '.join(leaks[:3])}): a glibc program that does not bundle its loader "
                f"and libraries would start on the test device although a phone refuses it. "
                f"Remove them (Debian's libc6:arm64) or use a host without them.")
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "root").mkdir(exist_ok=True)
        self.root = (self.state_dir / "root").resolve()   # canonical: the exec hook compares
        self.profile = profile
        self.props_file = self.state_dir / "props"
        self.taskset_log = self.state_dir / "taskset.log"
        self.host_cpus = host_cpus()
        self.exec_hook: Path | None = None
        self.shell_compat: Path | None = None
        self.device_preloads: list[Path] = []
        self._root_str = str(self.root)
        self._prefix_re = re.compile(
            r"(?<![\w.~/$-])/(?=(?:" + "|".join(DEVICE_TOP_DIRS + HOST_ONLY_DIRS)
            + r")(?:/|\b|$))")
        self._build()

    @property
    def shell_user(self) -> tuple[int, int] | None:
        """(uid, gid) device commands run as: the adb shell user when we are root and may
        switch to it; None: the host user. The rooted profile stays the host user (root) so
        that its su needs no setuid binary; its id shim still reports uid 2000."""
        return (SHELL_UID, SHELL_GID) if os.geteuid() == 0 and not self.profile.rooted else None

    # -- layout --------------------------------------------------------------------------
    def _build(self) -> None:
        self._make_layout()
        self._install_tools()
        self._install_shims()
        self.taskset_log.touch()
        self.write_props()
        self._write_sysfs()
        self.exec_hook = build_exec_hook()
        self.shell_compat = build_shell_compat()
        self.device_preloads = build_device_preloads(self.profile.arch)
        self._open_to_shell_user()

    def _make_layout(self) -> None:
        self.root.chmod(0o755)
        for device_path, mode, shell_owned in LAYOUT:
            path = self.host_path(device_path)
            self._make_folders(path)
            path.chmod(mode)
            if shell_owned:
                self._give_to_shell(path)
        for link, target in SYMLINKS.items():
            os.symlink(target, self.host_path(link))

    def _install_tools(self) -> None:
        """sh -> mksh, toybox and its Android applets -> toybox (host programs: the exec hook
        runs them directly)."""
        bin_dir = self.root / "system/bin"
        shims = {p.name for p in self._shims()}
        os.symlink(host_tool("mksh"), bin_dir / "sh")
        os.symlink(host_tool("toybox"), bin_dir / "toybox")
        for applet in android_applets():
            if applet not in shims:
                os.symlink(host_tool("toybox"), bin_dir / applet)

    def _shims(self) -> list[Path]:
        shims = sorted((HERE / "adbtd_shims").iterdir())
        if self.profile.rooted:
            shims += sorted((HERE / "adbtd_root_shims").iterdir())
        return shims

    def _install_shims(self) -> None:
        for shim in self._shims():
            target = self.root / "system/bin" / shim.name
            shutil.copyfile(shim, target)
            target.chmod(0o755)

    def _open_to_shell_user(self) -> None:
        """Let uid 2000 reach the root and the preloads (TemporaryDirectory makes 0700), and
        append to the taskset log."""
        if self.shell_user is None:
            return
        self.state_dir.chmod(0o755)
        self.props_file.chmod(0o644)
        self._give_to_shell(self.taskset_log)
        for path in (self.root, self.exec_hook, self.shell_compat, *self.device_preloads):
            if path is None:
                continue
            for folder in path.parents:
                if not folder.stat().st_mode & stat.S_IXOTH:
                    raise RuntimeError(
                        f"the test device's shell user (uid {SHELL_UID}) cannot enter {folder} "
                        f"(mode {stat.S_IMODE(folder.stat().st_mode):o}), on the way to {path};"
                        f" point TMPDIR (or state_dir) at a folder others may traverse")

    def _give_to_shell(self, path: Path) -> None:
        if os.geteuid() == 0:
            os.lchown(path, SHELL_UID, SHELL_GID)

    def write_props(self) -> None:
        props = sorted(self.profile.props.items())     # getprop lists them sorted
        self.props_file.write_text("".join(f"{k}={v}\n" for k, v in props))

    def _write_sysfs(self) -> None:
        p = self.profile
        cpu_dir = "/sys/devices/system/cpu"
        for name in ("online", "possible", "present"):
            self.write_file(f"{cpu_dir}/{name}", _cpu_list(list(range(len(p.cpus)))) + "\n")
        if p.has_cpufreq:
            for policy in sorted({c.policy for c in p.cpus}):
                members = [i for i, c in enumerate(p.cpus) if c.policy == policy]
                self._write_policy(f"{cpu_dir}/cpufreq/policy{policy}", p.cpus[policy], members)
        for i, cpu in enumerate(p.cpus):
            self._write_cpu(f"{cpu_dir}/cpu{i}", i, cpu)
        self._make_folders(self.host_path("/sys/class/thermal"))    # even without zones
        for z, (kind, milli) in enumerate(p.thermal):
            zone = f"/sys/class/thermal/thermal_zone{z}"
            self.write_file(f"{zone}/type", kind + "\n")
            temp = self.write_file(f"{zone}/temp", f"{milli}\n")
            temp.chmod(0o644 if p.thermal_readable else 0o000)
        if p.battery_decidegrees is not None:
            self.write_file("/sys/class/power_supply/battery/temp", f"{p.battery_decidegrees}\n")
        self.write_file("/proc/loadavg", p.loadavg + "\n")
        self.write_file("/proc/cpuinfo", cpuinfo(p))
        self.write_file("/proc/version", f"Linux version {p.kernel_release} (build@android)\n")

    def _write_cpu(self, base: str, index: int, cpu: Cpu) -> None:
        if cpu.capacity is not None:
            self.write_file(f"{base}/cpu_capacity", f"{cpu.capacity}\n")
        if self.profile.cluster_ids:
            self.write_file(f"{base}/topology/cluster_id", f"{cpu.cluster}\n")
        self.write_file(f"{base}/topology/physical_package_id", "0\n")
        self.write_file(f"{base}/topology/core_id", f"{index - cpu.policy}\n")
        if cpu.max_khz:
            os.symlink(f"../cpufreq/policy{cpu.policy}", self.host_path(f"{base}/cpufreq"))

    def _write_policy(self, base: str, cpu: Cpu, members: list[int]) -> None:
        related = " ".join(map(str, members))
        files = {"cpuinfo_max_freq": cpu.max_khz, "cpuinfo_min_freq": cpu.min_khz,
                 "scaling_max_freq": cpu.max_khz, "scaling_min_freq": cpu.min_khz,
                 "scaling_cur_freq": cpu.max_khz * 2 // 3, "scaling_governor": cpu.governor,
                 "scaling_available_governors": "performance powersave schedutil",
                 "related_cpus": related, "affected_cpus": related}
        # Only root may change cpufreq. Without root the shell user owns these files, so the
        # mode bits protect them (unless the profile is rooted: then su must succeed).
        settable = 0o644 if os.geteuid() == 0 or self.profile.rooted else 0o444
        for name, value in files.items():
            path = self.write_file(f"{base}/{name}", f"{value}\n")
            path.chmod(settable if name in SETTABLE_CPUFREQ else 0o444)

    # -- paths ---------------------------------------------------------------------------
    def host_path(self, device_path: str) -> Path:
        """Any absolute device path -> a path inside the sandbox root."""
        clean = posixpath.normpath("/" + device_path.lstrip("/"))   # '..' stops at '/'
        return self.root / clean.lstrip("/") if clean != "/" else self.root

    def device_path(self, host_path: str | Path) -> str:
        text = str(host_path)
        return text[len(self._root_str):] or "/" if text.startswith(self._root_str) else text

    def write_file(self, device_path: str, content: str | bytes) -> Path:
        """Create or replace a device file, e.g. a sysfs value. A replaced file keeps its mode
        and owner; a new one under /data/local/tmp or /sdcard belongs to the shell user."""
        path = self.host_path(device_path)
        created = self._make_folders(path.parent)
        old = path.lstat() if path.is_symlink() or path.exists() else None
        if old is not None:
            path.unlink()
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        if old is not None and not stat.S_ISLNK(old.st_mode):
            path.chmod(stat.S_IMODE(old.st_mode))
            if os.geteuid() == 0:
                os.chown(path, old.st_uid, old.st_gid)
            return path
        path.chmod(0o644)
        if _under(posixpath.normpath("/" + device_path.lstrip("/")), SHELL_OWNED):
            for made in [*created, path]:
                self._give_to_shell(made)
        return path

    @staticmethod
    def _make_folders(folder: Path) -> list[Path]:
        """mkdir -p with mode 0755 whatever the umask, returning the folders it created."""
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for made in reversed(missing):
            made.mkdir()
            made.chmod(0o755)
        return missing

    def rewrite_command(self, command: str) -> str:
        """Device paths in command text -> sandbox paths (see module docstring)."""
        return self._prefix_re.sub(lambda m: self._root_str + "/", command)

    def unmapper(self) -> OutputUnmapper:
        return OutputUnmapper(self._root_str.encode())

    # -- processes -----------------------------------------------------------------------
    def environment(self, df_avail_kb: int) -> dict[str, str]:
        p, r = self.profile, self._root_str
        env = {
            # As adbd's shell sees them (host paths of the device's folders).
            "PATH": f"{r}/system/bin:{r}/system/xbin:{r}/vendor/bin",
            "HOME": r, "TMPDIR": f"{r}/data/local/tmp", "ANDROID_DATA": f"{r}/data",
            "ANDROID_ROOT": f"{r}/system", "ANDROID_STORAGE": f"{r}/storage",
            "EXTERNAL_STORAGE": f"{r}/sdcard", "SHELL": f"{r}/system/bin/sh", "TERM": "dumb",
            "USER": "shell", "LOGNAME": "shell",
            # For the exec hook, the affinity preload and the shims.
            "ADBTD_ROOT": r, "ADBTD_ARCH": p.arch, "ADBTD_QEMU": QEMU,
            "ADBTD_HOST_TOOLS": f"{host_tool('mksh')}:{host_tool('toybox')}",
            "ADBTD_DEVICE_NCPU": str(len(p.cpus)),
            "ADBTD_HOST_CPUS": ",".join(map(str, self.host_cpus)),
            "ADBTD_PROPS": str(self.props_file), "ADBTD_TASKSET_LOG": str(self.taskset_log),
            "ADBTD_KERNEL_RELEASE": p.kernel_release, "ADBTD_UNAME_MACHINE": p.arch,
            "ADBTD_DF_TOTAL_KB": str(p.df_total_kb), "ADBTD_DF_AVAIL_KB": str(df_avail_kb),
        }
        if self.device_preloads:
            env["ADBTD_DEVICE_PRELOAD"] = " ".join(map(str, self.device_preloads))
        if os.geteuid() != 0:       # the test user stands in for the shell user (2000)
            env["ADBTD_SHELL_UID"], env["ADBTD_SHELL_GID"] = str(os.getuid()), str(os.getgid())
        preloads = [str(p) for p in (self.exec_hook, self.shell_compat) if p]
        if preloads:
            env["LD_PRELOAD"] = " ".join(preloads)
        return env

    def spawn(self, command: str, df_avail_kb: int, merge_stderr: bool) -> subprocess.Popen:
        """Start the device's ``/system/bin/sh -c COMMAND`` (mksh, named as on the phone, so
        its messages read "/system/bin/sh: ..."), in its own process group."""
        return subprocess.Popen(
            ["/system/bin/sh", "-c", self.rewrite_command(command)],
            executable=host_tool("mksh"), cwd=self.root, env=self.environment(df_avail_kb),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
            start_new_session=True, **self._credentials())

    def _credentials(self) -> dict:
        if self.shell_user is None:
            return {}
        uid, gid = self.shell_user
        return {"user": uid, "group": gid, "extra_groups": list(SHELL_GROUPS)}

    @contextlib.contextmanager
    def as_shell_user(self):
        """File access with the shell user's identity in this thread (adbd runs as shell):
        setfsuid/setfsgid change only the calling thread's filesystem ids, so other threads
        stay root, and files created meanwhile belong to the shell user."""
        if self.shell_user is None:
            yield
            return
        libc = _libc()
        uid, gid = self.shell_user
        old_gid = libc.setfsgid(gid)
        old_uid = libc.setfsuid(uid)
        try:
            yield
        finally:
            libc.setfsuid(old_uid)
            libc.setfsgid(old_gid)

    def taskset_calls(self) -> list[str]:
        """What taskset was asked to do, one ``MASK COMMAND...`` line per call."""
        text = self.taskset_log.read_text()
        unmap = self.unmapper()
        return [(unmap.feed(line.encode()) + unmap.flush()).decode() for line in text.splitlines()]


class OutputUnmapper:
    """Streaming reverse of the prefix rewrite: ``<root>/x`` -> ``/x`` and a bare ``<root>``
    -> ``/``, also when an occurrence is split across two reads."""

    def __init__(self, marker: bytes) -> None:
        self.marker = marker
        self.pattern = re.compile(re.escape(marker) + b"(/)?")
        self.pending = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self.pending + chunk
        keep = 0       # hold back a tail that may be (the start of) a marker
        for size in range(min(len(self.marker), len(data)), 0, -1):
            if self.marker.startswith(data[-size:]):
                keep = size
                break
        self.pending = data[len(data) - keep:]
        return self._unmap(data[:len(data) - keep])

    def flush(self) -> bytes:
        data, self.pending = self.pending, b""
        return self._unmap(data)

    def _unmap(self, data: bytes) -> bytes:
        return self.pattern.sub(b"/", data)
