"""The ``parity`` command line: doctor, register, models, run, demo, targets, deploy, serve, audit."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from parity.core.defaults import DEFAULT_ARCHIVE, DEFAULT_REGISTRY, PROGRESS_LOGGER
from parity.core.errors import EnvironmentProblem, InvalidInputError, ParityError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _print_table(rows: list[dict], columns: Sequence[str]) -> None:
    if not rows:
        return
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for row in rows:
        print("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))


# -- doctor ----------------------------------------------------------------------------------------------
def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import run_checks

    findings = run_checks()
    for f in findings:
        mark = "ok  " if f.ok and not f.warn else ("warn" if f.ok else "FAIL")
        print(f"[{mark}] {f.name}: {f.detail}")
        if f.fix:
            print(f"       fix: {f.fix}")
    bad = [f.name for f in findings if not f.ok]
    print("the pipeline can run" if not bad else f"the pipeline cannot run: fix {', '.join(bad)}")
    return EXIT_OK if not bad else EXIT_USAGE


def preflight() -> None:
    """Refuse to start a run the toolchain cannot finish (exit 2), with doctor's words."""
    from .doctor import check_java, check_sklearn, check_sklearn2pmml_expiry

    problems = [f for f in (check_java(), check_sklearn(), check_sklearn2pmml_expiry()) if not f.ok]
    if problems:
        raise EnvironmentProblem(
            "; ".join(f"{f.name}: {f.detail}. {f.fix}" for f in problems) + " (see `parity doctor`)"
        )


