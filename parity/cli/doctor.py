"""``parity doctor``: check the toolchain and say what is missing and how to fix it."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import re
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from zipfile import ZipFile

from parity.core.errors import EnvironmentProblem

from .exits import EXIT_OK, EXIT_USAGE

#: Days before the sklearn2pmml build expires from which doctor warns.
EXPIRY_WARNING_DAYS = 60


@dataclass(frozen=True)
class Finding:
    """One check: ``ok`` False means the pipeline cannot run; ``warn`` marks something to act on soon."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    warn: bool = False


def max_sklearn_for_sklearn2pmml() -> str | None:
    """The newest scikit-learn version the installed sklearn2pmml converter accepts.

    JPMML-SkLearn compares pickles' ``_sklearn_version`` against a constant in ``sklearn/Step.class``;
    read it from the class file's constant pool instead of hard-coding it here.
    """
    from sklearn2pmml.resources import _package_classpath

    for jar in _package_classpath():
        with ZipFile(jar) as archive:
            if "sklearn/Step.class" in archive.namelist():
                raw = archive.read("sklearn/Step.class")
                # CONSTANT_Utf8 entries: tag 1, a two-byte length, then the text
                found = re.findall(rb"\x01\x00[\x05-\x08](\d+\.\d+\.\d+)", raw)
                return found[0].decode() if found else None
    return None


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def check_python() -> Finding:
    ok = sys.version_info >= (3, 11)
    return Finding(
        "python", ok, sys.version.split()[0], "" if ok else "Use Python 3.11 or newer (Prefect 3.9 needs it)."
    )


def check_java() -> Finding:
    from parity.core.java import (
        FIRST_JAVA_WITHOUT_SECURITY_MANAGER,
        JAVA_INSTALL_HINT,
        MIN_JAVA,
        java_version,
    )

    found = java_version()
    if found is None:
        return Finding("java", False, "not found on PATH or JAVA_HOME", JAVA_INSTALL_HINT)
    major, line = found
    ok = MIN_JAVA <= major < FIRST_JAVA_WITHOUT_SECURITY_MANAGER
    fix = (
        ""
        if ok
        else f"Parity needs Java {MIN_JAVA}-{FIRST_JAVA_WITHOUT_SECURITY_MANAGER - 1}. {JAVA_INSTALL_HINT}"
    )
    return Finding("java", ok, line, fix)


def check_sklearn() -> Finding:
    installed = importlib.metadata.version("scikit-learn")
    newest = max_sklearn_for_sklearn2pmml()
    if newest is None:
        return Finding("scikit-learn", True, f"{installed} (could not read the converter's limit)", warn=True)
    ok = _version_tuple(installed) <= _version_tuple(newest)
    detail = f"{installed}; sklearn2pmml {importlib.metadata.version('sklearn2pmml')} accepts up to {newest}"
    return Finding(
        "scikit-learn", ok, detail, "" if ok else f"pip install 'scikit-learn=={newest}' (or `make setup`)."
    )


def check_sklearn2pmml_expiry(today: date | None = None) -> Finding:
    from parity.converters.pmml_server import sklearn2pmml_build_date, sklearn2pmml_expiry_date

    today = today or date.today()
    expiry = sklearn2pmml_expiry_date()
    left = (expiry - today).days
    detail = f"built {sklearn2pmml_build_date()}, refuses to run from {expiry} ({left} days left)"
    if left <= 0:
        return Finding("sklearn2pmml", False, detail, "Upgrade sklearn2pmml (and the pinned set with it).")
    warn = left <= EXPIRY_WARNING_DAYS
    return Finding(
        "sklearn2pmml",
        True,
        detail,
        "Plan an upgrade of sklearn2pmml before it expires." if warn else "",
        warn,
    )


def check_onnxruntime() -> Finding:
    try:
        import onnxruntime
    except ImportError as err:
        return Finding("onnxruntime", False, str(err), "Run `make setup` to install the pinned set.")
    providers = onnxruntime.get_available_providers()
    ok = "CPUExecutionProvider" in providers
    return Finding(
        "onnxruntime",
        ok,
        f"{onnxruntime.__version__}, providers: {', '.join(providers)}",
        "" if ok else "Reinstall onnxruntime.",
    )


