"""The model of the workload: a small decoder-only transformer, its AdamW and one step."""

from __future__ import annotations

import math

from benches.workloads.diloco_language_model.config import WorkloadConfig
from benches.workloads.diloco_language_model.corpus import Batch, evaluation_set
from thrifty._extras import require
from thrifty.errors import InvalidArgumentError

try:
    import torch
    from torch import nn
    from torch.nn import functional
except ImportError:  # pragma: no cover - the message names the extra to install
    require("torch")
    raise


class _Block(nn.Module):
    """A pre-norm transformer block: causal self-attention, then a GELU MLP, each residual."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.attention_norm = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.projection = nn.Linear(d_model, d_model)
        self.mlp_norm = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        qkv = self.qkv(self.attention_norm(x))
        qkv = qkv.view(batch, length, 3, self.n_heads, width // self.n_heads).transpose(1, 3)
        query, key, value = qkv.unbind(dim=2)
        attended = functional.scaled_dot_product_attention(query, key, value, is_causal=True)
        x = x + self.projection(attended.transpose(1, 2).reshape(batch, length, width))
        result: torch.Tensor = x + self.mlp(self.mlp_norm(x))
        return result


class TinyLM(nn.Module):
    """A small decoder-only transformer language model, deterministic from ``seed``.

    Token and learned positional embeddings, ``n_layers`` pre-norm blocks in the
    ``nn.ModuleList`` ``blocks`` (so a fragment can be one block), a final LayerNorm and a
    linear head, tied to the token embedding when ``tied``. Initialisation follows GPT-2:
    normal(0, 0.02) weights, residual projections scaled by ``1 / sqrt(2 * n_layers)``,
    drawn from a private generator, so building a model leaves torch's global RNG as it was.

    Parameters
    ----------
    vocab, d_model, n_layers, n_heads, seq_len : int
        Vocabulary, width, depth, attention heads and the longest input.
    seed : int, optional
        Seed of the initial weights.
    tied : bool, optional
        Whether the head shares the token embedding's weights.

    Examples
    --------
    >>> import torch
    >>> from benches.workloads.diloco_language_model import TinyLM
    >>> model = TinyLM(32, 64, 2, 4, 32, seed=0)
    >>> tuple(model(torch.zeros(3, 10, dtype=torch.long)).shape), len(model.blocks)
    ((3, 10, 32), 2)
    """

    def __init__(
        self,
        vocab: int,
        d_model: int,
        n_layers: int,
        n_heads: int,
        seq_len: int,
        *,
        seed: int = 0,
        tied: bool = True,
    ) -> None:
        WorkloadConfig(
            vocab=vocab, d_model=d_model, n_layers=n_layers, n_heads=n_heads, seq_len=seq_len
        )
        super().__init__()
        self.seq_len = seq_len
        # Construction draws default inits from the global RNG; fork it so that building a
        # model has no side effect, then overwrite everything from the private generator.
        with torch.random.fork_rng(devices=[]):
            self.token_embedding = nn.Embedding(vocab, d_model)
            self.position_embedding = nn.Embedding(seq_len, d_model)
            self.blocks = nn.ModuleList(_Block(d_model, n_heads) for _ in range(n_layers))
            self.norm = nn.LayerNorm(d_model)
            self.head = nn.Linear(d_model, vocab, bias=False)
        if tied:
            self.head.weight = self.token_embedding.weight
        generator = torch.Generator().manual_seed(seed)
        residual_std = 0.02 / math.sqrt(2 * n_layers)
        with torch.no_grad():
            for name, parameter in self.named_parameters():
                if name.endswith("bias"):
                    parameter.zero_()
                elif "norm" in name:
                    parameter.fill_(1.0)
                elif name.endswith(("projection.weight", "mlp.2.weight")):
                    parameter.normal_(0.0, residual_std, generator=generator)
                else:
                    parameter.normal_(0.0, 0.02, generator=generator)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Logits of the next token at each position, shape ``inputs.shape + (vocab,)``."""
        length = inputs.shape[-1]
        if length > self.seq_len:
            raise InvalidArgumentError(
                f"inputs must have at most seq_len ({self.seq_len}) tokens, got {length}",
                "inputs",
            )
        positions = torch.arange(length, device=inputs.device)
        x = self.token_embedding(inputs) + self.position_embedding(positions)
        for block in self.blocks:
            x = block(x)
        logits: torch.Tensor = self.head(self.norm(x))
        return logits


