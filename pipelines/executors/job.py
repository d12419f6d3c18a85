"""The first code every SLURM job of the grid runs: ``python -m pipelines.executors.job <submitit folder>``.

SLURM warns a job of its time limit with USR2, whose default action ends a process. submitit listens for
it only once the job's pickled call is loaded, after its imports; a warning that came earlier (SLURM
checks time limits every 30 s, so it may come that early) would end the job without a requeue. So the
job holds the warning from its first line (:func:`hold_warning`: blocked, a warning that arrives stays
pending; the block survives ``exec`` and is inherited by threads started meanwhile), and
:func:`release_warning` lets it through once submitit listens: the job then checkpoints and requeues itself
like one warned later.
"""
import logging
import signal

WARNING = signal.SIGUSR2  # what submitit asks SLURM to send before the time limit (--signal=USR2@<s>)

log = logging.getLogger(__name__)


def hold_warning() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {WARNING})


def release_warning(task: str) -> None:
    """Deliver a warning held since the job started (to the handler that listens now), saying so first."""
    if WARNING in signal.sigpending():
        log.warning("%s: warned of its time limit while it started; handled now", task)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {WARNING})


if __name__ == "__main__":
    hold_warning()
    import sys

    from submitit.core.submission import process_job

    process_job(sys.argv[1])
