"""How one worker's update vector becomes the sum over workers: the three wire formats.

* exact: an all-reduce sum in fp32 (thrifty's ring, or the same order over torch);
* native quantization: thrifty's quantized all-reduce (``quantize="fp4"`` and friends),
  which quantizes each contribution once and sends it straight to its slice's owner;
* a compressor (top-k, random-k, block quantizers; with or without error feedback): each
  worker's fixed-size payload is all-gathered and every payload decoded and summed in
  rank order, so all workers get the same bits. torch.distributed has no quantized
  all-reduce, so ``quantize="fp4"`` over it takes this path with a block quantizer.

Every exchange returns a *sum*; the caller divides by the number of contributors, which
a newly joined worker (sending zeros) is not among.

An :class:`~thrifty.diloco.compressors.LGreCo` compressor is bound once per part (DiLoCo's
fragments), and on its planning rounds the workers first sum their error tables, so that
they all choose the same levels before any payload is encoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from thrifty import _native
from thrifty._extras import require
from thrifty.diloco._transport import Transport, is_elastic, ring_bytes, wire_bytes
from thrifty.diloco.compressors import BlockQuantizer, Compressor, Feedback, LGreCo

QUANTIZATIONS = _native.QUANTIZATIONS


@dataclass
class Exchanged:
    """What one exchange produced on this worker."""

    total: Any  # sum over workers of what they sent (decoded), fp32
    sent: Any  # this worker's own contribution as the others decode it (for error feedback)
    bytes_sent: int


class Exchange:
    """The wire format chosen by DiLoCo's ``quantize`` and ``error_feedback``."""

    def __init__(
        self,
        transport: Transport,
        quantize: str | Compressor | None,
        feedback: Feedback | None,
        layouts: list[list[int]],
    ) -> None:
        self.feedback = feedback
        self.native: str | None = None
        self.compressor: Compressor | None = None
        if feedback is not None:
            self.compressor = feedback.compressor
        elif isinstance(quantize, str):
            if is_elastic(transport):
                self.native = quantize
            else:
                self.compressor = BlockQuantizer(quantize)
        else:
            self.compressor = quantize
        # One compressor per part (none without one): an LGreCo's levels belong to one layout.
        compressor = self.compressor
        self.compressors: list[Compressor] = []
        if compressor is not None:
            self.compressors = [
                compressor.for_layers(layout) if isinstance(compressor, LGreCo) else compressor
                for layout in layouts
            ]

    def lgreco(self, part: int) -> LGreCo | None:
        """Part ``part``'s L-GreCo compressor, or ``None`` when it has none."""
        compressor = self.compressors[part] if self.compressors else None
        return compressor if isinstance(compressor, LGreCo) else None

    @property
    def name(self) -> str:
        if self.feedback is not None:
            return str(self.feedback.name)
        if self.native is not None:
            return f"all_reduce/{self.native}"
        if self.compressor is not None:
            return str(self.compressor.name)
        return "all_reduce/fp32"

    def run(
        self,
        transport: Transport,
        vector: Any,
        seed: int,
        feedback_state: Any,
        *,
        part: int = 0,
        exchange_index: int = 0,
    ) -> Exchanged:
        """Sum ``vector`` (or, with error feedback, its corrected message) over workers.

        ``part`` picks the compressor (DiLoCo's fragment) and ``exchange_index`` counts
        that part's exchanges from 0, the same on every worker (an LGreCo re-plans on some
        of them). Leaves ``vector`` and ``feedback_state`` untouched, so a failed exchange can be
        run again; the caller commits the feedback state once it succeeded. An LGreCo
        re-plan is redone by the rerun too, from the same message, so a retry with a
        smaller world still agrees.
        """
        if self.compressor is None:
            buffer = vector.clone()
            transport.all_reduce(buffer, op="sum", quantize=self.native)
            estimate = ring_bytes(buffer.numel() * 4, transport.world_size)
            return Exchanged(buffer, vector, wire_bytes(transport, estimate))
        return self._gathered(transport, vector, seed, feedback_state, part, exchange_index)

    def _gathered(
        self,
        transport: Transport,
        vector: Any,
        seed: int,
        feedback_state: Any,
        part: int,
        exchange_index: int,
    ) -> Exchanged:
        torch = require("torch")
        message = (
            vector if self.feedback is None else self.feedback.outgoing(vector, feedback_state)
        )
        compressor = self.compressors[part]
        planning_bytes = 0
        if isinstance(compressor, LGreCo) and compressor.due(exchange_index):
            # Every worker plans on the first exchange, so settings that differ fail there.
            compressor.check_digests(transport.all_gather_scalars(compressor.digest()), "quantize")
            errors = torch.from_numpy(compressor.measure(message, seed=seed))
            rows = transport.all_gather(errors.reshape(-1).view(torch.int32))
            planning_bytes = wire_bytes(
                transport, (transport.world_size - 1) * errors.numel() * errors.element_size()
            )
            tables = rows.reshape(transport.world_size, -1).contiguous().view(torch.float64)
            compressor.plan(tables.cpu().numpy())
        numel = int(vector.numel())
        payload = compressor.encode(message, seed=seed)
        length = int(payload.numel())
        # thrifty's all-gather moves whole int32 words: pad to a multiple of four bytes.
        padded = torch.zeros(-(-length // 4) * 4, dtype=torch.uint8, device=payload.device)
        padded[:length] = payload
        gathered = transport.all_gather(padded.view(torch.int32))
        rows = gathered.view(torch.uint8).reshape(transport.world_size, -1)
        total = torch.zeros(numel, dtype=torch.float32, device=vector.device)
        for row in rows:  # rank order: the same additions on every worker
            total += compressor.decode(row[:length].to(vector.device), numel, seed=seed)
        sent = compressor.decode(payload, numel, seed=seed)
        estimate = (transport.world_size - 1) * int(padded.numel())
        return Exchanged(total, sent, planning_bytes + wire_bytes(transport, estimate))
