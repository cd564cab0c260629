"""Tasks: data generators for benchmarks and experiments, and the applications
``rnnkit train`` runs (see :mod:`rnnkit.tasks.registry`)."""

from .registry import UnknownTaskError, get_task, register_task, task_names, task_summaries
from .synthetic import adding_problem, copy_memory, copy_memory_baseline, seq_digits

__all__ = [
    "UnknownTaskError",
    "adding_problem",
    "copy_memory",
    "copy_memory_baseline",
    "get_task",
    "register_task",
    "seq_digits",
    "task_names",
    "task_summaries",
]
