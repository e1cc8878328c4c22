"""A linux/aarch64 target on an x86_64 machine, by qemu user-mode emulation.

``setup_aarch64()`` provisions it from nothing: qemu-user-static from apt, a Debian bookworm arm64 sysroot
built from ``.deb`` files (Python 3.11 and a Java 17 JRE) fetched under a private apt configuration, and
aarch64 wheels of numpy and onnxruntime pinned to the host's versions. Nothing is installed for arm64 on
the host itself: no ``dpkg --add-architecture``, no binfmt_misc.

Cache layout (``~/.cache/parity/aarch64``; ``PARITY_CACHE_DIR`` replaces ``~/.cache/parity``)::

    sysroot/          the unpacked .debs; the stdlib precompiled
    roots/<cpu>/      what qemu's -L sees: links to sysroot/* plus a proc/cpuinfo that matches -cpu <cpu>
    site/             aarch64 wheels, put on PYTHONPATH of the emulated python only
    ready.json        written last: its presence means everything above is complete
"""

from __future__ import annotations

import fcntl
import functools
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from parity.core.errors import EnvironmentProblem

SETUP_COMMAND = "parity targets setup aarch64"
SCHEMA = 1
DEFAULT_CPU = "neoverse-n1"
QEMU = "qemu-aarch64-static"
PYTHON_IN_SYSROOT = "usr/bin/python3.11"
JAVA_IN_SYSROOT = "usr/lib/jvm/java-17-openjdk-arm64/bin/java"
STAMP = "ready.json"

# What Python 3.11 needs from bookworm arm64; dpkg -x resolves no dependencies, so this list is complete.
PYTHON_DEBS = (
    "libc6", "libgcc-s1", "libstdc++6", "gcc-12-base", "zlib1g", "libbz2-1.0", "liblzma5", "libexpat1",
    "libffi8", "libssl3", "libsqlite3-0", "libcrypt1", "libuuid1", "libncursesw6", "libtinfo6",
    "libreadline8", "libnsl2", "libtirpc3", "libgssapi-krb5-2", "libkrb5-3", "libk5crypto3",
    "libkrb5support0", "libkeyutils1", "libcom-err2", "libmd0", "libpython3.11-minimal",
    "libpython3.11-stdlib", "python3.11-minimal",
)  # fmt: skip
# The headless JRE starts with libc6, zlib1g, libgcc-s1, libstdc++6 and gcc-12-base, all listed above.
JAVA_DEBS = ("openjdk-17-jre-headless",)
# The host's versions of these are the versions installed for aarch64, so both sides run the same code.
PINNED_DISTRIBUTIONS = ("numpy", "onnxruntime", "protobuf", "flatbuffers", "packaging")
WHEEL_PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_28_aarch64")

