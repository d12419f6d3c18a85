"""Where ``run-all`` runs the grid of :mod:`pipelines.grid` (``run.executor``).

``inline`` is :func:`pipelines.run_all.run_all`, in the calling process. ``local``
(:mod:`pipelines.executors.local`) runs the grid in worker processes on this machine, a few tasks at a
time. ``slurm`` (:mod:`pipelines.executors.slurm`) submits the grid through submitit, the only module that
imports it; :mod:`pipelines.executors.state` records the tasks of both graph executors, and watches and
cancels the submitted jobs with squeue and scancel (no accounting database needed), for ``run-all``,
``pipelines status`` and ``pipelines cancel``.
"""