# -- register / models -----------------------------------------------------------------------------------
def read_table(path: Path):
    """A reference data file: parquet or CSV."""
    import pandas as pd

    if not path.is_file():
        raise InvalidInputError(f"reference data file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix == ".csv":
        return pd.read_csv(path)
    raise InvalidInputError(f"{path}: reference data must be .parquet or .csv, got {suffix or 'no suffix'}.")


def _pairs(items: list[str], what: str, example: str) -> dict[str, str]:
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise InvalidInputError(f"{what} {item!r} must look like {example}.")
        result[key] = value
    return result


def parse_cv_scores(items: list[str]) -> dict[str, float | list[float]]:
    """``accuracy=0.91`` or ``accuracy=0.9,0.92,0.95`` → ``{"accuracy": ...}``."""
    scores: dict[str, float | list[float]] = {}
    for key, value in _pairs(items, "--cv-score", "NAME=VALUE[,VALUE...]").items():
        try:
            numbers = [float(v) for v in value.split(",")]
        except ValueError:
            raise InvalidInputError(f"--cv-score {key}={value}: scores must be numbers.") from None
        scores[key] = numbers[0] if len(numbers) == 1 else numbers
    return scores


def parse_tolerances(items: list[str]) -> dict[str, dict[str, float]]:
    """``probability=atol:1e-3,rtol:1e-2`` → ``{"probability": {"atol": 0.001, "rtol": 0.01}}``."""
    result: dict[str, dict[str, float]] = {}
    for key, value in _pairs(items, "--tolerance", "KIND=atol:X[,rtol:Y]").items():
        band = {}
        for part in value.split(","):
            name, _, number = part.partition(":")
            if name not in ("atol", "rtol"):
                raise InvalidInputError(f"--tolerance {key}: use atol:X and/or rtol:Y, got {part!r}.")
            try:
                band[name] = float(number)
            except ValueError:
                raise InvalidInputError(f"--tolerance {key}: {number!r} is not a number.") from None
        result[key] = band
    return result


def cmd_register(args: argparse.Namespace) -> int:
    from parity.registry import FileRegistry

    reference = read_table(Path(args.reference))
    ref = FileRegistry(args.registry).register(
        None,
        reference,
        args.name,
        version=args.version,
        model_file=args.model_file,
        trust_pickle=args.trust_pickle,
        sha256=args.sha256,
        trusted_types=args.trusted_type,
        training_data_uri=args.training_data,
        training_data_snapshot=args.training_snapshot,
        source_files=args.source or [],
        cv_scores=parse_cv_scores(args.cv_score),
        tolerances=parse_tolerances(args.tolerance),
    )
    print(f"registered {ref} in {args.registry}")
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    from parity.archive import Archive
    from parity.registry import FileRegistry

    registry, shelf = FileRegistry(args.registry), Archive(args.archive)
    rows = []
    for ref in registry.refs():
        record = registry.record(ref)
        rejected = len(shelf.rejected(ref.name, ref.version))
        state = "archived" if shelf.is_archived(ref.name, ref.version) else ("rejected" if rejected else "no")
        rows.append(
            {
                "name": ref.name,
                "version": ref.version,
                "estimator": record.estimator_summary,
                "registered_at": record.registered_at,
                "archived": state + (f" ({rejected} rejected)" if rejected and state == "archived" else ""),
            }
        )
    if not rows:
        print(f"no models registered in {args.registry}")
    _print_table(rows, ["name", "version", "estimator", "registered_at", "archived"])
    return EXIT_OK


# -- run / demo ------------------------------------------------------------------------------------------


def _quiet_prefect_console(verbose: bool) -> None:
    """Prefect's console handler prints every task transition; keep the terminal for Parity's progress.

    Its logs still reach the Prefect API (and so the UI) at their usual level.
    """
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")


def _warm_up_jvms() -> None:
    """Start the three JVMs in the background while Prefect's temporary server boots: each takes seconds,
    and they would otherwise start one after another inside the first model's flow."""
    import threading

    def start() -> None:
        from parity.converters import shared_pmml_converter
        from parity.validators import RUNTIMES

        for starter in (
            shared_pmml_converter().start,
            RUNTIMES["jpmml_evaluator"].start,
            RUNTIMES["pypmml"].start,
        ):
            try:
                starter()
            except Exception:  # the first real use reports the problem properly
                return

    threading.Thread(target=start, name="parity-jvm-warm-up", daemon=True).start()


def _local_run_settings():
    """Settings for a run on Prefect's temporary server: no flow-run heartbeats.

    Heartbeats let a long-lived server notice crashed runs; a temporary server dies with this process, and
    each flow run would otherwise wait up to a second for its heartbeat thread to stop.
    """
    import contextlib

    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    if PREFECT_API_URL.value():
        return contextlib.nullcontext()
    return temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


def run_pipeline(registry: str, archive: str, models: list[str] | None, verbose: bool = False) -> int:
    """Validate the registry with Prefect (a temporary local server when none is configured)."""
    from parity.core.prefect_env import configure

    configure()
    _quiet_prefect_console(verbose)
    preflight()
    from parity.flows.summary import TABLE_COLUMNS, table_rows
    from parity.flows.validate import result_data, selected_versions, validate_registry

    if selected_versions(str(registry), str(archive), models or None):
        _warm_up_jvms()
    progress = logging.getLogger(PROGRESS_LOGGER)
    progress.setLevel(logging.INFO)
    progress.propagate = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("  %(message)s"))
    progress.addHandler(handler)
    print(f"validating {registry} -> {archive}", file=sys.stderr)
    try:
        with _local_run_settings():
            state = validate_registry(str(registry), str(archive), models or None, return_state=True)
    finally:
        progress.removeHandler(handler)
    reports = result_data(state)
    if isinstance(reports, BaseException):
        raise reports
    rows = []
    for report in reports:
        for row in table_rows(report):
            rows.append({"model": f"{report.name}:{report.version}", **row})
    _print_table(rows, ["model", *(c for c in TABLE_COLUMNS if c != "max_rel")])
    print()
    for report in reports:
        where = report.bundle or report.error or ""
        print(f"{report.name}:{report.version}: {report.outcome} -> {where}")
    print(state.message or "")  # type: ignore[attr-defined]  # a State: the flow ran synchronously
    if not reports:
        return EXIT_OK
    return EXIT_OK if all(r.outcome == "passed" for r in reports) else EXIT_FAILED