#: Seconds a configured Prefect API has to answer /health. A dead port is refused at once, so only a live but
#: busy server waits: on a 2-core machine at load 10 its answer can take longer than the old 5 s, and a
#: working API must not be reported unreachable (issue 9).
API_CHECK_TIMEOUT_S = 30


def check_prefect_api() -> Finding:
    from parity.registry.events import prefect_api_url

    url = prefect_api_url()  # the environment or the active Prefect profile, as `parity run` sees it
    if not url:
        return Finding("prefect api", True, "none configured: `parity run` uses a temporary local server")
    import httpx

    try:
        response = httpx.get(url.rstrip("/") + "/health", timeout=API_CHECK_TIMEOUT_S)
        ok = response.status_code == 200
        detail = f"{url} answered {response.status_code}"
    except httpx.HTTPError as err:
        ok, detail = False, f"{url} unreachable: {err}"
    fix = (
        "" if ok else "Start the server (`prefect server start`) or unset PREFECT_API_URL to run without one."
    )
    return Finding("prefect api", ok, detail, fix)


def check_targets(path: str | None = None) -> Finding:
    """Every target of the table: a required one that is not ready means no model can pass.

    Parameters
    ----------
    path : str, optional
        A targets file; default ``$PARITY_TARGETS``, else the built-in table.
    """
    from parity.validators.targets.reaches import unavailable
    from parity.validators.targets.table import load_targets

    problems = {t.name: (t.required, unavailable(t)) for t in load_targets(path).values()}
    missing = [f"{name}: {why}" for name, (required, why) in problems.items() if why and required]
    skipped = [
        f"{name} (optional): {why}" for name, (required, why) in problems.items() if why and not required
    ]
    ready = [name for name, (_, why) in problems.items() if not why]
    detail = "; ".join(missing + skipped) or f"all ready ({', '.join(ready)})"
    if missing:
        return Finding("targets", False, detail, "Set up the required targets (see `parity targets`).")
    return Finding("targets", True, detail, warn=bool(skipped))


def check_archive(archive: str | os.PathLike[str]) -> Finding:
    """The archive folder takes files: it is a folder, or can be made one, where a file can be written.

    Writability is tried with a real write (a temporary file, removed at once): permission bits say nothing
    to root, and a read-only mount or a path under a regular file refuses root too.

    Parameters
    ----------
    archive : path-like or str
        The archive folder (it need not exist yet), or an fsspec URL (``s3://bucket/prefix``), which is tried
        with a real write too.
    """
    text = os.fspath(archive)
    if "://" in text and not text.startswith("file://"):
        return _check_archive_url(text)
    path = Path(text.removeprefix("file://"))
    existing = next(p for p in (path, *path.parents) if p.exists())  # '.' or '/' exists at the latest
    if not existing.is_dir():
        return Finding(
            "archive",
            False,
            f"{path} cannot be a folder: {existing} is a file",
            "Pass --archive a folder (new or existing), or move that file away.",
        )
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".parity-write-check-") as probe:
            probe.write(b"parity")
            probe.flush()
    except OSError as err:
        return Finding(
            "archive",
            False,
            f"{path} is not writable: writing in {existing} failed ({err.strerror or err})",
            "Make it writable (its owner or permissions, or mount it read-write), or pass --archive a "
            "writable folder.",
        )
    return Finding("archive", True, f"{path} is writable" + ("" if existing == path else " (to be created)"))


