"""The model registry: candidate versions, a person's approval, promotion, rollback, and an audit log.

Built on the MLflow Model Registry (SQLite + local artifacts by default; a tracking server backed by
Postgres and S3 in production, chosen by ``MLFLOW_TRACKING_URI`` and the experiment's artifact root, see
:mod:`aigp.registry.tracking`). MLflow is imported lazily.

Lifecycle of a version (the ``aigp.state`` tag)::

    candidate ──approve (gate passed)──► approved ──promote──► production ──rollback──► rolled_back
        │                                   │                      │
        └──────────reject───────────────────┴──────reject (no alias)┴──► rejected (final)

* approval requires a passed offline gate; promotion requires approval; a rejected or rolled-back version
  is never promoted again (register a new candidate instead). Every refusal is a :class:`TransitionRefused`
  naming the version, its state and what is required.
* aliases: ``champion`` (the version serving traffic) and ``challenger`` (an approved version in an A/B
  test against the champion). ``rollback`` moves ``champion`` back to the previous production version.

Audit log (append-only, complete): every transition is one :class:`AuditEvent` (who, when, why, from and
to state, alias moves) with a per-model sequence number, written twice:

1. as an MLflow tag ``aigp.audit.<seq>`` on the version (never overwritten; lives in the tracking store,
   i.e. Postgres in production), and
2. as a line of ``<audit root>/<model>.jsonl`` (opened in append mode, fsynced) or, when the audit root
   is an ``s3://`` URI, as one immutable object ``<root>/<model>/<seq>.json`` per event.

The audit root is ``AIGP_REGISTRY_AUDIT`` if set, else ``audit/`` beside the SQLite store, else
``<AIGP_MLFLOW_ARTIFACTS>/registry-audit``. :meth:`ModelRegistry.verify_audit` checks that both copies
agree, that sequence numbers have no gap, and that replaying the events gives every version's state.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import hashlib
import json
import math
import os
import shutil
import subprocess
import tempfile
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

from aigp.gate_report import GateReport
from aigp.pricing import DEFAULT_MODEL_NAME, Resolver
from aigp.registry import tracking
from aigp.schema import to_date

REGISTRY_EXPERIMENT = "aigp-registry"
ALIASES = ("champion", "challenger")
MAX_REASON_CHARS = 2000

TAG_STATE = "aigp.state"
TAG_GATE_STATUS = "aigp.gate.status"
TAG_GATE_HTML = "aigp.gate.report_html"
GATE_HTML_NAME = "gate_report.html"  # artifact names of the gate report in the registry's MLflow run
GATE_JSON_NAME = "gate_report.json"
TAG_GATE_JSON = "aigp.gate.report_json"
TAG_GATE_REASONS = "aigp.gate.reasons"
TAG_METRICS = "aigp.metrics"
TAG_WINDOW_START = "aigp.data_window.start"
TAG_WINDOW_END = "aigp.data_window.end"
TAG_CODE_VERSION = "aigp.code_version"
TAG_PIPELINE_RUN = "aigp.pipeline_run_id"
TAG_AUDIT_PREFIX = "aigp.audit."


class VersionState(StrEnum):
    CANDIDATE = "candidate"
    APPROVED = "approved"
    REJECTED = "rejected"
    PRODUCTION = "production"
    ROLLED_BACK = "rolled_back"


class RegistryError(ValueError):
    """Something a user can fix: unknown model or version, bad argument. The message says what."""


class TransitionRefused(RegistryError):
    """A lifecycle transition the rules forbid. The message names the version, its state and what is required."""


@dataclass(frozen=True)
class DataWindow:
    """The time window of the data the candidate was trained on (inclusive days)."""

    start: dt.date
    end: dt.date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise RegistryError(f"data_window: end {self.end} is before start {self.start}")

    @classmethod
    def of(cls, value: DataWindow | Sequence[Any]) -> DataWindow:
        if isinstance(value, DataWindow):
            return value
        if len(value) != 2:
            raise RegistryError(f"data_window={value!r}: expected (start, end)")
        return cls(*(_to_date(v, "data_window") for v in value))


@dataclass(frozen=True)
class AuditEvent:
    seq: int
    model: str
    version: int
    action: str  # register | approve | reject | promote | rollback | retire-alias
    from_state: str | None
    to_state: str
    by: str
    at: str  # ISO 8601, UTC
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, where: str = "audit event") -> AuditEvent:
        """One event from its JSON; anything else is a :class:`RegistryError` naming ``where`` it came from."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{where}: not JSON ({exc.msg} at character {exc.pos})") from None
        if not isinstance(data, dict):
            raise RegistryError(f"{where}: expected a JSON object, got {type(data).__name__}")
        names = set(cls.__dataclass_fields__)
        missing = sorted(names - set(data) - {"details"})
        unknown = sorted(set(data) - names)
        if missing or unknown:
            raise RegistryError(f"{where}: not an audit event (missing {', '.join(missing) or 'nothing'}; "
                                f"unknown {', '.join(unknown) or 'nothing'})")
        if not isinstance(data["seq"], int) or not isinstance(data["version"], int) or not isinstance(
                data.get("details", {}), dict):
            raise RegistryError(f"{where}: seq and version must be integers and details an object")
        return cls(**data)