def _use_targets(path: str | None) -> None:
    """Point this run at a targets table; read it now so a bad file is a usage error before any work, and
    say up front which required targets are not ready (each model will fail on them, with the fix)."""
    from parity.validators.targets.reaches import unavailable
    from parity.validators.targets.table import load_targets

    if path:
        os.environ["PARITY_TARGETS"] = str(Path(path).resolve())
    for target in load_targets().values():
        problem = unavailable(target)
        if problem:
            kind = "required: every model will fail on it" if target.required else "optional: skipped"
            print(f"target {target.name} is not ready ({kind}): {problem}", file=sys.stderr)


def cmd_targets(args: argparse.Namespace) -> int:
    from parity.validators.targets.reaches import unavailable
    from parity.validators.targets.table import load_targets

    if args.action == "setup":
        from parity.validators.targets.aarch64 import setup_aarch64

        env = setup_aarch64()
        print(f"aarch64 target ready in {env.cache_dir} (emulated CPU {env.cpu})")
        return EXIT_OK
    if args.targets:
        os.environ["PARITY_TARGETS"] = str(Path(args.targets).resolve())
    rows = []
    for target in load_targets().values():
        problem = unavailable(target)
        rows.append(
            {
                "name": target.name,
                "platform": target.platform,
                "reach": target.reach + (f" ({target.deployment})" if target.deployment else ""),
                "required": "yes" if target.required else "no",
                "settings": ", ".join(f"{k}={v}" for k, v in target.settings().items()),
                "ready": "yes" if problem is None else f"no: {problem}",
            }
        )
    _print_table(rows, ["name", "platform", "reach", "required", "settings", "ready"])
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    _use_targets(args.targets)
    return run_pipeline(args.registry, args.archive, args.model, args.verbose)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import build_demo_registry

    _use_targets(None)
    build_demo_registry(Path(args.registry))
    return run_pipeline(args.registry, args.archive, None, args.verbose)


# -- deploy / serve / audit ------------------------------------------------------------------------------
def cmd_deploy(args: argparse.Namespace) -> int:
    from parity.core.prefect_env import configure

    configure()
    from parity.deployments.deploy import WORK_POOLS, deploy

    output = deploy(args.registry, args.archive)
    print(output.strip())
    print(
        f"work pools: {', '.join(WORK_POOLS)}; start a worker with `prefect worker start --pool parity-x86-64`"
    )
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from parity.core.prefect_env import configure

    configure()
    from parity.deployments.deploy import serve

    serve(args.registry, args.archive, limit=args.limit)
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    from parity.core.prefect_env import configure

    configure()
    _quiet_prefect_console(args.verbose)
    from parity.flows.audit import AUDIT_COLUMNS, audit_archive, audit_rows, audits_of

    state = audit_archive(str(args.archive), replay=not args.no_replay, return_state=True)
    audits = audits_of(state)
    _print_table(audit_rows(audits), AUDIT_COLUMNS)
    print(state.message or "")  # type: ignore[attr-defined]  # a State: the flow ran synchronously
    return EXIT_OK if all(a.status == "ok" for a in audits) else EXIT_FAILED


