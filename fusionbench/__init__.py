"""Neutral pieces every layer may use (``fusion/``, ``detection/``, ``reports/``, ``pipelines/``).

Nothing here imports another package of the project, so using it never breaks the dependency
rules of DESIGN.md.
"""