@dataclass(frozen=True)
class ModelVersionInfo:
    name: str
    version: int
    state: VersionState
    gate_status: str
    gate_report_html: str
    gate_report_json: str
    gate_reasons: tuple[str, ...]
    metrics: dict[str, float]
    data_window: tuple[str, str]
    code_version: str
    pipeline_run_id: str
    storage_uri: str
    run_id: str
    aliases: tuple[str, ...]
    created_at: str
    audit: tuple[AuditEvent, ...]


class ResolvedModel(NamedTuple):
    version: int
    storage_uri: str


def current_user() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return ""


def detect_code_version() -> str:
    """The git SHA of the working tree (``+dirty`` with uncommitted changes); ``AIGP_CODE_VERSION`` in images."""
    if os.environ.get("AIGP_CODE_VERSION"):
        return os.environ["AIGP_CODE_VERSION"]
    root = Path(__file__).resolve().parent  # git finds the checkout from the package folder (editable installs)
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--"], cwd=root, capture_output=True,
                               timeout=10).returncode != 0
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}+dirty" if dirty else sha


def default_audit_root() -> str:
    if os.environ.get("AIGP_REGISTRY_AUDIT"):
        return os.environ["AIGP_REGISTRY_AUDIT"]
    uri = tracking.tracking_uri()
    if uri.startswith("sqlite:///"):
        return str(Path(uri[len("sqlite:///"):]).parent / "audit")
    if os.environ.get("AIGP_MLFLOW_ARTIFACTS"):
        return os.environ["AIGP_MLFLOW_ARTIFACTS"].rstrip("/") + "/registry-audit"
    raise RegistryError("no audit location: set AIGP_REGISTRY_AUDIT (a directory or s3:// URI) or "
                        "AIGP_MLFLOW_ARTIFACTS when MLFLOW_TRACKING_URI is a tracking server")