# MIDR fields of the CPUs qemu 7.2 emulates (target/arm/cpu64.c): implementer, variant, part, revision.
# "max" uses implementer 0 ("software use") and part 'Q' on purpose.
MIDR = {
    "neoverse-n1": (0x41, 0x4, 0xD0C, 0x1),
    "cortex-a72": (0x41, 0x0, 0xD08, 0x3),
    "cortex-a57": (0x41, 0x1, 0xD07, 0x0),
    "cortex-a53": (0x41, 0x0, 0xD03, 0x4),
    "a64fx": (0x46, 0x1, 0x001, 0x0),
    "max": (0x00, 0x0, 0x051, 0x0),
}
# Names of the AT_HWCAP and AT_HWCAP2 bits, in bit order, as Linux prints them in /proc/cpuinfo.
HWCAP_NAMES = (
    "fp", "asimd", "evtstrm", "aes", "pmull", "sha1", "sha2", "crc32", "atomics", "fphp", "asimdhp",
    "cpuid", "asimdrdm", "jscvt", "fcma", "lrcpc", "dcpop", "sha3", "sm3", "sm4", "asimddp", "sha512",
    "sve", "asimdfhm", "dit", "uscat", "ilrcpc", "flagm", "ssbs", "sb", "paca", "pacg"
)  # fmt: skip
HWCAP2_NAMES = (
    "dcpodp", "sve2", "sveaes", "svepmull", "svebitperm", "svesha3", "svesm4", "flagm2", "frint", "svei8mm",
    "svef32mm", "svef64mm", "svebf16", "i8mm", "bf16", "dgh", "rng", "bti", "mte", "ecv", "afp", "rpres",
    "mte3", "sme", "smei16i64", "smef64f64", "smei8i32", "smef16f32", "smeb16f32", "smef32f32", "smefa64",
    "wfxt", "ebf16", "sveebf16"
)  # fmt: skip
# Run under the emulated python with no cpuinfo yet: print the HWCAP words qemu hands the guest.
AUXV_PROBE = (
    "import struct;d=open('/proc/self/auxv','rb').read();"
    "v=dict(struct.iter_unpack('<QQ',d));print(v.get(16,0),v.get(26,0))"
)
PYTHON_CHECK = (
    "import json,platform,numpy,onnxruntime;"
    "print(json.dumps({'machine':platform.machine(),'python':platform.python_version(),"
    "'numpy':numpy.__version__,'onnxruntime':onnxruntime.__version__}))"
)

Log = Callable[[str], object]


@dataclass(frozen=True)
class Aarch64Env:
    """A provisioned linux/aarch64 target: where its pieces are, and how to run programs in it."""

    cache_dir: Path
    sysroot: Path
    site: Path
    python: Path
    java: Path
    qemu: str
    cpu: str = DEFAULT_CPU

    def root_for(self, cpu: str | None = None) -> Path:
        """Return the ``-L`` root for ``cpu``, making it (links plus a matching cpuinfo) on first use."""
        cpu = cpu or self.cpu
        root = self.cache_dir / "roots" / cpu
        if not (root / "proc" / "cpuinfo").is_file():
            _make_cpu_root(self.sysroot, root, self.qemu, cpu)
        return root

    def qemu_prefix(self, cpu: str | None = None) -> list[str]:
        cpu = cpu or self.cpu
        return [self.qemu, "-cpu", cpu, "-L", str(self.root_for(cpu))]

    def python_command(self, args: Sequence[str], cpu: str | None = None) -> list[str]:
        """Return the command that runs the emulated ``python3.11 *args``; run it with :meth:`python_env`."""
        return [*self.qemu_prefix(cpu), str(self.python), *args]

    def java_command(self, args: Sequence[str], cpu: str | None = None) -> list[str]:
        """Return the command that runs the emulated ``java *args``; run it with :meth:`java_env`."""
        return [*self.qemu_prefix(cpu), str(self.java), *args]

    def python_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Return ``base`` (default ``os.environ``) fit for the emulated python: SITE on PYTHONPATH.

        Only ever pass this to the emulated subprocess: exported, it would break the host's numpy.
        """
        env = _clean_env(base)
        env["PYTHONPATH"] = str(self.site)
        env["PYTHONNOUSERSITE"] = "1"
        # The stdlib and SITE are precompiled; the emulated python must not write into the cache.
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    def java_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Return ``base`` (default ``os.environ``) fit for the emulated java."""
        env = _clean_env(base)
        env["JAVA_HOME"] = str(self.java.parent.parent)
        return env


def default_cache_dir() -> Path:
    """Return ``$PARITY_CACHE_DIR/aarch64``, or ``~/.cache/parity/aarch64``."""
    from parity.core.java import cache_root

    return cache_root() / "aarch64"


