r"""A REINFORCE controller (Williams 1992), as Zoph & Le 2017 search for cells.

The controller is an LSTM (rnnkit's own :class:`~rnnkit.LSTMCell`) that writes a genome one
decision at a time: at decision k it reads the embedding of the previous choice, and a linear
head turns its output into logits over decision k's options. The probability of a genome is
the product of its choices' probabilities, p_θ(a) = Π_k p_θ(a_k | a_<k).

After every ``batch`` evaluated cells, with reward R = -log10(loss) (0 for a diverged run) and
b an exponential moving average of past rewards, one Adam step on

    L(θ) = -(1/m) Σ_i (R_i - b) log p_θ(a_i) - β · (1/m) Σ_i H_i

raises the probability of cells that beat the baseline (H_i is the entropy of the controller's
choices along genome i, which keeps it exploring). The lecture's slide: "compute gradient of p
and scale it by R to update the controller".

The state is a function of the results told so far, in order: replaying a search's log rebuilds
the controller exactly (its initial weights come from ``seed``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..cells import LSTMCell
from ..cells.base import check_positive_int
from .space import Genome, TreeSpace


class Controller(nn.Module):
    """Autoregressive policy over genomes whose decision k has ``sizes[k]`` options."""

    def __init__(self, sizes: list[int], hidden_size: int = 32) -> None:
        super().__init__()
        self.sizes = list(sizes)
        self.offsets = [1 + sum(self.sizes[:k]) for k in range(len(self.sizes))]  # 0 = start
        self.embed = nn.Embedding(1 + sum(self.sizes), hidden_size)
        self.cell = LSTMCell(hidden_size, hidden_size)
        self.heads = nn.ModuleList(nn.Linear(hidden_size, n) for n in self.sizes)

    def forward(
        self, genome: Genome | None = None, generator: torch.Generator | None = None
    ) -> tuple[Genome, Tensor, Tensor]:
        """Sample a genome (or score the given one): returns (genome, log p(genome), the sum of
        the entropies of each decision's distribution along it)."""
        state = self.cell.init_state(1)
        token = torch.zeros(1, dtype=torch.long)
        choices: list[int] = []
        log_prob = torch.zeros(())
        entropy = torch.zeros(())
        for k, head in enumerate(self.heads):
            h, state = self.cell(self.embed(token), state)  # (1, hidden)
            logp = torch.log_softmax(head(h)[0], dim=0)  # (n_k,)
            if genome is None:
                a = int(torch.multinomial(logp.exp(), 1, generator=generator))
            else:
                a = int(genome[k])
            choices.append(a)
            log_prob = log_prob + logp[a]
            entropy = entropy - (logp.exp() * logp).sum()
            token = torch.tensor([self.offsets[k] + a])
        return tuple(choices), log_prob, entropy


def reward(score: float | None) -> float:
    """R = -log10(loss), floored at 0 (a loss of 1 or more) and capped at 10 (a loss of 1e-10);
    a diverged run (None) gets 0."""
    if score is None or not math.isfinite(score):
        return 0.0
    return max(0.0, -math.log10(max(score, 1e-10)))


class Reinforce:
    """Search ``space`` with a :class:`Controller` trained by REINFORCE with a moving-average
    baseline."""

    def __init__(
        self,
        space: TreeSpace,
        *,
        lr: float = 5e-3,
        batch: int = 4,
        entropy_weight: float = 1e-3,
        baseline_decay: float = 0.9,
        hidden_size: int = 32,
        seed: int = 0,
    ) -> None:
        check_positive_int("batch", batch)
        if not 0.0 <= baseline_decay < 1.0:
            raise ValueError(f"baseline_decay must be in [0, 1), got {baseline_decay}")
        self.space = space
        self.seed = seed
        self.batch = batch
        self.entropy_weight = float(entropy_weight)
        self.baseline_decay = float(baseline_decay)
        with torch.random.fork_rng(devices=[]):  # initial weights from the seed alone
            torch.manual_seed(seed)
            self.controller = Controller(space.sizes(), hidden_size)
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=lr)
        self.baseline: float | None = None
        self.pending: list[tuple[Genome, float]] = []
        self.updates = 0

    def propose(self, candidate_id: int) -> Genome:
        """A genome sampled from the current policy with a generator seeded by (seed, id)."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + candidate_id)
        with torch.no_grad():
            genome, _, _ = self.controller(generator=g)
        return genome

    def tell(self, genome: Genome, score: float | None) -> None:
        """Record an evaluated cell; every ``batch`` of them, one policy-gradient step."""
        self.pending.append((self.space.check(genome), reward(score)))
        if len(self.pending) == self.batch:
            self.update()

    def update(self) -> None:
        rewards = torch.tensor([r for _, r in self.pending])
        if self.baseline is None:
            self.baseline = float(rewards.mean())
        advantage = rewards - self.baseline  # (m,)
        log_probs, entropies = [], []
        for genome, _ in self.pending:
            _, lp, ent = self.controller(genome)
            log_probs.append(lp)
            entropies.append(ent)
        loss = -(advantage * torch.stack(log_probs)).mean()
        loss = loss - self.entropy_weight * torch.stack(entropies).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        d = self.baseline_decay
        self.baseline = d * self.baseline + (1.0 - d) * float(rewards.mean())
        self.pending = []
        self.updates += 1
