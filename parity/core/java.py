"""Java for every JVM Parity starts: the one lookup of ``java``, its version, lean options, and compiling
Parity's small Java programs once per source and Java version, into a cache."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from .errors import EnvironmentProblem

#: Options for every JVM Parity starts: several run at once on a 2-core machine next to Python, so each
#: takes the single-threaded collector and a smaller code cache instead of per-core GC threads and the
#: 240 MB default, and starts with a small heap (the default initial heap is 1/64 of RAM, whose young
#: generation a JVM fills, and so touches, before its first collection); -Xmx still bounds growth.
LEAN_JVM_OPTIONS: tuple[str, ...] = ("-XX:+UseSerialGC", "-XX:ReservedCodeCacheSize=64m", "-Xss1m", "-Xms32m")


# The warm server traps System.exit with a SecurityManager: Java 17 is the oldest we test, and Java 24
# removed the SecurityManager for good (JEP 486).
MIN_JAVA, FIRST_JAVA_WITHOUT_SECURITY_MANAGER = 17, 24
JAVA_INSTALL_HINT = (
    "Install one (Debian/Ubuntu: `apt-get install -y openjdk-17-jre-headless`) or set JAVA_HOME to a "
    "Java 17-23 installation."
)
VERSION_LINE = re.compile(r'^(?P<name>\S+) version "(?P<version>[^"]+)"', re.MULTILINE)


def find_java(java_home: str | os.PathLike[str] | None = None) -> Path | None:
    """Locate the ``java`` executable: ``java_home``, else ``$JAVA_HOME``, else ``java`` on PATH.

    Parameters
    ----------
    java_home : path-like, optional
        A Java installation directory (the one holding ``bin/java``).

    Returns
    -------
    Path or None
        The executable, or None when there is none.
    """
    home = java_home or os.environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / "java"
        return candidate if candidate.is_file() and os.access(candidate, os.X_OK) else None
    found = shutil.which("java")
    return Path(found) if found else None


def java_version(java_home: str | os.PathLike[str] | None = None) -> tuple[int, str] | None:
    """Report the major version and the version line of the Java that :func:`find_java` picks.

    Parameters
    ----------
    java_home : path-like, optional
        A Java installation directory; see :func:`find_java`.

    Returns
    -------
    tuple of (int, str) or None
        ``(17, 'openjdk version "17.0.15" 2025-04-15')``, or None when Java is missing or does not run.
    """
    java = find_java(java_home)
    if java is None:
        return None
    return java_version_of(str(java))


@cache
def java_version_of(java: str) -> tuple[int, str] | None:
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = VERSION_LINE.search(done.stderr)
    if done.returncode or match is None:
        return None
    major = re.match(r"(?:1\.)?(\d+)", match["version"])  # "1.8.0_402" is Java 8, "17.0.15" Java 17
    if major is None:
        return None
    return int(major[1]), match.group(0) + done.stderr[match.end() :].split("\n", 1)[0]


def cache_root() -> Path:
    """Where Parity caches what it builds (compiled Java, the aarch64 target): ``$PARITY_CACHE_DIR`` or
    ``~/.cache/parity``."""
    override = os.environ.get("PARITY_CACHE_DIR")
    return Path(override) if override else Path.home() / ".cache" / "parity"


def crash_log_options() -> tuple[str, ...]:
    """JVM options that write a crashing JVM's ``hs_err_pid*.log`` and ``replay_pid*.log`` into
    ``<cache_root>/jvm-crashes/`` (created here) instead of the user's working folder.

    Returns
    -------
    tuple of str
        ``-XX:ErrorFile=...`` and ``-XX:ReplayDataFile=...`` (``%p`` is the JVM's PID).
    """
    folder = cache_root() / "jvm-crashes"
    folder.mkdir(parents=True, exist_ok=True)
    return (f"-XX:ErrorFile={folder}/hs_err_pid%p.log", f"-XX:ReplayDataFile={folder}/replay_pid%p.log")


def compile_java(
    source: Path, classpath: Sequence[str], java: Path, version_line: str, cache_root: Path
) -> Path:
    """Compile ``source`` against ``classpath``; return the directory holding its classes.

    Parameters
    ----------
    source : Path
        One ``.java`` file.
    classpath : sequence of str
        Jars it compiles against.
    java : Path
        The ``java`` executable; ``javac`` next to it is used, else the JDK compiler module through
        ``java -m jdk.compiler/...`` (Debian's JRE ships that module).
    version_line : str
        The Java version line: part of the cache key, with the source's bytes.
    cache_root : Path
        Parent of the ``java/<sha256>/`` class directories.

    Raises
    ------
    EnvironmentProblem
        When compilation fails.
    """
    key = hashlib.sha256(source.read_bytes() + b"\0" + version_line.encode()).hexdigest()
    target = cache_root / "java" / key
    if (target / f"{source.stem}.class").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=target.parent))
    javac = java.resolve().with_name("javac")
    compiler = [str(javac)] if javac.is_file() else [str(java), "-m", "jdk.compiler/com.sun.tools.javac.Main"]
    command = [*compiler, "-nowarn", "-cp", os.pathsep.join(classpath), "-d", str(staging), str(source)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        shutil.rmtree(staging, ignore_errors=True)
        raise EnvironmentProblem(
            f"{source.name}: compiling with {compiler[0]} failed (exit {done.returncode}):\n"
            f"{done.stdout}{done.stderr}Install a full JDK (`apt-get install -y openjdk-17-jdk-headless`)."
        )
    try:
        staging.rename(target)  # atomic: a concurrent compile of the same key simply loses the race
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
    return target
