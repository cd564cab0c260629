"""Cell search: a language for recurrent cells, and a driver that searches over it.

* :mod:`~rnnkit.search.dsl`: the language (``parse``) and its tree;
* :mod:`~rnnkit.search.compile`: a program as a cell (:class:`ExpressionCell`);
* :mod:`~rnnkit.search.programs`: LSTM, GRU, NAS and Elman written in the language;
* :mod:`~rnnkit.search.space`: Zoph & Le's tree space (:class:`TreeSpace`, genomes);
* :mod:`~rnnkit.search.evolution`, :mod:`~rnnkit.search.reinforce`: the two strategies;
* :mod:`~rnnkit.search.evaluate`: a candidate's short training run at a parameter budget;
* :mod:`~rnnkit.search.driver`: the resumable, parallel driver (:func:`run_search`);
* :mod:`~rnnkit.search.leaderboard`: results as JSON, Markdown and PNG;
* :mod:`~rnnkit.search.cli`: ``rnnkit search``.
"""

from .compile import ExpressionCell, count_parameters, expression_cell
from .driver import SearchConfig, SearchResult, read_log, run_search
from .dsl import Program, ProgramError, parse
from .evolution import RegularizedEvolution
from .leaderboard import leaderboard, write_leaderboard
from .reinforce import Controller, Reinforce
from .space import TreeSpace

__all__ = [
    "parse",
    "Program",
    "ProgramError",
    "ExpressionCell",
    "expression_cell",
    "count_parameters",
    "TreeSpace",
    "RegularizedEvolution",
    "Reinforce",
    "Controller",
    "SearchConfig",
    "SearchResult",
    "run_search",
    "read_log",
    "leaderboard",
    "write_leaderboard",
]