# -- parser ----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parity",
        description="Prove that scikit-learn models converted to ONNX and PMML predict what the originals predict.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def places(sub: argparse.ArgumentParser, archive: bool = True) -> None:
        sub.add_argument(
            "--registry", default=DEFAULT_REGISTRY, help="registry folder (default: %(default)s)"
        )
        if archive:
            sub.add_argument(
                "--archive", default=DEFAULT_ARCHIVE, help="archive folder (default: %(default)s)"
            )

    sub = commands.add_parser("doctor", help="check the toolchain and say how to fix what is missing")
    sub.set_defaults(func=cmd_doctor)

    sub = commands.add_parser("register", help="register a saved model with its reference data")
    sub.add_argument(
        "model_file", help="model file: .skops, or .pkl/.joblib with --trust-pickle and --sha256"
    )
    sub.add_argument(
        "--reference", required=True, help="reference rows (.parquet or .csv) with named columns"
    )
    sub.add_argument("--name", required=True, help="model name")
    sub.add_argument("--version", type=int, help="version number (default: the next one)")
    sub.add_argument(
        "--trust-pickle", action="store_true", help="accept a pickle/joblib file (needs --sha256)"
    )
    sub.add_argument("--sha256", help="expected SHA-256 of a pickle/joblib file, checked before unpickling")
    sub.add_argument(
        "--trusted-type",
        action="append",
        default=[],
        metavar="TYPE",
        help="a reviewed type the skops file may hold",
    )
    sub.add_argument("--training-data", metavar="URI", help="where the training data lives")
    sub.add_argument(
        "--training-snapshot", metavar="FILE", help="a snapshot of the training data; its SHA-256 is recorded"
    )
    sub.add_argument(
        "--source", action="append", metavar="FILE", help="training source file to keep (repeatable)"
    )
    sub.add_argument(
        "--cv-score", action="append", default=[], metavar="NAME=V[,V...]", help="cross-validation score(s)"
    )
    sub.add_argument(
        "--tolerance", action="append", default=[], metavar="KIND=atol:X,rtol:Y", help="tolerance override"
    )
    places(sub, archive=False)
    sub.set_defaults(func=cmd_register)

    sub = commands.add_parser("models", help="list the registry")
    places(sub)
    sub.set_defaults(func=cmd_models)

    sub = commands.add_parser("run", help="convert, validate and archive every model not archived yet")
    places(sub)
    sub.add_argument("--model", action="append", metavar="NAME[:VERSION]", help="only these (repeatable)")
    sub.add_argument(
        "--targets", metavar="FILE", help="targets table (default: $PARITY_TARGETS or the built-in)"
    )
    sub.add_argument("--verbose", action="store_true", help="show Prefect's own log lines")
    sub.set_defaults(func=cmd_run)

    sub = commands.add_parser("demo", help="build a demo registry from bundled data sets, then run")
    places(sub)
    sub.add_argument("--verbose", action="store_true", help="show Prefect's own log lines")
    sub.set_defaults(func=cmd_demo)

    sub = commands.add_parser(
        "deploy", help="create the work pools and register the deployments of deployments/prefect.yaml"
    )
    places(sub)
    sub.set_defaults(func=cmd_deploy)

    sub = commands.add_parser(
        "serve", help="serve the same schedules and triggers from this process (no work pools)"
    )
    places(sub)
    sub.add_argument("--limit", type=int, help="most flow runs at once (default: no limit)")
    sub.set_defaults(func=cmd_serve)

    sub = commands.add_parser(
        "audit", help="re-check every archive bundle's checksums and replay it in today's runtimes"
    )
    sub.add_argument("--archive", default=DEFAULT_ARCHIVE, help="archive folder (default: %(default)s)")
    sub.add_argument("--no-replay", action="store_true", help="check the checksums only")
    sub.add_argument("--verbose", action="store_true", help="show Prefect's own log lines")
    sub.set_defaults(func=cmd_audit)

    sub = commands.add_parser("targets", help="list the targets and whether each is ready; set one up")
    sub.add_argument(
        "--targets", metavar="FILE", help="targets table (default: $PARITY_TARGETS or the built-in)"
    )
    actions = sub.add_subparsers(dest="action", metavar="ACTION")
    setup = actions.add_parser("setup", help="provision an emulated target on this machine (idempotent)")
    setup.add_argument("platform", choices=["aarch64"], help="what to provision")
    sub.set_defaults(func=cmd_targets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``parity`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ParityError as err:
        print(f"parity: error: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
