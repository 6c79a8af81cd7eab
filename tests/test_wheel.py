"""The wheel is a complete install, not a copy of the checkout.

What this proves:
* ``pip wheel .`` of this repository, and a wheel built from its sdist, hold every module, the
  native runner's sources and CMake file, the JSON schemas and the phone profiles (devices/,
  shipped as the package ``seaformer_deploy.profiles``);
* installed into a fresh virtualenv outside the repository (which borrows this environment's
  dependencies through a .pth, but gets ``seaformer_deploy`` itself only from the wheel), the
  package finds its profiles and runner sources inside that virtualenv, and a profile in the
  user folder (``$XDG_CONFIG_HOME/seaformer-deploy/devices``) replaces a shipped one;
* from an unrelated folder, its ``seaformer-deploy export`` and ``seaformer-deploy bench`` run
  the README's main job at the smallest size (64x64, FP32 .pte, whole model only) and write a
  complete report; the native runner is built from the installed sources into the user cache,
  under the same cache key as from the checkout (so it is reused, not rebuilt), and nothing is
  written into the installed package.

The wheel is built without build isolation, by the setuptools installed here (the ``test``
extra pins the same version as ``[build-system]``), so the test needs no network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from importlib.util import find_spec
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Build products and local outputs of a checkout, never part of a build's input.
SKIP_TOP = {".git", "build", "dist", "models", "reports"}
SKIP_ANY = {"__pycache__", ".pytest_cache"}
RUNNER_SOURCES = {"runner.cpp", "threadpool.h", "CMakeLists.txt"}
SIZE = "64x64"                                      # the smallest input SeaFormer takes


def run(cmd: list, *, cwd: Path, env: dict | None = None, timeout: float = 600) -> str:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, (f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n"
                                  f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def copy_checkout(dest: Path) -> Path:
    """The repository without its build products, so building writes nothing into it."""
    def ignore(folder: str, names: list[str]) -> set[str]:
        top = SKIP_TOP if Path(folder) == REPO else set()
        return {n for n in names if n in top | SKIP_ANY or n.endswith(".egg-info")
                or (Path(folder) == REPO and n.startswith(".venv"))}

    shutil.copytree(REPO, dest, ignore=ignore)
    return dest


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> dict[str, Path]:
    """The wheel built from the checkout, the sdist, and the wheel built from that sdist."""
    if find_spec("setuptools.command.bdist_wheel") is None:
        pytest.fail("the installed setuptools cannot build wheels (it needs 70.1 or later); "
                    "`pip install -e '.[test]'` installs the pinned build backend.")
    root = tmp_path_factory.mktemp("build")
    source = copy_checkout(root / "source")
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                 "--no-index", "-q", "-w"]
    run([*pip_wheel, root / "wheel", source], cwd=root)
    run([sys.executable, "-c", "import sys; from setuptools import build_meta as b; "
         "b.build_sdist(sys.argv[1])", root / "sdist"], cwd=source)
    (sdist,) = (root / "sdist").glob("*.tar.gz")
    run([*pip_wheel, root / "from-sdist", sdist], cwd=root)
    (wheel,) = (root / "wheel").glob("*.whl")
    (from_sdist,) = (root / "from-sdist").glob("*.whl")
    return {"wheel": wheel, "sdist": sdist, "from_sdist": from_sdist}


def wheel_files(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {n for n in archive.namelist() if not n.split("/")[0].endswith(".dist-info")}


def test_wheel_and_sdist_hold_code_runner_sources_and_profiles(builds):
    files = wheel_files(builds["wheel"])
    package = REPO / "seaformer_deploy"
    code = {f"seaformer_deploy/{p.relative_to(package).as_posix()}"
            for p in package.rglob("*") if p.suffix in (".py", ".json")
            and "__pycache__" not in p.parts}
    assert code <= files, f"modules missing from the wheel: {sorted(code - files)}"
    assert {f"seaformer_deploy/runners/native/{n}" for n in RUNNER_SOURCES} <= files
    profiles = {p.name for p in (REPO / "devices").glob("*.toml")}
    assert profiles and {f"seaformer_deploy/profiles/{n}" for n in profiles | {"README.md"}} \
        <= files
    with tarfile.open(builds["sdist"]) as sdist:
        members = {"/".join(n.split("/")[1:]) for n in sdist.getnames()}
    assert {f"devices/{n}" for n in profiles} <= members
    assert files == wheel_files(builds["from_sdist"]), "a wheel from the sdist differs"


@pytest.fixture(scope="module")
def installed(builds, tmp_path_factory) -> dict:
    """A fresh virtualenv outside the repository with the wheel installed, this environment's
    site-packages appended through a .pth (after installing, so pip never sees the checkout's
    editable install), and the environment its commands run in."""
    root = tmp_path_factory.mktemp("installed")
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps",
         "--no-index", builds["wheel"]], cwd=root)
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                    cwd=root).strip())
    ours = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "_outer_environment.pth").write_text("".join(f"{p}\n" for p in ours))
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env |= {"PATH": f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            "XDG_CONFIG_HOME": str(root / "config")}
    work = root / "elsewhere"
    work.mkdir()
    return {"venv": env_dir, "python": python, "site": site, "env": env, "work": work,
            "config": root / "config"}


LOOKUP = """
import json, seaformer_deploy
from seaformer_deploy.devices import profiles
from seaformer_deploy.runners import native
print(json.dumps({"package": seaformer_deploy.__file__, "sources": str(native.SOURCE_DIR),
                  "shipped": str(profiles.profiles_folder()),
                  "profiles": {p.path.name: [p.name, str(p.path)]
                               for p in profiles.load_profiles()}}))