def aarch64_status(cache_dir: Path | None = None) -> str | None:
    """Say whether the aarch64 target is ready.

    Parameters
    ----------
    cache_dir : Path, optional
        The target's cache; :func:`default_cache_dir` by default.

    Returns
    -------
    str or None
        None when the target is ready; otherwise what is missing and the command that sets it up.
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    if shutil.which(QEMU) is None:
        return f"aarch64 target: {QEMU} is not installed. Run `{SETUP_COMMAND}`."
    if not (cache_dir / STAMP).is_file():
        return f"aarch64 target: {cache_dir} holds no finished setup ({STAMP}). Run `{SETUP_COMMAND}`."
    if not _stamp_matches(cache_dir, host_pins()):
        return (f"aarch64 target: {cache_dir} was set up for other versions than {host_pins()}. "
                f"Run `{SETUP_COMMAND}`.")  # fmt: skip
    return None


def setup_aarch64(cache_dir: Path | None = None, *, log: Log = print) -> Aarch64Env:
    """Provision the linux/aarch64 target, or return it at once when it is already provisioned.

    Parameters
    ----------
    cache_dir : Path, optional
        Where the target lives; :func:`default_cache_dir` by default.
    log : callable, optional
        Receives one line per step.

    Returns
    -------
    Aarch64Env
        The ready target.

    Raises
    ------
    EnvironmentProblem
        When qemu cannot be installed (not root), apt or pip fail, or the result does not run.
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    qemu = ensure_qemu(log)
    pins = host_pins()
    env = _env_at(cache_dir, qemu)
    if _stamp_matches(cache_dir, pins):
        return env
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    with _lock(cache_dir.with_name(cache_dir.name + ".lock")):
        if _stamp_matches(cache_dir, pins):  # another process finished while we waited
            return env
        for leftover in cache_dir.parent.glob(f".{cache_dir.name}.*"):  # from a setup that was killed
            shutil.rmtree(leftover, ignore_errors=True)
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=f".{cache_dir.name}.", dir=cache_dir.parent))
        try:
            stamp = _build(work, cache_dir, qemu, pins, log)
            stamp["seconds"] = round(time.monotonic() - started, 1)
            _write_json_atomic(work / STAMP, stamp)
            _swap_into_place(work, cache_dir)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    log(f"aarch64: ready in {cache_dir} after {stamp['seconds']} s")
    return env


