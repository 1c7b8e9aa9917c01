"""Build-time steps of the Wine image (run by the Dockerfile as the image's user).

    python3 -m mt5farm_runtime.build install-archive FILE.tar
    python3 -m mt5farm_runtime.build install-terminal mt5setup.exe
    python3 -m mt5farm_runtime.build install-python python-3.11.x-amd64.exe
    python3 -m mt5farm_runtime.build link-data-dirs
    python3 -m mt5farm_runtime.build report

Every step prints ``mt5farm: ...`` lines; the role shows them from the build log.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from .common import load_image
from .peversion import NoVersion, file_version

TERMINAL_EXE = "terminal64.exe"


class BuildError(RuntimeError):
    pass


def say(message: str) -> None:
    print(f"mt5farm: {message}", flush=True)


def wine_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("WINEDEBUG", "-all")
    return env


def terminal_dir(image: dict) -> Path:
    return Path(image["terminal"]["unix_dir"])


def _members(archive: tarfile.TarFile) -> tuple[list[tarfile.TarInfo], str]:
    """The archive's members and the prefix to strip (one top-level directory holding the terminal)."""
    members = archive.getmembers()
    names = [PurePosixPath(m.name.lstrip("./") or ".") for m in members]
    if any(n.is_absolute() or ".." in n.parts for n in names):
        raise BuildError("the terminal archive holds absolute paths or '..': refusing it")
    exes = [n for n in names if n.name.lower() == TERMINAL_EXE]
    if not exes:
        raise BuildError(f"the terminal archive has no {TERMINAL_EXE}")
    top = min(exes, key=lambda n: len(n.parts)).parent
    return members, "" if str(top) == "." else str(top)


def install_archive(image: dict, path: Path) -> None:
    target = terminal_dir(image)
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path) as archive:
        members, strip = _members(archive)
        chosen = []
        for member in members:
            name = member.name.lstrip("./")
            if strip:
                if not (name == strip or name.startswith(strip + "/")):
                    continue
                name = name[len(strip) :].lstrip("/")
            if not name:
                continue
            member.name = name
            chosen.append(member)
        # The "data" filter refuses links out of the tree, devices and setuid bits.
        archive.extractall(target, members=chosen, filter="data")
    if not (target / TERMINAL_EXE).is_file():
        raise BuildError(f"{TERMINAL_EXE} is not at the top of the extracted terminal directory")
    say(f"MT5 terminal: extracted the captured terminal directory into {image['terminal']['windows_dir']}")


