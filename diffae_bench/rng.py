"""Per-item random streams: every image, code and draw has its own seed (NVlabs/edm's StackedRandomGenerator).

A result must not depend on the batch size, on how work is split across
processes, or on how many items were asked for: item i of a request always
gets the same noise. So random draws come from one generator per item,
seeded by a hash of (run seed, stream name, item index), and a batch stacks
the items' draws. `StackedGenerator` can be passed wherever a model takes a
`generator`; models draw through `randn`, `rand` and `randint` below, which
accept a plain torch.Generator too (one stream for the whole batch, as before).
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(*parts) -> int:
    """A 63-bit seed from any parts ("0/samples/17"): stable across runs, machines and Python versions."""
    return int(hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:15], 16)


class StackedGenerator:
    """One CPU torch.Generator per item; draws of shape (n, *item_shape) stack one draw per item."""

    def __init__(self, seeds):
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]

    @classmethod
    def for_items(cls, start: int, stop: int, *stream) -> "StackedGenerator":
        """Generators of items start..stop-1 of the named stream."""
        return cls(derive_seed(*stream, i) for i in range(start, stop))

    def __len__(self) -> int:
        return len(self.generators)

    def _check(self, size) -> tuple[int, ...]:
        size = tuple(size)
        if not size or size[0] != len(self.generators):
            raise ValueError(f"a StackedGenerator of {len(self.generators)} items cannot draw a batch of shape {size}")
        return size[1:]

    def randn(self, size) -> torch.Tensor:
        item = self._check(size)
        return torch.stack([torch.randn(item, generator=g) for g in self.generators])

    def rand(self, size) -> torch.Tensor:
        item = self._check(size)
        return torch.stack([torch.rand(item, generator=g) for g in self.generators])

    def randint(self, high: int, size) -> torch.Tensor:
        item = self._check(size)
        return torch.stack([torch.randint(high, item, generator=g) for g in self.generators])


Generator = torch.Generator | StackedGenerator | None


def randn(size, generator: Generator = None) -> torch.Tensor:
    """Standard normal draws on the CPU, per item where the generator is a StackedGenerator."""
    if isinstance(generator, StackedGenerator):
        return generator.randn(size)
    return torch.randn(tuple(size), generator=generator)


def rand(size, generator: Generator = None) -> torch.Tensor:
    if isinstance(generator, StackedGenerator):
        return generator.rand(size)
    return torch.rand(tuple(size), generator=generator)


def randint(high: int, size, generator: Generator = None) -> torch.Tensor:
    if isinstance(generator, StackedGenerator):
        return generator.randint(high, size)
    return torch.randint(high, tuple(size), generator=generator)
