r"""Generation from a language model: the lecture's one-to-many self-regression.

Sample ŷ^<t> from P(· | ŷ^<1>, ..., ŷ^<t-1>), feed it back as the next input, and stop at
<eos> (``np.random.choice(p=prob)`` in the lecture). Each sequence of a batch stops on its own;
after its <eos> it holds ``pad_id``.

The sampling distribution is the softmax of the logits, reshaped in this order:

1. temperature τ: p ∝ exp(logits / τ) (τ < 1 sharpens, τ > 1 flattens);
2. top-k: keep the k most probable tokens;
3. top-p (nucleus, Holtzman et al. 2020): keep the most probable tokens until their mass
   reaches p (at least one);

then renormalise. ``greedy=True`` takes the arg max instead (= ``top_k=1``).

Reproducibility: with ``seed=s`` sequence i of the batch draws from its own generator seeded
``s + i`` (or ``seed`` may list one seed per sequence), so a sequence's sample does not depend
on what else is in the batch: a batch equals its sequences generated one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .base import eval_mode
from .checks import check_bool, check_float, check_int
from .language_model import LanguageModel


@dataclass
class Generated:
    """Generated tokens (B, L) after the prompt, ``pad_id`` after each <eos>, and the lengths
    (B,) counting the <eos> when one came."""

    tokens: Tensor
    lengths: Tensor


def sampling_probs(
    logits: Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> Tensor:
    """The distribution sampled from: (B, V) logits -> (B, V) probabilities, rows summing to 1."""
    temperature = check_float("temperature", temperature, low=0.0, high=float("inf"), low_open=True)
    V = logits.shape[-1]
    if top_k is not None:
        check_int("top_k", top_k, low=1)
    if top_p is not None:
        top_p = check_float("top_p", top_p, low=0.0, high=1.0, low_open=True)
    scores = logits / temperature
    if top_k is not None and top_k < V:
        keep = scores.topk(top_k, dim=-1).indices  # (B, k): exactly k, ties by position
        dropped = torch.ones_like(scores, dtype=torch.bool).scatter(-1, keep, False)
        scores = scores.masked_fill(dropped, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    if top_p is not None and top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        mass_before = sorted_p.cumsum(dim=-1) - sorted_p  # mass of the strictly better tokens
        dropped_sorted = mass_before >= top_p  # the first token is always kept (mass 0)
        dropped = dropped_sorted.scatter(-1, order, dropped_sorted)
        probs = probs.masked_fill(dropped, 0.0)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def _generators(seed: int | Sequence[int] | None, batch_size: int) -> list[torch.Generator] | None:
    if seed is None:
        return None
    if isinstance(seed, int) and not isinstance(seed, bool):
        seeds = [seed + i for i in range(batch_size)]
    elif isinstance(seed, Sequence) and all(isinstance(s, int) for s in seed):
        seeds = list(seed)
        if len(seeds) != batch_size:
            raise ValueError(
                f"seed must list {batch_size} seeds (one per sequence), got {len(seeds)}"
            )
    else:
        raise TypeError(f"seed must be an int, a list of ints or None, got {type(seed).__name__}")
    return [torch.Generator().manual_seed(s) for s in seeds]


@torch.no_grad()
def generate(
    model: LanguageModel,
    *,
    max_length: int,
    num_sequences: int | None = None,
    prompt: Tensor | None = None,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | Sequence[int] | None = None,
    labels: Tensor | None = None,
    latent: Tensor | None = None,
) -> Generated:
    """Generate up to ``max_length`` tokens per sequence after a prompt.

    Args:
        model: a :class:`LanguageModel` (run in eval mode here, then restored).
        max_length: most tokens generated per sequence, <eos> included (>= 1).
        num_sequences: B, when there is no prompt (default: the batch of ``labels`` or
            ``latent``, else 1). Each sequence then starts from ``<bos>``.
        prompt: (B, P) token ids every sequence starts from (all of length P).
        greedy: take the most probable token instead of sampling.
        temperature, top_k, top_p: the sampling distribution (module docstring).
        seed: reproducible sampling, one generator per sequence (module docstring).
        labels, latent: the condition of a conditional model, (B,) and (B, Z).
    """
    if not isinstance(model, LanguageModel):
        raise TypeError(f"model must be a LanguageModel, got {type(model).__name__}")
    check_int("max_length", max_length, low=1)
    check_bool("greedy", greedy)
    # validate the sampling arguments now, not at the first step
    device = model.embedding.weight.device
    sampling_probs(
        torch.zeros(1, 2, device=device), temperature=temperature, top_k=top_k, top_p=top_p
    )
    cfg = model.config
    if prompt is None:
        if num_sequences is None:
            given = labels if labels is not None else latent
            num_sequences = given.shape[0] if isinstance(given, Tensor) else 1
        check_int("num_sequences", num_sequences, low=1)
        prompt = torch.full((num_sequences, 1), cfg.bos_id, dtype=torch.long, device=device)
    elif num_sequences is not None and num_sequences != prompt.shape[0]:
        raise ValueError(
            f"num_sequences={num_sequences} disagrees with the prompt's batch {prompt.shape[0]}"
        )
    B = prompt.shape[0]
    gens = _generators(seed, B)

    with eval_mode(model):
        logits, state = model(prompt, labels=labels, latent=latent)
        logits = logits[:, -1]  # (B, V): the distribution of the first new token
        out = torch.full((B, max_length), cfg.pad_id, dtype=torch.long, device=device)
        lengths = torch.zeros(B, dtype=torch.long, device=device)
        done = torch.zeros(B, dtype=torch.bool, device=device)
        for t in range(max_length):
            if greedy:
                token = logits.argmax(dim=-1)  # (B,)
            else:
                probs = sampling_probs(logits, temperature=temperature, top_k=top_k, top_p=top_p)
                token = _sample(probs, gens, done)
            token = token.masked_fill(done, cfg.pad_id)
            out[:, t] = token
            lengths += (~done).long()
            done = done | (token == cfg.eos_id)
            if bool(done.all()) or t == max_length - 1:
                break
            logits, state = model(token.unsqueeze(1), state, labels=labels, latent=latent)
            logits = logits[:, -1]
    return Generated(out[:, : int(lengths.max())], lengths)


def _sample(probs: Tensor, gens: list[torch.Generator] | None, done: Tensor) -> Tensor:
    """One draw per row of (B, V) ``probs``; finished rows draw nothing (their stream stays)."""
    if gens is None:
        return torch.multinomial(probs, 1).squeeze(1)
    token = torch.zeros(probs.shape[0], dtype=torch.long, device=probs.device)
    for i, g in enumerate(gens):
        if not done[i]:
            row = probs[i].to("cpu", torch.float64)  # the generators live on the CPU
            token[i] = torch.multinomial(row, 1, generator=g)[0]
    return token