def _run_under_xvfb(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(["xvfb-run", "-a", *argv], env=wine_env(), start_new_session=True)


def _wineserver_kill() -> None:
    subprocess.run(["wineserver", "-k"], env=wine_env(), check=False, timeout=60)


def install_terminal(image: dict, installer: Path, timeout: float = 900.0) -> None:
    """Run MetaQuotes' (or a broker's) mt5setup.exe unattended, wait for terminal64.exe."""
    target = terminal_dir(image)
    exe = target / TERMINAL_EXE
    say(f"MT5 terminal: running the installer /auto into {image['terminal']['windows_dir']} (it downloads the terminal from MetaQuotes)")
    popen = _run_under_xvfb(["wine", str(installer), "/auto", f"/path:{image['terminal']['windows_dir']}"])
    deadline = time.monotonic() + timeout
    last_size, stable_since = -1, time.monotonic()
    try:
        while time.monotonic() < deadline:
            time.sleep(2)
            size = exe.stat().st_size if exe.is_file() else -1
            if size != last_size:
                last_size, stable_since = size, time.monotonic()
            # Done when terminal64.exe exists and has not changed for 20 s (the installer
            # starts the terminal at the end; it is stopped below).
            if size > 0 and time.monotonic() - stable_since >= 20:
                break
        else:
            raise BuildError(f"the installer did not produce {TERMINAL_EXE} within {timeout:g} s")
    finally:
        _wineserver_kill()
        try:
            os.killpg(popen.pid, 9)
        except ProcessLookupError:
            pass
        popen.wait(timeout=30)
    say(f"MT5 terminal: installed ({exe.stat().st_size} bytes {TERMINAL_EXE})")


def install_python(image: dict, installer: Path, timeout: float = 900.0) -> None:
    """python-3.11.x-amd64.exe (run /quiet; its bootstrapper is 32-bit) or the NuGet package
    python.3.11.x.nupkg (a zip whose tools/ directory is a complete Python: no installer)."""
    target = image["windows_python"]["windows_dir"]
    python = Path(image["windows_python"]["unix_path"])
    # The NuGet branch captures pip's output as text, the installer's goes to the build log.
    done: subprocess.CompletedProcess[str] | subprocess.CompletedProcess[bytes]
    if installer.suffix.lower() in (".nupkg", ".zip"):
        say(f"Windows Python: unpacking the NuGet package's tools/ into {target}")
        with zipfile.ZipFile(installer) as package:
            names = [n for n in package.namelist() if n.startswith("tools/") and not n.endswith("/")]
            if not names:
                raise BuildError(f"{installer.name} has no tools/ directory: not the NuGet 'python' package")
            for name in names:
                relative = PurePosixPath(name).relative_to("tools")
                if relative.is_absolute() or ".." in relative.parts:
                    raise BuildError(f"{installer.name} holds a path outside tools/: {name}")
                destination = python.parent / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                with package.open(name) as source, destination.open("wb") as sink:
                    shutil.copyfileobj(source, sink)
        done = subprocess.run(
            ["wine", str(python), "-m", "ensurepip", "--default-pip"],
            env=wine_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    else:
        say(f"Windows Python: running the installer /quiet into {target}")
        done = subprocess.run(
            [
                "xvfb-run",
                "-a",
                "wine",
                str(installer),
                "/quiet",
                "InstallAllUsers=1",
                f"TargetDir={target}",
                "PrependPath=0",
                "Include_test=0",
                "Include_tcltk=0",
                "Include_doc=0",
                "Include_launcher=0",
                "Shortcuts=0",
            ],
            env=wine_env(),
            timeout=timeout,
            check=False,
        )
    subprocess.run(["wineserver", "-w"], env=wine_env(), timeout=timeout, check=False)
    if not python.is_file():
        raise BuildError(f"the Windows Python installer (exit {done.returncode}) left no {python}")
    version = subprocess.run(
        ["wine", str(python), "--version"], env=wine_env(), capture_output=True, text=True, timeout=120, check=True
    ).stdout.strip()
    say(f"Windows Python: installed, {version}")


def link_data_dirs(image: dict) -> None:
    """Move the terminal's per-account directories to the seed, link them to /data/terminal."""
    target = terminal_dir(image)
    seed = Path(image["seed_dir"])
    data = Path(image["terminal_data_root"])
    for sub in image["terminal_data_dirs"]:
        inside = target / sub
        if inside.is_symlink():
            inside.unlink()
        elif inside.is_dir():
            (seed / sub).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(inside), str(seed / sub))
        inside.parent.mkdir(parents=True, exist_ok=True)
        inside.symlink_to(data / sub, target_is_directory=True)
    say(f"MT5 terminal: per-account data ({', '.join(image['terminal_data_dirs'])}) lives on the volume at {data}")


def terminal_build(image: dict) -> tuple[str, str]:
    """(build, line): the installed terminal's build from terminal64.exe's file version
    (``5.0.0.5200`` is build 5200), or ("", why it is unknown)."""
    exe = terminal_dir(image) / TERMINAL_EXE
    try:
        with exe.open("rb") as handle:
            version = file_version(handle)
    except (NoVersion, OSError) as exc:
        return "", f"terminal build: unknown ({TERMINAL_EXE}: {exc})"
    return str(version.build), f"terminal build: {version.build} ({TERMINAL_EXE} file version {version})"


def report(image: dict, out: Path) -> None:
    """build.txt (what was included, skipped, proved) and, beside it, ``terminal-build``: the
    terminal's build, or empty when unknown (the entrypoint passes it to the service as
    MT5_IMAGE_BUILD, whose mt5_image_terminal_build is compared with the running build)."""
    lines = [f"variant: {image['variant']}"]
    build = ""
    for name in image.get("included", []):
        lines.append(f"included: {name}")
    for name in image.get("skipped", []):
        lines.append(f"skipped: {name}")
    if image["variant"] == "wine":
        # Running a program rewrites the prefix's registry files (timestamps): keep them as
        # they were, so an unchanged prefix stays byte-identical and its layer is reused.
        prefix = Path(os.environ.get("WINEPREFIX", str(Path.home() / ".wine")))
        registry = {path: path.read_bytes() for path in prefix.glob("*.reg")}
        done = subprocess.run(["wine", "cmd", "/c", "ver"], env=wine_env(), capture_output=True, text=True, timeout=300, check=False)
        subprocess.run(["wineserver", "-w"], env=wine_env(), timeout=120, check=False)
        for path, data in registry.items():
            path.write_bytes(data)
        ver = " ".join(line.strip() for line in done.stdout.splitlines() if line.strip())
        if done.returncode != 0 or "Windows" not in ver:
            raise BuildError(f"wine cmd /c ver failed (exit {done.returncode}): {ver or done.stderr[-500:]}")
        lines.append(f"wine cmd /c ver: {ver}")
        wine = subprocess.run(["wine", "--version"], env=wine_env(), capture_output=True, text=True, check=False)
        lines.append(f"wine --version: {wine.stdout.strip()}")
        if image.get("terminal", {}).get("included"):
            build, line = terminal_build(image)
            lines.append(line)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out.parent / "terminal-build").write_text(build + "\n" if build else "", encoding="utf-8")
    for line in lines:
        say(line)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    image = load_image(os.environ.get("MT5FARM_IMAGE_JSON", "/usr/share/mt5farm/image.json"))
    try:
        command = args[0] if args else ""
        if command == "install-archive":
            install_archive(image, Path(args[1]))
        elif command == "install-terminal":
            install_terminal(image, Path(args[1]))
        elif command == "install-python":
            install_python(image, Path(args[1]))
        elif command == "link-data-dirs":
            link_data_dirs(image)
        elif command == "report":
            report(image, Path(args[1]))
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except (BuildError, OSError, subprocess.SubprocessError, tarfile.TarError) as exc:
        say(f"FAILED {command}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
