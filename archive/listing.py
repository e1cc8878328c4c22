"""``parity archive ls`` and ``show``: what the archive holds, read from inventories and small files only.

Listing never downloads a whole object: it reads each bundle's inventory, ``report.json`` and its newest
audit, and asks the store for the object's size, so it costs the same on a folder and on object storage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from parity.core.errors import IntegrityError, InvalidInputError, RecordError
from parity.core.records import BundleAudit, ConversionStatus, Metadata, Report

from . import ocfl
from .bundle import AUDITS, REPORT, Archive
from .export import content_path_ok, path_list

CARD = "card.md"
METADATA = "metadata.json"
NEVER = "never"
#: What ``ls`` shows of an object whose inventory it cannot read (``parity audit`` says why).
UNREADABLE = "unreadable"
#: Columns of ``parity archive ls``, in order.
COLUMNS = ("name", "version", "verdict", "size", "formats", "last_audit", "rejected", "layout")
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


@dataclass(frozen=True)
class Entry:
    """One archived version as ``parity archive ls`` shows it."""

    name: str
    version: int
    verdict: str
    size: int
    formats: tuple[str, ...]
    last_audit: str
    rejected: int
    layout: str

    def row(self) -> dict[str, str]:
        return {
            "name": self.name,
            "version": str(self.version),
            "verdict": self.verdict,
            "size": human_size(self.size),
            "formats": ", ".join(self.formats) or "-",
            "last_audit": self.last_audit,
            "rejected": str(self.rejected),
            "layout": self.layout,
        }


def human_size(size: int) -> str:
    """``1536`` → ``1.5 KiB``; bytes below 1024 as they are."""
    value = float(size)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def object_size(archive: Archive, name: str, version: int) -> int:
    """The bytes of every file of a version's object (its folder, for a legacy bundle)."""
    store = archive.store
    try:
        return int(store.fs.du(store.full(archive.key(name, version)), total=True))
    except FileNotFoundError:
        return 0


def state(archive: Archive, name: str, version: int, number: int | None = None) -> dict[str, str] | None:
    """Logical path → content path of one version of a bundle's object (default: the head); None: legacy.

    Raises
    ------
    IntegrityError
        The inventory is not one, lacks a key, names a digest its manifest lacks, or gives a content path
        outside ``vN/content/``.
    """
    inventory = archive.inventory(name, version)
    if inventory is None:
        return None
    where = f"{archive.object_url(name, version)}/{ocfl.INVENTORY}"
    try:
        entries = inventory.data["versions"][f"v{number or inventory.head}"]["state"].values()
        if not all(path_list(names) for names in (*entries, *inventory.manifest.values())):
            raise TypeError("a state or manifest entry is not a list of paths")
        found = inventory.state(number)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        raise IntegrityError(
            f"{where}: malformed ({type(err).__name__}: {err}); run `parity audit`"
        ) from None
    bad = sorted(str(path) for path in found.values() if not content_path_ok(path))
    if bad:
        raise IntegrityError(
            f"{where}: content paths outside vN/content/: {', '.join(bad)}; run `parity audit`"
        )
    return found


def last_audit(archive: Archive, name: str, version: int) -> str:
    """The newest audit kept in a bundle's object: ``<when> <status>``, ``never``, or ``unreadable`` (the
    inventory or the audit cannot be read)."""
    try:
        found = state(archive, name, version)
    except IntegrityError:
        return UNREADABLE
    if found is None:
        return NEVER
    kept = sorted(p for p in found if p.startswith(f"{AUDITS}/") and p.endswith(".json"))
    if not kept:
        return NEVER
    when = kept[-1].removeprefix(f"{AUDITS}/").removesuffix(".json")
    raw = archive.store.read(f"{archive.key(name, version)}/{found[kept[-1]]}")
    try:
        status = str(BundleAudit.model_validate_json(raw or b"").status)
    except ValueError:
        status = UNREADABLE
    return f"{when} {status}"