def _check_archive_url(url: str) -> Finding:
    """An archive on object storage takes files: a small object is written and removed."""
    from parity.archive import open_store
    from parity.core.errors import ArchiveError

    probe = f"extensions/parity-write-check-{uuid.uuid4().hex}"
    try:
        store = open_store(url)
        store.write(probe, b"parity")
        store.remove(probe)
    except ArchiveError as err:
        return Finding(
            "archive", False, str(err), "Pass --archive a folder or a URL such as s3://bucket/prefix."
        )
    except Exception as err:  # the filesystem's own errors: no credentials, no bucket, no network
        return Finding(
            "archive",
            False,
            f"{url} is not writable: {type(err).__name__}: {str(err).strip()[:300]}",
            "Check that the bucket exists and that the credentials (read the standard way: for S3, "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or ~/.aws/credentials, and AWS_ENDPOINT_URL for a "
            "non-AWS server) may write there.",
        )
    return Finding("archive", True, f"{url} is writable")


#: Every check doctor runs, in order.
CHECKS = (
    check_python,
    check_java,
    check_sklearn,
    check_sklearn2pmml_expiry,
    check_onnxruntime,
    check_prefect_api,
    check_targets,
)


def run_checks(checks: Iterable[Callable[[], Finding]] = CHECKS) -> list[Finding]:
    """Run ``checks`` (default :data:`CHECKS`); a check that crashes is reported as a failed finding."""
    findings = []
    for check in checks:
        try:
            findings.append(check())
        except Exception as err:
            name = getattr(check, "func", check).__name__.removeprefix("check_")  # a partial names its func
            findings.append(
                Finding(name, False, f"check crashed: {type(err).__name__}: {err}", "Run `make setup`.")
            )
    return findings


def doctor() -> int:
    """Print every finding of :func:`run_checks` and how to fix what fails.

    Returns
    -------
    int
        ``EXIT_OK`` when the pipeline can run, ``EXIT_USAGE`` when a check failed.
    """
    findings = run_checks()
    for f in findings:
        mark = "ok  " if f.ok and not f.warn else ("warn" if f.ok else "FAIL")
        print(f"[{mark}] {f.name}: {f.detail}")
        if f.fix:
            print(f"       fix: {f.fix}")
    bad = [f.name for f in findings if not f.ok]
    print("the pipeline can run" if not bad else f"the pipeline cannot run: fix {', '.join(bad)}")
    return EXIT_OK if not bad else EXIT_USAGE


#: Doctor's checks that ``run`` and ``demo`` make before validating anything (each would otherwise stop the
#: run later: after models were validated, or with a traceback); :func:`preflight` adds the run's targets
#: table (:func:`check_targets`) and its archive (:func:`check_archive`).
RUN_CHECKS = (check_java, check_sklearn, check_sklearn2pmml_expiry, check_prefect_api)


def preflight(archive: str | os.PathLike[str], targets: str | None = None) -> None:
    """Refuse to start a run the toolchain cannot finish, with doctor's words; then create the archive.

    Runs :data:`RUN_CHECKS`, :func:`check_targets` on ``targets`` and :func:`check_archive`; warnings (an
    optional target not ready, a converter close to expiry) go to stderr.

    Parameters
    ----------
    archive : path-like
        The run's archive folder; created when every check passed.
    targets : str, optional
        The run's targets file; default ``$PARITY_TARGETS``, else the built-in table.

    Raises
    ------
    EnvironmentProblem
        Java, scikit-learn, the sklearn2pmml build, the configured Prefect API, a required target or the
        archive would stop the run; the message gives each fix.
    """
    from parity.core.prefect_env import configure

    configure()  # before the Prefect API check imports Prefect, which freezes its settings then
    bound = (functools.partial(check_targets, targets), functools.partial(check_archive, archive))
    findings = run_checks((*RUN_CHECKS, *bound))
    problems = [f for f in findings if not f.ok]
    if problems:
        raise EnvironmentProblem(
            "; ".join(f"{f.name}: {f.detail}. {f.fix}" for f in problems) + " (see `parity doctor`)"
        )
    for f in findings:
        if f.warn:
            print(f"parity: warning: {f.name}: {f.detail}. {f.fix}".rstrip(), file=sys.stderr)
    try:
        Path(archive).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise EnvironmentProblem(
            f"archive: could not create {archive}: {err}. Pass a writable --archive."
        ) from err