def _build(work: Path, final: Path, qemu: str, pins: dict[str, str], log: Log) -> dict[str, object]:
    """Build sysroot, roots and site under ``work`` (renamed ``final`` later); check; return the stamp."""
    scratch = work / "scratch"
    apt_options = private_apt(scratch / "apt", log)
    debs = download_debs(apt_options, (*PYTHON_DEBS, *JAVA_DEBS), scratch / "debs", log)
    sysroot = work / "sysroot"
    deb_versions = unpack_debs(debs, sysroot, log)
    install_wheels(pins, scratch / "wheels", work / "site", log)
    compile_tree(sysroot / "usr" / "lib" / "python3.11", work, final, log)
    compile_tree(work / "site", work, final, log)
    shutil.rmtree(scratch)
    env = _env_at(work, qemu)
    log(f"aarch64: checking python and java under {QEMU} -cpu {env.cpu}")
    python = check_python(env, pins)
    java = check_java(env)
    return {
        "schema": SCHEMA,
        "target": "linux/aarch64",
        "cpu": env.cpu,
        "qemu": _qemu_version(qemu),
        "python": python,
        "java": java,
        "wheels": pins,
        "debs": deb_versions,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def ensure_qemu(log: Log = print) -> str:
    """Return the path of ``qemu-aarch64-static``, installing qemu-user-static with apt-get if missing."""
    found = shutil.which(QEMU)
    if found:
        return found
    if os.geteuid() != 0:
        raise EnvironmentProblem(f"{QEMU} is missing and installing it needs root. "
                                 "Run `apt-get install qemu-user-static` as root, then retry.")  # fmt: skip
    log("aarch64: installing qemu-user-static with apt-get")
    install = ["apt-get", "install", "-y", "--no-install-recommends", "qemu-user-static"]
    apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if _run(install, env=apt_env, check=False).returncode != 0:
        _run(["apt-get", "update"], env=apt_env)  # a fresh machine may hold no package lists yet
        _run(install, env=apt_env)
    found = shutil.which(QEMU)
    if not found:
        raise EnvironmentProblem(f"apt-get installed qemu-user-static but {QEMU} is not on PATH.")
    return found


def host_pins() -> dict[str, str]:
    """Return the running interpreter's versions of the distributions installed for aarch64 too."""
    return dict(_host_pins())


@functools.cache
def _host_pins() -> tuple[tuple[str, str], ...]:
    # Read once per process: every emulated run asks (status, then setup), and each read scans site-packages.
    try:
        return tuple((name, importlib.metadata.version(name)) for name in PINNED_DISTRIBUTIONS)
    except importlib.metadata.PackageNotFoundError as err:
        raise EnvironmentProblem(f"{err.name} is not installed in {sys.executable}; the aarch64 target "
                                 "installs the host's versions. Install the project first.") from err  # fmt: skip


def private_apt(root: Path, log: Log) -> list[str]:
    """Make an apt configuration for arm64 under ``root`` (the host's sources, private state) and update it.

    Returns the ``-o`` options that select it.
    """
    sources = root / "sources.list.d"
    sources.mkdir(parents=True)
    host = Path("/etc/apt")
    for src in [host / "sources.list", *sorted((host / "sources.list.d").glob("*"))]:
        if src.is_file() and src.suffix in (".list", ".sources"):
            shutil.copy(src, sources / src.name)
    for sub in ("lists/partial", "archives/partial"):
        (root / sub).mkdir(parents=True)
    (root / "status").touch()
    settings = {
        "APT::Architecture": "arm64",
        "APT::Architectures": "arm64",
        "Dir::Etc::SourceList": str(sources / "none.list"),
        "Dir::Etc::SourceParts": str(sources),
        "Dir::State": str(root),
        "Dir::State::Lists": str(root / "lists"),
        "Dir::State::status": str(root / "status"),
        "Dir::Cache": str(root),
        "Dir::Cache::archives": str(root / "archives"),
        "APT::Sandbox::User": "root",
    }
    options = [arg for key, value in settings.items() for arg in ("-o", f"{key}={value}")]
    log("aarch64: apt-get update (private arm64 configuration)")
    _run(["apt-get", *options, "update"])
    return options


def download_debs(apt_options: list[str], names: Sequence[str], dest: Path, log: Log) -> list[Path]:
    """Fetch the arm64 ``.deb`` of each of ``names`` into ``dest`` with ``apt-get download``."""
    dest.mkdir(parents=True)
    log(f"aarch64: apt-get download {len(names)} arm64 packages")
    _run(["apt-get", *apt_options, "download", *(f"{name}:arm64" for name in names)], cwd=dest)
    debs = sorted(dest.glob("*.deb"))
    if len(debs) != len(names):
        raise EnvironmentProblem(f"apt-get download: expected {len(names)} .deb files, got {len(debs)}.")
    return debs


def unpack_debs(debs: Sequence[Path], sysroot: Path, log: Log) -> dict[str, str]:
    """Unpack ``debs`` into ``sysroot`` with ``dpkg -x``; return each package's version."""
    log(f"aarch64: unpacking {len(debs)} packages into the sysroot")
    versions = {}
    for deb in debs:
        _run(["dpkg", "-x", str(deb), str(sysroot)])
        fields = _run(["dpkg-deb", "-f", str(deb), "Package", "Version"]).stdout
        parsed = dict(line.split(": ", 1) for line in fields.splitlines() if ": " in line)
        versions[parsed["Package"]] = parsed["Version"]
    relativize_symlinks(sysroot)
    return versions


def relativize_symlinks(sysroot: Path) -> None:
    """Point absolute links inside ``sysroot`` (conf -> /etc/java-17-openjdk, ...) at the sysroot's copy.

    The host kernel, not qemu, follows links: an absolute one would reach the host's files, or nothing.
    """
    for dirpath, dirnames, filenames in os.walk(sysroot):
        for name in dirnames + filenames:
            link = Path(dirpath) / name
            if link.is_symlink() and os.readlink(link).startswith("/"):
                target = sysroot / os.readlink(link).lstrip("/")
                link.unlink()
                link.symlink_to(os.path.relpath(target, link.parent))


def compile_tree(tree: Path, built: Path, final: Path, log: Log) -> None:
    """Precompile ``tree`` with the host's python3.11, recording paths as they will be after the rename.

    dpkg -x runs no postinst to do it, and without .pyc files each emulated start costs about 1 s more.
    """
    host_python = sys.executable if sys.version_info[:2] == (3, 11) else shutil.which("python3.11")
    if host_python is None:
        raise EnvironmentProblem("No host python3.11 to precompile the aarch64 stdlib with.")
    log(f"aarch64: precompiling {tree.relative_to(built)}")
    where = ["-s", str(built), "-p", str(final)]
    # Some files are deliberately not valid Python 3.11 (lib2to3 test data): a non-zero exit is expected.
    _run([host_python, "-m", "compileall", "-q", "-j", "0", *where, str(tree)], check=False)


def install_wheels(pins: Mapping[str, str], wheels: Path, site: Path, log: Log) -> None:
    """Download the aarch64 wheels of ``pins`` (and their dependencies) and install them into ``site``."""
    log(f"aarch64: pip download {', '.join(f'{k}=={v}' for k, v in pins.items())} for aarch64")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    target = [
        "--only-binary=:all:",
        *(arg for platform in WHEEL_PLATFORMS for arg in ("--platform", platform)),
        *("--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"),
    ]
    pinned = [f"{name}=={version}" for name, version in pins.items()]
    _run([*pip, "download", *target, "--dest", str(wheels), *pinned])
    log("aarch64: pip install --target SITE")
    found = map(str, sorted(wheels.glob("*.whl")))
    _run([*pip, "install", *target, "--no-index", "--no-deps", "--no-compile", "--target", str(site), *found])


def check_python(env: Aarch64Env, pins: Mapping[str, str]) -> dict[str, str]:
    """Import numpy and onnxruntime under emulation; refuse a result that is not aarch64 or not pinned."""
    out = _run(env.python_command(["-c", PYTHON_CHECK]), env=env.python_env()).stdout
    seen = json.loads(out.strip().splitlines()[-1])
    expected = {"machine": "aarch64", "numpy": pins["numpy"], "onnxruntime": pins["onnxruntime"]}
    wrong = {k: seen.get(k) for k, v in expected.items() if seen.get(k) != v}
    if wrong:
        raise EnvironmentProblem(f"emulated python: expected {expected}, got {wrong}.")
    return seen


def check_java(env: Aarch64Env) -> str:
    """Run ``java -version`` under emulation and return its first line."""
    proc = _run(env.java_command(["-version"]), env=env.java_env())
    return (proc.stderr or proc.stdout).strip().splitlines()[0]


def cpuinfo_text(cpu: str, hwcap: int, hwcap2: int, processors: int) -> str:
    """Return a /proc/cpuinfo as Linux arm64 writes it, for ``processors`` CPUs of model ``cpu``."""
    implementer, variant, part, revision = MIDR.get(cpu, MIDR["max"])
    names = [n for bit, n in enumerate(HWCAP_NAMES) if hwcap >> bit & 1]
    names += [n for bit, n in enumerate(HWCAP2_NAMES) if hwcap2 >> bit & 1]
    block = (f"BogoMIPS\t: 50.00\nFeatures\t: {' '.join(names)}\nCPU implementer\t: {implementer:#04x}\n"
             f"CPU architecture: 8\nCPU variant\t: {variant:#x}\nCPU part\t: {part:#05x}\n"
             f"CPU revision\t: {revision}\n\n")  # fmt: skip
    return "".join(f"processor\t: {i}\n{block}" for i in range(processors))


def _make_cpu_root(sysroot: Path, root: Path, qemu: str, cpu: str) -> None:
    """Make ``root``: links to each top-level entry of ``sysroot`` and a cpuinfo that matches ``cpu``.

    qemu 7.2 shows the guest the host's x86 /proc/cpuinfo, on which ``import onnxruntime`` segfaults;
    qemu's ``-L`` looks absolute paths up in the root first, so a file there replaces it.
    """
    if cpu not in MIDR:
        raise EnvironmentProblem(f"cpu={cpu!r}: expected one of {', '.join(MIDR)} (qemu-aarch64 -cpu names).")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cpu}.", dir=root.parent))
    try:
        for entry in sysroot.iterdir():
            (tmp / entry.name).symlink_to(os.path.relpath(entry, root))
        probe = [qemu, "-cpu", cpu, "-L", str(tmp), str(sysroot / PYTHON_IN_SYSROOT), "-S", "-c", AUXV_PROBE]
        hwcap, hwcap2 = map(int, _run(probe, env=_clean_env()).stdout.split())
        (tmp / "proc").mkdir()
        (tmp / "proc" / "cpuinfo").write_text(cpuinfo_text(cpu, hwcap, hwcap2, os.cpu_count() or 1))
        os.rename(tmp, root)
    except OSError:
        if not (root / "proc" / "cpuinfo").is_file():  # losing a race to another process is fine
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _env_at(cache_dir: Path, qemu: str, cpu: str = DEFAULT_CPU) -> Aarch64Env:
    sysroot = cache_dir / "sysroot"
    return Aarch64Env(cache_dir=cache_dir, sysroot=sysroot, site=cache_dir / "site",
                      python=sysroot / PYTHON_IN_SYSROOT, java=sysroot / JAVA_IN_SYSROOT, qemu=qemu, cpu=cpu)  # fmt: skip