class AuditLog:
    """Append-only audit events of one registry: a JSONL file per model, or one S3 object per event."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = str(root)

    def append(self, event: AuditEvent) -> None:
        from aigp.registry import storage

        line = event.to_json()
        if storage.is_s3_uri(self.root):
            location = storage.parse_s3_uri(self.root).child(f"{event.model}/{event.seq:06d}.json")
            from botocore.exceptions import ClientError

            client = storage.s3_client()
            try:  # IfNoneMatch: S3 refuses to overwrite an existing event (append-only even with two writers)
                client.put_object(Bucket=location.bucket, Key=location.key, Body=line.encode(), IfNoneMatch="*")
            except ClientError as exc:
                raise RegistryError(f"audit event {location.uri} already exists or cannot be written: {exc}") from None
            return
        path = Path(self.root) / f"{event.model}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self, model: str) -> list[AuditEvent]:
        from aigp.registry import storage

        if storage.is_s3_uri(self.root):
            location = storage.parse_s3_uri(self.root).child(model)
            client = storage.s3_client()
            events = []
            for obj in storage._iter_objects(client, location):
                body = client.get_object(Bucket=location.bucket, Key=obj["Key"])["Body"].read().decode()
                events.append(AuditEvent.from_json(body, f"s3://{location.bucket}/{obj['Key']}"))
            return sorted(events, key=lambda e: e.seq)
        path = Path(self.root) / f"{model}.jsonl"
        if not path.exists():
            return []
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise RegistryError(f"audit log {path}: not UTF-8 text (byte {exc.start})") from None
        return [AuditEvent.from_json(line, f"audit log {path} line {n}")
                for n, line in enumerate(text.splitlines(), 1) if line.strip()]

    @contextlib.contextmanager
    def lock(self, model: str) -> Iterator[None]:
        """Serialise the transitions of ``model``: an exclusive lock file beside a local audit log (held across
        processes; the kernel drops it when its holder dies). An S3 audit root has no lock: there every event
        claims its sequence number with a conditional put, so of two writers that read the same log only one
        succeeds (the optimistic check, see :meth:`ModelRegistry._record`)."""
        if self.root.startswith("s3://"):
            yield
            return
        import fcntl

        path = Path(self.root) / f".{model}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def where(self, model: str) -> str:
        if self.root.startswith("s3://"):
            return f"{self.root.rstrip('/')}/{model}/"
        return str(Path(self.root) / f"{model}.jsonl")


class ModelRegistry:
    """The registry of LLM pricing policies. One instance per process is enough; it holds no state."""

    def __init__(self, audit_root: str | os.PathLike[str] | None = None, experiment: str = REGISTRY_EXPERIMENT) -> None:
        self.experiment = experiment
        self.audit = AuditLog(audit_root if audit_root is not None else default_audit_root())
        self._client_obj: Any = None

    # --- MLflow plumbing -------------------------------------------------------------------------
    @property
    def _client(self) -> Any:
        if self._client_obj is None:
            from mlflow import MlflowClient

            self._client_obj = MlflowClient(tracking.tracking_uri())
        return self._client_obj

    def _model_version(self, name: str, version: int | str) -> Any:
        from mlflow.exceptions import MlflowException

        number = _version_number(version)
        try:
            return self._client.get_model_version(name, str(number))
        except MlflowException:
            known = [str(v.version) for v in self._search(name)]
            listed = f"versions: {', '.join(known)}" if known else "no versions registered"
            raise RegistryError(f"model {name!r} has no version {number} ({listed})") from None

    def _search(self, name: str) -> list[Any]:
        versions = self._client.search_model_versions(f"name='{_quote(name)}'")
        return sorted(versions, key=lambda v: int(v.version))

    def _aliases(self, name: str) -> dict[str, int]:
        from mlflow.exceptions import MlflowException

        try:
            return {a: int(v) for a, v in self._client.get_registered_model(name).aliases.items()}
        except MlflowException:
            raise RegistryError(f"no registered model named {name!r}") from None

    def _record(self, name: str, version: int, action: str, from_state: str | None, to_state: str, by: str,
                reason: str, details: Mapping[str, Any] | None = None, *, trail: list[AuditEvent]) -> AuditEvent:
        """Write one audit event after the ``trail`` it was decided on: the audit log first (the event's sequence
        number is the trail's next; the log refuses a number taken meanwhile), then the version's MLflow tags
        (event + state). Callers hold :meth:`AuditLog.lock` and read ``trail`` under it; ``trail`` is extended."""
        event = AuditEvent(seq=max((e.seq for e in trail), default=0) + 1, model=name, version=version, action=action,
                           from_state=from_state, to_state=to_state, by=by,
                           at=dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"), reason=reason,
                           details=dict(details or {}))
        key = f"{TAG_AUDIT_PREFIX}{event.seq:06d}"
        if key in self._client.get_model_version(name, str(version)).tags:
            raise RegistryError(f"audit event {key} of {name} v{version} exists already; refusing to overwrite it")
        current = self.audit.read(name)
        if [e.seq for e in current] != [e.seq for e in trail]:
            raise TransitionRefused(f"the audit log of {name} changed while {action} v{version} was decided "
                                    "(a concurrent registry change); nothing was written, try again")
        self.audit.append(event)
        self._client.set_model_version_tag(name, str(version), key, event.to_json())
        self._client.set_model_version_tag(name, str(version), TAG_STATE, to_state)
        trail.append(event)
        return event

    def _gate_digest(self, uri: str) -> str:
        """SHA-256 of the gate JSON report at ``uri`` (a local path, file:// or s3:// URI)."""
        from aigp.registry import storage

        local = storage.local_path(uri)
        try:
            if local is not None:
                data = local.read_bytes()
            else:
                location = storage.parse_s3_uri(uri)
                data = storage.s3_client().get_object(Bucket=location.bucket, Key=location.key)["Body"].read()
        except Exception as exc:  # unreadable is a finding, not a crash: the caller refuses to trust the version
            return f"unreadable ({type(exc).__name__}: {str(exc)[:120]})"
        return hashlib.sha256(data).hexdigest()

    def _trail_problems(self, info: ModelVersionInfo, trail: Sequence[AuditEvent], *, gate: bool = True) -> list[str]:
        """Where a version's MLflow tags and aliases disagree with its audit trail (the append-only log, which
        MLflow write access cannot change): state, gate status, the gate report's digest, aliases."""
        where = f"{info.name} v{info.version}"
        events = [e for e in trail if e.version == info.version]
        problems = []
        replayed = events[-1].to_state if events else None
        if replayed != info.state.value:
            problems.append(f"{where}: state tag {info.state.value!r} disagrees with its audit trail ({replayed!r})")
        register = next((e for e in events if e.action == "register"), None)
        if gate and register is not None:
            registered = register.details.get("gate_status")
            if registered is not None and registered != info.gate_status:
                problems.append(f"{where}: gate tag {info.gate_status!r} disagrees with the gate status registered "
                                f"in the audit trail ({registered!r})")
            digest = register.details.get("gate_report_sha256")
            if digest:
                if register.details.get("gate_report_json") not in (None, info.gate_report_json):
                    problems.append(f"{where}: gate report tag points at {info.gate_report_json}, but "
                                    f"{register.details['gate_report_json']} was registered")
                actual = self._gate_digest(info.gate_report_json)
                if actual != digest:
                    problems.append(f"{where}: gate report {info.gate_report_json} has SHA-256 {actual[:80]}, "
                                    f"but {digest[:16]}... was registered")
        elif gate and events:
            problems.append(f"{where}: no register event in the audit trail")
        expected = tuple(sorted(a for a, v in replay_aliases(trail).items() if v == info.version))
        if expected != info.aliases:
            problems.append(f"{where}: holds alias(es) {list(info.aliases)} but the audit trail gives it "
                            f"{list(expected)}")
        return problems

    def _trusted(self, info: ModelVersionInfo, trail: Sequence[AuditEvent], action: str, *,
                 gate: bool = True) -> None:
        problems = self._trail_problems(info, trail, gate=gate)
        if problems:
            raise TransitionRefused(f"will not {action} {info.name} v{info.version}: its registry record was changed "
                                    f"outside the audit trail ({'; '.join(problems)}); run aigp registry audit")

    # --- registration -----------------------------------------------------------------------------
    def register_candidate(self, model_dir: str | os.PathLike[str], gate_report: GateReport,
                           metrics: Mapping[str, float], *, model_name: str = DEFAULT_MODEL_NAME,
                           data_window: DataWindow | Sequence[Any], pipeline_run_id: str = "",
                           code_version: str | None = None, by: str | None = None,
                           description: str = "") -> ModelVersionInfo:
        """Register ``model_dir`` as a new candidate version of ``model_name``.

        The model directory and the gate report (HTML + JSON) are logged as artifacts of an MLflow run in
        the ``aigp-registry`` experiment (so they land on S3 when the artifact root is S3); the version's
        storage URI is that run's ``model`` artifact directory. A failed gate is registered too, so the
        record is complete, but such a version can never be approved.
        """
        model_dir = Path(model_dir)
        if not model_dir.is_dir() or not any(p.is_file() for p in model_dir.rglob("*")):
            raise RegistryError(f"model_dir={str(model_dir)!r}: not a directory with model files")
        for label, path in (("gate_report.html_path", gate_report.html_path),
                            ("gate_report.json_path", gate_report.json_path)):
            if not Path(path).is_file():
                raise RegistryError(f"{label}={str(path)!r}: no such file")
        clean_metrics = _clean_metrics(metrics)
        window = DataWindow.of(data_window)
        by = _who(by)
        _check_name(model_name)
        version_of_code = code_version or detect_code_version()
        params = {"model_name": model_name, "data_window": f"{window.start}..{window.end}",
                  "code_version": version_of_code, "pipeline_run_id": pipeline_run_id or "-",
                  "gate_status": gate_report.status, "model_dir": str(model_dir)}
        with tracking.tracked_run(self.experiment, f"candidate-{model_name}", params=params,
                                  tags={"aigp.registered_by": by}) as run:
            tracking.log_metrics(clean_metrics)
            tracking.log_artifacts(model_dir, "model")
            # fixed names with their extensions: a KFP artifact's file is named after the output ("report"),
            # and without ".html" neither the MLflow UI previews the page nor a browser renders it
            gate_files = {GATE_HTML_NAME: gate_report.html_path, GATE_JSON_NAME: gate_report.json_path}
            with tempfile.TemporaryDirectory(prefix="aigp-gate-") as staged:
                for name, source in gate_files.items():
                    shutil.copyfile(source, Path(staged) / name)
                tracking.log_artifacts(staged, "gate")
            artifact_uri = run.info.artifact_uri.rstrip("/")
            run_id = run.info.run_id
        from mlflow.exceptions import MlflowException

        with self.audit.lock(model_name):  # one writer: MLflow's version numbers and the audit sequence
            try:
                self._client.get_registered_model(model_name)
            except MlflowException:
                self._client.create_registered_model(model_name, description="AIGP LLM pricing policy")
            tags = {
                TAG_STATE: VersionState.CANDIDATE.value,
                TAG_GATE_STATUS: gate_report.status,
                TAG_GATE_HTML: f"{artifact_uri}/gate/{GATE_HTML_NAME}",
                TAG_GATE_JSON: f"{artifact_uri}/gate/{GATE_JSON_NAME}",
                TAG_GATE_REASONS: json.dumps(list(gate_report.reasons)),
                TAG_METRICS: json.dumps(clean_metrics, sort_keys=True),
                TAG_WINDOW_START: window.start.isoformat(),
                TAG_WINDOW_END: window.end.isoformat(),
                TAG_CODE_VERSION: version_of_code,
                TAG_PIPELINE_RUN: pipeline_run_id,
            }
            mv = self._client.create_model_version(model_name, source=f"{artifact_uri}/model", run_id=run_id,
                                                   tags=tags, description=description or None)
            version = int(mv.version)
            self._record(model_name, version, "register", None, VersionState.CANDIDATE.value, by,
                         f"registered by the offline gate ({gate_report.status})",
                         {"gate_status": gate_report.status, "pipeline_run_id": pipeline_run_id,
                          "source_dir": str(model_dir.resolve()), "gate_report_json": tags[TAG_GATE_JSON],
                          "gate_report_sha256": hashlib.sha256(Path(gate_report.json_path).read_bytes()).hexdigest()},
                         trail=self.audit.read(model_name))
        return self.get(model_name, version)

    # --- reading ----------------------------------------------------------------------------------
    def get(self, model_name: str, version: int | str) -> ModelVersionInfo:
        mv = self._model_version(model_name, version)
        return self._info(mv, self._aliases(model_name))

    def list_versions(self, model_name: str | None = None) -> list[ModelVersionInfo]:
        names = [model_name] if model_name else sorted(m.name for m in self._client.search_registered_models())
        out: list[ModelVersionInfo] = []
        for name in names:
            aliases = self._aliases(name)
            out.extend(self._info(mv, aliases) for mv in self._search(name))
        return out

    def model_names(self) -> list[str]:
        return sorted(m.name for m in self._client.search_registered_models())

    def _info(self, mv: Any, aliases: Mapping[str, int]) -> ModelVersionInfo:
        tags = mv.tags
        version = int(mv.version)
        audit = tuple(sorted((AuditEvent.from_json(v, f"MLflow tag {k} of {mv.name} v{mv.version}")
                              for k, v in tags.items() if k.startswith(TAG_AUDIT_PREFIX)), key=lambda e: e.seq))
        return ModelVersionInfo(
            name=mv.name, version=version, state=VersionState(tags.get(TAG_STATE, VersionState.CANDIDATE.value)),
            gate_status=tags.get(TAG_GATE_STATUS, "unknown"), gate_report_html=tags.get(TAG_GATE_HTML, ""),
            gate_report_json=tags.get(TAG_GATE_JSON, ""),
            gate_reasons=tuple(json.loads(tags.get(TAG_GATE_REASONS, "[]"))),
            metrics=json.loads(tags.get(TAG_METRICS, "{}")),
            data_window=(tags.get(TAG_WINDOW_START, ""), tags.get(TAG_WINDOW_END, "")),
            code_version=tags.get(TAG_CODE_VERSION, ""), pipeline_run_id=tags.get(TAG_PIPELINE_RUN, ""),
            storage_uri=mv.source, run_id=mv.run_id or "",
            aliases=tuple(sorted(a for a, v in aliases.items() if v == version)),
            created_at=dt.datetime.fromtimestamp(mv.creation_timestamp / 1000, dt.UTC).isoformat(timespec="seconds"),
            audit=audit)

    # --- transitions ------------------------------------------------------------------------------
    # Each transition holds the model's audit lock (AuditLog.lock) from reading the version to writing its event,
    # so two decisions about one model are serialised; and each trusts a version only where its MLflow tags and
    # aliases agree with the audit trail (_trusted), which MLflow write access alone cannot rewrite.
    def approve(self, model_name: str, version: int | str, *, by: str | None = None, reason: str) -> ModelVersionInfo:
        """candidate -> approved. Requires a passed offline gate."""
        reason, by = _reason(reason, "approve"), _who(by)
        with self.audit.lock(model_name):
            trail = self.audit.read(model_name)
            info = self.get(model_name, version)
            where = f"{model_name} v{info.version} (state {info.state.value}, gate {info.gate_status})"
            if info.state is not VersionState.CANDIDATE:
                raise TransitionRefused(f"cannot approve {where}: only a candidate can be approved"
                                        + _state_hint(info.state))
            if info.gate_status != "passed":
                raise TransitionRefused(f"cannot approve {where}: approval requires a passed offline gate; "
                                        f"gate reasons: {'; '.join(info.gate_reasons) or 'none recorded'}")
            self._trusted(info, trail, "approve")
            self._record(model_name, info.version, "approve", info.state.value, VersionState.APPROVED.value, by,
                         reason, trail=trail)
        return self.get(model_name, info.version)

    def reject(self, model_name: str, version: int | str, *, by: str | None = None, reason: str) -> ModelVersionInfo:
        """candidate | approved | production without alias | rolled_back -> rejected (final)."""
        reason, by = _reason(reason, "reject"), _who(by)
        with self.audit.lock(model_name):
            trail = self.audit.read(model_name)
            info = self.get(model_name, version)
            where = f"{model_name} v{info.version} (state {info.state.value})"
            if info.state is VersionState.REJECTED:
                raise TransitionRefused(f"cannot reject {where}: it is rejected already")
            if info.aliases:
                raise TransitionRefused(f"cannot reject {where}: it holds the alias(es) {', '.join(info.aliases)}; "
                                        "roll back or promote another version first")
            self._trusted(info, trail, "reject", gate=False)  # a tampered gate is a reason to reject, not to refuse
            self._record(model_name, info.version, "reject", info.state.value, VersionState.REJECTED.value, by,
                         reason, trail=trail)
        return self.get(model_name, info.version)

    def promote(self, model_name: str, version: int | str, *, by: str | None = None, reason: str = "",
                alias: str = "champion") -> ModelVersionInfo:
        """approved (or production as challenger) -> production, and point ``alias`` at it.

        Requires approval (and so a passed gate); a rejected or rolled-back version is refused.
        """
        if alias not in ALIASES:
            raise RegistryError(f"alias={alias!r}: expected one of {', '.join(ALIASES)}")
        by = _who(by)
        reason = _reason(reason.strip() or f"promoted to {alias}", "promote")
        with self.audit.lock(model_name):
            trail = self.audit.read(model_name)
            info = self.get(model_name, version)
            where = f"{model_name} v{info.version} (state {info.state.value}, gate {info.gate_status})"
            if info.state in (VersionState.CANDIDATE, VersionState.REJECTED, VersionState.ROLLED_BACK):
                raise TransitionRefused(f"cannot promote {where}: promotion requires an approved version"
                                        + _state_hint(info.state))
            if info.gate_status != "passed":  # cannot happen through approve(); refuse a hand-edited tag anyway
                raise TransitionRefused(f"cannot promote {where}: promotion requires a passed offline gate")
            if alias in info.aliases:
                raise TransitionRefused(f"cannot promote {where} to {alias}: it is the {alias} already")
            if alias == "challenger" and "champion" in info.aliases:
                raise TransitionRefused(f"cannot make {where} the challenger: it is the champion")
            self._trusted(info, trail, "promote")
            aliases = self._aliases(model_name)
            details: dict[str, Any] = {"alias": alias, "previous": aliases.get(alias)}
            if alias == "champion" and "challenger" in info.aliases:
                self._client.delete_registered_model_alias(model_name, "challenger")
                details["cleared_alias"] = "challenger"
            self._client.set_registered_model_alias(model_name, alias, str(info.version))
            self._record(model_name, info.version, "promote", info.state.value, VersionState.PRODUCTION.value, by,
                         reason, details, trail=trail)
        return self.get(model_name, info.version)

    def rollback(self, model_name: str, *, by: str | None = None,
                 reason: str) -> tuple[ModelVersionInfo, ModelVersionInfo]:
        """Move ``champion`` back to the previous production version; the current champion becomes
        ``rolled_back``. Returns (rolled-back version, new champion)."""
        reason, by = _reason(reason, "rollback"), _who(by)
        with self.audit.lock(model_name):
            trail = self.audit.read(model_name)
            aliases = self._aliases(model_name)
            if "champion" not in aliases:
                raise TransitionRefused(f"cannot roll back {model_name}: no version is the champion")
            current = self.get(model_name, aliases["champion"])
            target = self._previous_champion(model_name, current.version)
            if target is None:
                raise TransitionRefused(f"cannot roll back {model_name} v{current.version} (state "
                                        f"{current.state.value}, champion): there is no earlier production version to "
                                        "return to")
            self._trusted(target, trail, "roll back to")
            details: dict[str, Any] = {"alias": "champion", "previous": current.version, "rollback": True}
            if "challenger" in target.aliases:
                self._client.delete_registered_model_alias(model_name, "challenger")
                details["cleared_alias"] = "challenger"
            self._client.set_registered_model_alias(model_name, "champion", str(target.version))
            self._record(model_name, current.version, "rollback", current.state.value,
                         VersionState.ROLLED_BACK.value, by, reason,
                         {"alias": "champion", "new_champion": target.version}, trail=trail)
            self._record(model_name, target.version, "promote", target.state.value, VersionState.PRODUCTION.value,
                         by, f"rollback from v{current.version}: {reason}", details, trail=trail)
        return self.get(model_name, current.version), self.get(model_name, target.version)

    def _previous_champion(self, model_name: str, current: int) -> ModelVersionInfo | None:
        """The latest earlier champion that is still in production (not rolled back, not rejected)."""
        history: list[int] = []
        for event in self._events_from_tags(model_name):
            if event.action == "promote" and event.details.get("alias") == "champion":
                history.append(event.version)
        for version in reversed(history):
            if version == current:
                continue
            info = self.get(model_name, version)
            if info.state is VersionState.PRODUCTION:
                return info
        return None

    # --- serving ----------------------------------------------------------------------------------
    def resolve(self, model_name: str, alias_or_version: str | int) -> ResolvedModel:
        """``(version, storage URI)`` for an alias (``champion``/``challenger``) or a version number.

        Only versions fit to serve resolve: approved or in production, with tags and aliases that agree with the
        audit trail (and the gate report it registered).
        """
        ref = str(alias_or_version).strip()
        if ref in ALIASES:
            aliases = self._aliases(model_name)
            if ref not in aliases:
                raise RegistryError(f"model {model_name!r} has no {ref} yet (promote a version first)")
            info = self.get(model_name, aliases[ref])
        else:
            info = self.get(model_name, ref)
        if info.state not in (VersionState.APPROVED, VersionState.PRODUCTION):
            raise TransitionRefused(f"will not serve {model_name} v{info.version} (state {info.state.value}): "
                                    "only approved or production versions are served")
        self._trusted(info, self.audit.read(model_name), "serve")
        return ResolvedModel(info.version, info.storage_uri)

    # --- audit ------------------------------------------------------------------------------------
    def _events_from_tags(self, model_name: str) -> list[AuditEvent]:
        events = [AuditEvent.from_json(v, f"MLflow tag {k} of {model_name} v{mv.version}")
                  for mv in self._search(model_name) for k, v in mv.tags.items() if k.startswith(TAG_AUDIT_PREFIX)]
        return sorted(events, key=lambda e: e.seq)

    def audit_log(self, model_name: str) -> list[AuditEvent]:
        """Every event of ``model_name`` in order, from the append-only audit file."""
        return self.audit.read(model_name)

    def verify_audit(self, model_name: str) -> list[str]:
        """Problems with the audit trail of ``model_name`` (empty when complete and consistent)."""
        problems = []
        from_file = self.audit.read(model_name)
        from_tags = self._events_from_tags(model_name)
        if [e.to_json() for e in from_file] != [e.to_json() for e in from_tags]:
            missing = sorted({e.seq for e in from_tags} - {e.seq for e in from_file})
            extra = sorted({e.seq for e in from_file} - {e.seq for e in from_tags})
            problems.append(f"audit file {self.audit.where(model_name)} and MLflow tags differ "
                            f"(missing from file: {missing}, not in tags: {extra})")
        seqs = [e.seq for e in from_tags]
        if seqs != list(range(1, len(seqs) + 1)):
            problems.append(f"audit sequence has gaps or repeats: {seqs}")
        last_state: dict[int, str | None] = {}
        for e in from_tags:
            if last_state.get(e.version) != e.from_state:
                problems.append(f"event {e.seq} ({e.action} v{e.version}) starts from {e.from_state!r} but the "
                                f"version was {last_state.get(e.version)!r}")
            last_state[e.version] = e.to_state
        for mv in self._search(model_name):
            if last_state.get(int(mv.version)) != mv.tags.get(TAG_STATE):
                problems.append(f"v{mv.version}: state tag {mv.tags.get(TAG_STATE)!r} disagrees with the audit "
                                f"log ({last_state.get(int(mv.version))!r})")
        infos = self.list_versions(model_name)
        for info in infos:  # gate tag, gate report digest and aliases against the append-only file
            problems += [p for p in self._trail_problems(info, from_file) if "state tag" not in p]
        held = {a: i.version for i in infos for a in i.aliases}
        for alias, version in sorted(replay_aliases(from_file).items()):
            if alias not in held:
                problems.append(f"alias {alias} is missing; the audit trail gives it to v{version}")
        return problems


# --- module-level entry points used by the offline gate and by serving ----------------------------
def register_candidate(model_dir: str | os.PathLike[str], gate_report: GateReport, metrics: Mapping[str, float],
                       **kwargs: Any) -> ModelVersionInfo:
    """See :meth:`ModelRegistry.register_candidate` (uses the default registry location)."""
    return ModelRegistry().register_candidate(model_dir, gate_report, metrics, **kwargs)


def resolve(model_name: str, alias_or_version: str | int) -> ResolvedModel:
    """See :meth:`ModelRegistry.resolve` (uses the default registry location)."""
    return ModelRegistry().resolve(model_name, alias_or_version)


def registry_resolver() -> Resolver:
    """The serving arms' lookup (``aigp.pricing.Resolver``) on the default registry: the pricing transformer and
    the nightly batch resolve ``(model name, alias or version)`` to ``(version, storage URI)`` through this."""
    registry = ModelRegistry()

    def lookup(name: str, ref: str) -> tuple[int | str, str]:
        version, uri = registry.resolve(name, ref)
        return version, uri

    return lookup


# --- helpers ------------------------------------------------------------------------------------
def replay_aliases(events: Sequence[AuditEvent]) -> dict[str, int]:
    """Alias -> version as the audit events leave them: a promotion moves its alias to the version, which then
    holds no other alias (promoting the challenger to champion clears the challenger)."""
    aliases: dict[str, int] = {}
    for e in sorted(events, key=lambda e: e.seq):
        if e.action == "promote" and e.details.get("alias") in ALIASES:
            for other in [a for a, v in aliases.items() if v == e.version]:
                del aliases[other]
            aliases[e.details["alias"]] = e.version
    return aliases


def _state_hint(state: VersionState) -> str:
    return {
        VersionState.CANDIDATE: "; approve it first (requires a passed gate): aigp registry approve",
        VersionState.APPROVED: "; it is approved already",
        VersionState.REJECTED: "; a rejected version is final and can never be promoted: register a new candidate",
        VersionState.PRODUCTION: "; it has been in production already",
        VersionState.ROLLED_BACK: "; it was rolled back and is never promoted again: register a new candidate",
    }[state]


def _version_number(version: int | str) -> int:
    try:
        number = int(str(version).lstrip("v"))
    except ValueError:
        raise RegistryError(f"version={version!r}: expected a version number or one of {', '.join(ALIASES)}") from None
    if number < 1:
        raise RegistryError(f"version={version!r}: versions start at 1")
    return number


def _reason(reason: str | None, action: str) -> str:
    text = (reason or "").strip()
    if not text:
        raise RegistryError(f"--reason is required to {action} (say why, for the audit log)")
    if len(text) > MAX_REASON_CHARS:
        raise RegistryError(f"--reason is {len(text)} characters; keep it under {MAX_REASON_CHARS}")
    _no_control(text, "--reason")
    return text


def _who(by: str | None) -> str:
    who = (by if by is not None else current_user()).strip()
    if not who:
        raise RegistryError("--by is empty and $USER is not set: say who is making this change")
    if len(who) > 200:
        raise RegistryError(f"--by is {len(who)} characters; a name or e-mail address is expected")
    _no_control(who, "--by")
    return who


def _no_control(text: str, label: str) -> None:
    """Refuse control and format characters (newline, ESC, BEL, bidi overrides): an audit record is one line
    of plain text, and a terminal showing it must not obey it."""
    for i, char in enumerate(text):
        if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp"):
            raise RegistryError(f"{label} contains the control character U+{ord(char):04X} at position {i}; "
                                "use plain text on one line")


def _check_name(name: str) -> None:
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise RegistryError(f"model_name={name!r}: use letters, digits, '-', '_' or '.'")


def _quote(name: str) -> str:
    _check_name(name)
    return name


def _clean_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    clean = {}
    for key, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise RegistryError(f"metrics[{key!r}]={value!r}: not a number") from None
        if not math.isfinite(number):
            raise RegistryError(f"metrics[{key!r}]={value!r}: not finite")
        clean[str(key)] = number
    return clean


def _to_date(value: Any, label: str) -> dt.date:
    try:
        return to_date(value, label)
    except ValueError:
        raise RegistryError(f"{label}: {value!r} is not a date (expected YYYY-MM-DD)") from None
