"""The submitted grid of a run, as recorded in ``<run>/slurm/grid.json`` and seen by ``squeue``.

Clusters without an accounting database have no ``sacct``: a job's state comes from ``squeue`` while
SLURM still lists it (``-t all`` keeps finished jobs for ``MinJobAge``, 300 s by default), then from the
result file submitit writes when the job's call returns or raises. A job that left the queue without
a result file died without a word (killed, node failure): it counts as failed, with its log.
"""
from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fusionbench.errors import FusionBenchError
from fusionbench.files import atomic_write_text

LIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING",
        "SUSPENDED", "SIGNALING", "STAGE_OUT", "STOPPED", "PREEMPTED"}
DONE, FAILED, SKIPPED, CANCELLED = "done", "failed", "skipped", "cancelled"
FINAL = {DONE, FAILED, SKIPPED, CANCELLED}


class SlurmError(FusionBenchError):
    """SLURM's tools are missing or refused a request."""


@dataclass
class TaskRecord:
    """One task of the grid: its job, SLURM id and files (none when it was skipped as already done)."""

    key: str
    job: str
    kind: str
    after: list[str]
    id: str | None = None
    state: str = "submitted"
    reason: str = ""
    log: str | None = None  # the job's output and logging, submitit's and the stages' (one file per job)
    result: str | None = None
    detail: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        return self.state not in FINAL


@dataclass
class GridState:
    path: Path
    tasks: list[TaskRecord]
    submitted: float = 0.0

    @classmethod
    def load(cls, path: Path) -> "GridState | None":
        """The grid recorded at ``path``; None when no grid was submitted there."""
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            return cls(path, [TaskRecord(**t) for t in data["tasks"]], data.get("submitted", 0.0))
        except (ValueError, KeyError, TypeError) as error:
            raise SlurmError(f"{path}: not a grid record ({error}); delete it once its jobs are gone") from error

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {"submitted": self.submitted,
                "tasks": [asdict(t) for t in self.tasks]}
        atomic_write_text(self.path, json.dumps(data, indent=1))

    @property
    def live(self) -> list[TaskRecord]:
        return [t for t in self.tasks if t.live]

    def refresh(self) -> list[TaskRecord]:
        """Update every unfinished task from squeue and its result file; returns those whose state changed."""
        pending = [t for t in self.tasks if t.live and t.id]
        queue = squeue([t.id for t in pending])
        changed = []
        for task in pending:
            before = task.state
            state, reason = queue.get(task.id, (None, ""))
            if state in LIVE:
                task.state, task.reason = state.lower(), reason if reason not in ("None", "(null)") else ""
            elif state is None or state == "COMPLETED" or Path(task.result or "").is_file():
                task.state, task.detail, info = read_result(task)
                task.info.update(info)
                task.reason = ""
            else:  # FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL ...: said before any result file
                task.state = CANCELLED if state == "CANCELLED" else FAILED
                task.detail = f"SLURM state {state}"
            if task.state != before:
                changed.append(task)
        return changed


def read_result(task: TaskRecord) -> tuple[str, str, dict[str, Any]]:
    """(state, detail, returned info) from submitit's result file of a job that left the queue."""
    path = Path(task.result or "")
    if not path.is_file():
        return FAILED, "ended without a result (killed, or its node failed): see its log", {}
    try:
        with path.open("rb") as handle:
            outcome, value = pickle.load(handle)
    except Exception as error:  # noqa: BLE001 - a damaged file says as much as a missing one
        return FAILED, f"{path}: unreadable result ({type(error).__name__})", {}
    if outcome == "success":
        return DONE, "", value if isinstance(value, dict) else {}
    lines = [line for line in str(value).strip().splitlines() if line.strip()]
    return FAILED, lines[-1] if lines else "failed", {}


def as_run_summary(config: Any, records: list[TaskRecord]) -> Any:
    """The grid's outcome (every executor's task records) in inline run-all's terms: one step per stage and
    method, for its summary."""
    from pipelines.config import run_layout
    from pipelines.run_all import RunSummary, Step

    summary = RunSummary()
    stages = {"train": "train-fusion", "fuse": "fuse", "metrics": "metrics", "compare": "compare"}
    by_job: dict[str, list[TaskRecord]] = {}
    for task in records:
        by_job.setdefault(task.job, []).append(task)
    for key, tasks in by_job.items():
        kind = tasks[0].kind
        *stage, method = key.split("/") if "/" in key else (key, "-")  # downstream: <task>/<model>/<method>
        stage = stages.get(kind, "/".join(stage))
        failed = [t for t in tasks if t.state not in (DONE, SKIPPED)]
        seconds = sum(t.info.get("end", 0) - t.info.get("start", 0) for t in tasks)
        detail = "; ".join(f"{t.key} {t.state}: {t.detail} (log {t.log})" for t in failed)
        summary.steps.append(Step(stage, method, not failed, seconds, detail))
    index = run_layout(config).pages.index
    closing = [t for t in records if t.kind == "compare"]
    summary.report = index if index.is_file() and closing and closing[0].state == DONE else None
    return summary


def squeue(ids: list[str]) -> dict[str, tuple[str, str]]:
    """id -> (state, reason) for the listed jobs SLURM still knows (array tasks as ``<array>_<index>``)."""
    if not ids:
        return {}
    need("squeue")
    jobs = sorted({i.split("_")[0] for i in ids})
    out = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%r", "-j", ",".join(jobs)],
                         capture_output=True, text=True, timeout=60)
    if out.returncode:
        if "Invalid job id" in out.stderr:  # every one of them has left the queue
            return {}
        raise SlurmError(f"squeue: {out.stderr.strip() or out.returncode}")
    found = {}
    for line in out.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            found[parts[0]] = (parts[1], parts[2])
    return found


def scancel(ids: list[str]) -> None:
    if ids:
        need("scancel")
        subprocess.run(["scancel", *ids], check=False, capture_output=True, timeout=60)


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        raise SlurmError(f"{tool}: not found; run.executor=slurm needs SLURM's commands (a cluster's login node, "
                         "or scripts/slurm_local.sh up on this machine)")


def tail(path: str | None, lines: int = 5) -> list[str]:
    """The last lines of a log (empty when it does not exist yet)."""
    if not path or not Path(path).is_file():
        return []
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        handle.seek(max(0, handle.tell() - 8192))
        text = handle.read().decode(errors="replace")
    return [line for line in text.splitlines() if line.strip()][-lines:]


def wait(state: GridState, poll_s: float, report: Any = None) -> GridState:
    """Poll until no task is live, saving the record and reporting each change (``report(task)``)."""
    while True:
        for task in state.refresh():
            if report:
                report(task)
        state.save()
        if not state.live:
            return state
        time.sleep(poll_s)