def _stamp_matches(cache_dir: Path, pins: Mapping[str, str]) -> bool:
    """True when ``cache_dir`` holds a finished setup made for the host's current versions."""
    try:
        stamp = json.loads((cache_dir / STAMP).read_text())
    except (OSError, ValueError):
        return False
    return stamp.get("schema") == SCHEMA and stamp.get("wheels") == dict(pins)


def _swap_into_place(work: Path, final: Path) -> None:
    """Rename ``work`` to ``final``, moving aside (then deleting) a stale or half-built ``final``."""
    if final.exists():
        stale = final.with_name(f".{final.name}.stale-{os.getpid()}")
        os.rename(final, stale)
        os.rename(work, final)
        shutil.rmtree(stale, ignore_errors=True)
    else:
        os.rename(work, final)


def _write_json_atomic(path: Path, data: Mapping[str, object]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` so two setups never build the same target at once."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _qemu_version(qemu: str) -> str:
    return _run([qemu, "--version"]).stdout.splitlines()[0]


def _clean_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Drop the variables that would point the emulated programs at the host's Python or Java."""
    env = dict(os.environ if base is None else base)
    for name in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV", "JAVA_HOME"):
        env.pop(name, None)
    return env


def _run(cmd: Sequence[str], *, check: bool = True, timeout: float = 900, **kwargs: object
         ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run ``cmd`` capturing text; on failure raise EnvironmentProblem with the command and its stderr."""
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload]
    if check and proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-2000:]
        shown = " ".join(arg for i, arg in enumerate(map(str, cmd)) if arg != "-o" and cmd[i - 1] != "-o")
        raise EnvironmentProblem(f"`{shown}` exited {proc.returncode}:\n{tail}")
    return proc