def artifact_formats(archive: Archive, name: str, version: int) -> tuple[str, ...]:
    """The formats of the artifact files a bundle holds (for a report that lists no conversion).

    Each format's spec names its file (``model.onnx``...); a variant (``model-double.onnx``) counts for its
    format by its suffix. The original model (``model.skops``) is no format.
    """
    try:
        first = state(archive, name, version, 1)
    except IntegrityError:
        return ()
    files = list(first) if first is not None else archive.store.files(archive.key(name, version))
    if not any(f.startswith("model") and not f.endswith(".skops") for f in files):
        return ()  # no artifact: spare the import of the formats table
    from parity.validators.formats import FORMATS

    suffixes = {Path(spec.filename).suffix: fmt for fmt, spec in FORMATS.items()}
    return tuple(
        sorted(
            {suffixes[Path(f).suffix] for f in files if f.startswith("model") and Path(f).suffix in suffixes}
        )
    )


def entry(archive: Archive, name: str, version: int) -> Entry:
    """What ``parity archive ls`` shows of one archived version."""
    try:
        report = archive.record_at(archive.key(name, version), REPORT, Report)
        verdict = str(report.outcome)
        formats = tuple(
            sorted({c.format for c in report.conversions.values() if c.status is ConversionStatus.CONVERTED})
        )
    except (OSError, RecordError):
        verdict, formats = "unreadable", ()
    formats = formats or artifact_formats(archive, name, version)
    return Entry(
        name=name,
        version=version,
        verdict=verdict,
        size=object_size(archive, name, version),
        formats=formats,
        last_audit=last_audit(archive, name, version),
        rejected=len(archive.rejected(name, version)),
        layout=_layout(archive, name, version),
    )


def _layout(archive: Archive, name: str, version: int) -> str:
    if archive.is_legacy(name, version):
        return "legacy"
    try:
        state(archive, name, version)
    except IntegrityError:
        return UNREADABLE
    return "ocfl"


def entries(archive: Archive) -> list[Entry]:
    """One :class:`Entry` per archived version, sorted by name and version."""
    return [entry(archive, name, version) for name, version in archive.versions()]


def parse_ref(text: str) -> tuple[str, int]:
    """``iris-lr:3`` → ``("iris-lr", 3)``.

    Raises
    ------
    InvalidInputError
        Not ``NAME:VERSION`` with a model name and a decimal version.
    """
    from parity.core.numbers import decimal_int
    from parity.registry.store import is_model_name

    name, _, number = text.rpartition(":")
    version = decimal_int(number)
    if not name or version is None or not is_model_name(name):
        raise InvalidInputError(f"{text!r}: expected NAME:VERSION, e.g. iris-lr:1")
    return name, version


def card(archive: Archive, name: str, version: int) -> tuple[str, bool]:
    """A bundle's card: ``card.md`` when it has one, else a short summary of its report and metadata.

    Returns
    -------
    (str, bool)
        The text, and whether it is the bundle's own ``card.md`` (False: the summary).

    Raises
    ------
    InvalidInputError
        ``name:version`` is not archived.
    """
    if not archive.is_archived(name, version):
        known = ", ".join(f"{n}:{v}" for n, v in archive.versions() if n == name) or "none"
        raise InvalidInputError(
            f"{name}:{version}: not archived in {archive.location} (archived versions of {name}: {known})"
        )
    own = archive.read(name, version, CARD)
    if own is not None:
        return own.decode("utf-8", errors="replace"), True
    return summary(archive, name, version), False


def summary(archive: Archive, name: str, version: int) -> str:
    """A few lines on a bundle from its ``report.json`` and ``metadata.json`` (for bundles without a card)."""
    key = archive.key(name, version)
    lines = [f"# {name}:{version}", ""]
    try:
        report = archive.record_at(key, REPORT, Report)
        lines += [
            f"verdict: {report.outcome}",
            f"estimator: {report.estimator}",
            f"validated at: {report.validated_at}",
            f"reference rows: {report.reference_rows}",
        ]
        for fmt, conversion in sorted(report.conversions.items()):
            lines.append(f"conversion {fmt}: {conversion.status}")
        passed = sum(1 for c in report.checks if str(c.verdict) == "pass")
        lines.append(f"checks: {passed} of {len(report.checks)} passed")
    except (OSError, RecordError) as err:
        lines.append(f"report: unreadable ({err})")
    try:
        metadata = archive.record_at(key, METADATA, Metadata)
        lines += [f"registered at: {metadata.registered_at}", f"estimator type: {metadata.estimator_type}"]
    except (OSError, RecordError) as err:
        lines.append(f"metadata: unreadable ({err})")
    lines += [
        f"last audit: {last_audit(archive, name, version)}",
        f"location: {archive.object_url(name, version)}",
    ]
    return "\n".join(lines) + "\n"
