"""Compile Parity's small Java programs once per source and Java version, into a cache."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .errors import EnvironmentProblem

#: Options for every JVM Parity starts: several run at once on a 2-core machine next to Python, so each
#: takes the single-threaded collector and a smaller code cache instead of per-core GC threads and the
#: 240 MB default, and starts with a small heap (the default initial heap is 1/64 of RAM, whose young
#: generation a JVM fills, and so touches, before its first collection); -Xmx still bounds growth.
LEAN_JVM_OPTIONS: tuple[str, ...] = ("-XX:+UseSerialGC", "-XX:ReservedCodeCacheSize=64m", "-Xss1m", "-Xms32m")


def cache_root() -> Path:
    """Where Parity caches what it builds (compiled Java, the aarch64 target): ``$PARITY_CACHE_DIR`` or
    ``~/.cache/parity``."""
    override = os.environ.get("PARITY_CACHE_DIR")
    return Path(override) if override else Path.home() / ".cache" / "parity"


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