"""


def test_installed_package_comes_from_the_wheel_with_its_data(installed):
    user = installed["config"] / "seaformer-deploy" / "devices"
    user.mkdir(parents=True)
    (user / "oneplus-8-pro.toml").write_text((REPO / "devices" / "oneplus-8-pro.toml")
                                             .read_text().replace('name = "OnePlus 8 Pro"',
                                                                  'name = "My OnePlus"'))
    found = json.loads(run([installed["python"], "-c", LOOKUP], cwd=installed["work"],
                           env=installed["env"]))
    package = installed["site"] / "seaformer_deploy"
    assert Path(found["package"]) == package / "__init__.py"
    assert {p.name for p in Path(found["sources"]).iterdir()} >= RUNNER_SOURCES
    assert Path(found["sources"]).is_relative_to(package)
    assert Path(found["shipped"]) == package / "profiles"
    shipped = {p.name for p in (REPO / "devices").glob("*.toml")}
    assert set(found["profiles"]) == shipped
    assert found["profiles"]["oneplus-8-pro.toml"] == ["My OnePlus",
                                                       str(user / "oneplus-8-pro.toml")]
    assert found["profiles"]["google-pixel-4.toml"] == [
        "Google Pixel 4", str(package / "profiles" / "google-pixel-4.toml")]


def package_files(site: Path) -> set[Path]:
    return {p for p in (site / "seaformer_deploy").rglob("*") if "__pycache__" not in p.parts}


def test_export_and_bench_run_from_an_unrelated_folder(installed):
    from seaformer_deploy.paths import cache_root
    from seaformer_deploy.runners.native import build_runner

    # The checkout's build of the host runner; the installed package must find the same one.
    expected = build_runner("host")
    work, env, before = installed["work"], installed["env"], package_files(installed["site"])
    cli = installed["venv"] / "bin" / "seaformer-deploy"
    run([cli, "export", "--variant", "T", "--input-size", SIZE, "--formats", "pte",
         "--precisions", "fp32", "--no-components"], cwd=work, env=env)
    folder = work / "models" / f"seaformer-t_{SIZE}_logits"
    assert (folder / "manifest.json").is_file() and (folder / "model.fp32.pte").is_file()
    run([cli, "bench", "--artifacts", folder, "--formats", "pte", "--precisions", "fp32",
         "--warmup", "1", "--warmup-seconds", "0", "--iterations", "4", "--min-seconds", "0",
         "--precision", "0",
         "--rounds", "2", "--blocks", "1", "--wait", "300"], cwd=work, env=env)
    (report_file,) = (work / "reports").glob("*/report.json")
    report = json.loads(report_file.read_text())
    assert report["status"] == "complete" and not report["failures"]
    assert [(a["path"], a["parity"]["passed"]) for a in report["artifacts"]] == [
        ("model.fp32.pte", True)]
    runner = report["runners"]["pte"]
    assert Path(runner["folder"]).is_relative_to(cache_root())
    assert (runner["build_digest"], runner["folder"]) == (expected.digest, str(expected.folder))
    assert package_files(installed["site"]) == before, "the run wrote into the package"


def test_runner_cache_is_the_users_never_the_current_folder(tmp_path, monkeypatch):
    from seaformer_deploy.paths import cache_root

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")           # ignored, as the XDG spec says
    assert cache_root() == tmp_path / "home" / ".cache" / "seaformer-deploy"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert cache_root() == tmp_path / "cache" / "seaformer-deploy"
