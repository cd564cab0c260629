"""Tasks: data generators for benchmarks and experiments."""

from .synthetic import adding_problem, copy_memory, copy_memory_baseline, seq_digits

__all__ = ["adding_problem", "copy_memory", "copy_memory_baseline", "seq_digits"]