def make_model(config: WorkloadConfig | None = None, *, seed: int | None = None) -> TinyLM:
    """The :class:`TinyLM` of ``config``, initialised from ``seed`` (``config.seed`` if None).

    Examples
    --------
    >>> import torch
    >>> from benches.workloads import diloco_language_model as workload
    >>> a, b = workload.make_model(), workload.make_model()
    >>> all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    True
    """
    config = config or WorkloadConfig()
    return TinyLM(
        config.vocab,
        config.d_model,
        config.n_layers,
        config.n_heads,
        config.seq_len,
        seed=config.seed if seed is None else seed,
        tied=config.tied,
    )


def make_inner_optimizer(
    model: nn.Module,
    *,
    lr: float = WorkloadConfig.lr,
    weight_decay: float = WorkloadConfig.weight_decay,
) -> torch.optim.AdamW:
    """AdamW for the workload: betas (0.9, 0.95), weight decay on matrices only.

    DiLoCo's inner optimizer is AdamW with weight decay 0.1 (arXiv 2311.08105); the decay
    skips parameters of dimension below 2 (biases, LayerNorm gains), as in GPT training.

    Examples
    --------
    >>> from benches.workloads import diloco_language_model as workload
    >>> optimizer = workload.make_inner_optimizer(workload.make_model(), lr=1e-3)
    >>> [group["weight_decay"] for group in optimizer.param_groups]
    [0.1, 0.0]
    """
    if not (lr > 0 and math.isfinite(lr)):
        raise InvalidArgumentError(f"lr must be positive and finite, got {lr}", "lr")
    if not (weight_decay >= 0 and math.isfinite(weight_decay)):
        raise InvalidArgumentError(
            f"weight_decay must be non-negative and finite, got {weight_decay}", "weight_decay"
        )
    decayed = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    others = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return torch.optim.AdamW(
        [
            {"params": decayed, "weight_decay": weight_decay},
            {"params": others, "weight_decay": 0.0},
        ],
        lr=lr,
        betas=(0.9, 0.95),
        eps=1e-8,
    )


def language_model_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Mean next-token cross-entropy (nats per token) of ``model`` on ``batch``."""
    inputs, targets = batch
    logits = model(inputs)
    loss: torch.Tensor = functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    )
    return loss


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch) -> float:
    """One inner step: zero the gradients, backpropagate the mean loss, step; returns the loss.

    Examples
    --------
    >>> from benches.workloads import diloco_language_model as workload
    >>> config = workload.WorkloadConfig(batch_size=4, seq_len=16)
    >>> model = workload.make_model(config)
    >>> optimizer = workload.make_inner_optimizer(model, lr=1e-2)
    >>> stream = workload.batches(0, 1, config=config)
    >>> first = workload.train_step(model, optimizer, next(stream))
    >>> later = [workload.train_step(model, optimizer, next(stream)) for _ in range(10)]
    >>> later[-1] < first - 0.5
    True
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss = language_model_loss(model, batch)
    loss.backward()  # type: ignore[no-untyped-call]
    optimizer.step()
    return float(loss.detach())


def evaluate(
    model: nn.Module, *, config: WorkloadConfig | None = None, data: Batch | None = None
) -> float:
    """Mean cross-entropy (nats per token) of ``model`` on the held-out set.

    Parameters
    ----------
    model : torch.nn.Module
        Maps int64 inputs (batch, seq_len) to logits (batch, seq_len, vocab).
    config : WorkloadConfig, optional
        Picks :func:`evaluation_set` when ``data`` is None.
    data : tuple of torch.Tensor, optional
        ``(inputs, targets)`` to evaluate on instead.

    Examples
    --------
    >>> import math
    >>> from benches.workloads import diloco_language_model as workload
    >>> loss = workload.evaluate(workload.make_model())
    >>> abs(loss - math.log(32)) < 0.1  # a fresh model is close to uniform
    True
    """
    data = data if data is not None else evaluation_set(config)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return float(language_model_loss(model, data))
    finally:
        model.train(was_training)
