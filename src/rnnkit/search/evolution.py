"""Regularised ("aging") evolution, Real, Aggarwal, Huang & Le 2019.

Keep a population of the last P evaluated cells. Until P cells have been evaluated, propose
random ones; after that, draw S members of the population at random, take the best of them
(the tournament) and propose it with one choice changed (:meth:`TreeSpace.mutate`). Every
evaluated cell joins the population and the oldest one leaves, whatever its score: a cell
survives only as long as its descendants keep being good, which regularises against lucky
evaluations.

The state is the list of results told so far, so telling the same results in the same order
rebuilds it exactly; each proposal draws from a generator seeded by (seed, candidate id).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from ..cells.base import check_positive_int
from .space import Genome, TreeSpace


def _key(score: float | None) -> float:
    """Scores are losses; a diverged run (None) ranks last."""
    return math.inf if score is None else score


class RegularizedEvolution:
    """Aging evolution over ``space`` with population P = ``population`` and tournament
    size S = ``sample``."""

    def __init__(
        self, space: TreeSpace, *, population: int = 20, sample: int = 5, seed: int = 0
    ) -> None:
        check_positive_int("population", population)
        check_positive_int("sample", sample)
        if sample > population:
            raise ValueError(f"sample must be <= population={population}, got {sample}")
        self.space = space
        self.population_size = population
        self.sample = sample
        self.seed = seed
        self.population: deque[tuple[Genome, float | None]] = deque(maxlen=population)
        self.told = 0

    def propose(self, candidate_id: int) -> Genome:
        """The genome of candidate ``candidate_id``: random while fewer than P results are in,
        then the best of S random members of the population, mutated."""
        rng = np.random.default_rng([self.seed, candidate_id])
        if self.told < self.population_size:
            return self.space.random(rng)
        members = rng.choice(len(self.population), size=self.sample, replace=False)
        best = min(members, key=lambda i: _key(self.population[i][1]))  # first on ties
        return self.space.mutate(self.population[best][0], rng)

    def tell(self, genome: Genome, score: float | None) -> None:
        """Add an evaluated cell; the oldest member leaves once there are P."""
        self.population.append((self.space.check(genome), score))
        self.told += 1
