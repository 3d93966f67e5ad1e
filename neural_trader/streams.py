"""Counter-based random streams: every training draw is a pure function of (replica seed, epoch, index).

The trainer's epoch permutations and dropout bits come from here, never from a
device generator. Each draw is integer arithmetic on int32/int64 tensors, with
every product below 2**31 in int32 and below 2**63 in int64 (no signed
overflow anywhere), so the bits are the same on every device, and replica r's
draws depend on its seed alone: a replica trained in a batch, alone, in a seed
shard or in a memory block draws the same bits.

Keys. A replica's 63-bit seed is split into two 32-bit lanes (a, b). A stream
(purpose, epoch) absorbs each tag t by a ^= t followed by three Feistel rounds
on (a, b) with `mix32`: for fixed tags this is a bijection of the 64-bit
state, so two replicas (distinct seeds) never share a stream; two epochs or
purposes of one replica share one only if their 64-bit keys collide
(probability 2**-64 a pair). Within a stream, draw i takes counter i: the
steps of an epoch read disjoint counters.

Permutations. A keyed bijection of [0, 2**bits) with 2**bits >= n (and at
least 32): an unbalanced Feistel network, (L, R) -> (R, L xor f(R)), whose
round functions are keyed multiply-add-shift hashes, f(R) = ((R * c + d) mod
2**bits) >> width(R) with c odd and d below 2**bits: a strongly universal
family (Dietzfelbinger). `PERMUTATION_ROUNDS` rounds on 2**8 values or more,
`SMALL_DOMAIN_ROUNDS` below: measured over 40,000 replicas, with fewer rounds
the pair (perm[0], perm[1]) fails a chi-square test of uniformity at n = 64
(6 or 8 rounds) and n = 8 (10), while position and pair tests pass from n = 2
to 16,000 as set. Evaluated on all 2**bits inputs, its outputs below n, kept in input order, are
a permutation of [0, n) (the values of a uniform permutation that fall in a
subset keep a uniform relative order, so this equals cycle-walking in law
and needs no loop). Elementwise and sort-free: a few tensor ops per epoch
for all replicas together.

Words. Uniform 32-bit words: word i of stream (a, b) is
mix32(mix32(i xor a) xor b), two rounds of the integer mixer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from neural_trader.seeding import seed_from

__all__ = ["Streams", "Permuter", "mix32", "PERMUTATION", "DROPOUT", "PERMUTATION_ROUNDS", "SMALL_DOMAIN_ROUNDS"]

M32 = 0xFFFF_FFFF
# the two multipliers of a 32-bit xorshift-multiply mixer (Wellons' hash prospector); both are odd and
# below 2**31, so a 32-bit value times either stays below 2**63 in int64
_MUL1, _MUL2 = 0x21F0_AAAD, 0x735A_2D97
_GOLDEN, _SILVER = 0x9E37_79B9, 0x85EB_CA6B  # round constants, odd 32-bit
PERMUTATION, DROPOUT = 1, 2  # stream purposes
PERMUTATION_ROUNDS = 6  # on 2**8 rows or more; below, SMALL_DOMAIN_ROUNDS
SMALL_DOMAIN_ROUNDS = 12
CACHE_VALUES = 2**18  # values a CPU permuter buffer holds: 1 MiB of int32


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A bijection of [0, 2**32) on int64 tensors: xorshift, multiply, xorshift, multiply, xorshift (mod 2**32)."""
    x = x ^ (x >> 16)
    x = (x * _MUL1) & M32
    x = x ^ (x >> 15)
    x = (x * _MUL2) & M32
    return x ^ (x >> 15)


def _mix32_(x: torch.Tensor, tmp: torch.Tensor) -> torch.Tensor:
    """`mix32` in place on a large int64 tensor, with `tmp` (same shape) as scratch."""
    for shift, mul in ((16, _MUL1), (15, _MUL2)):
        x.bitwise_xor_(torch.bitwise_right_shift(x, shift, out=tmp)).mul_(mul).bitwise_and_(M32)
    return x.bitwise_xor_(torch.bitwise_right_shift(x, 15, out=tmp))


def _absorb(a: torch.Tensor, b: torch.Tensor, tag: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The 64-bit key (a, b) after taking in one tag: a bijection of (a, b) for a fixed tag."""
    a = a ^ tag
    b = b ^ mix32(a)
    a = a ^ mix32(b)
    return a, b ^ mix32(a)


class Streams:
    """One family of counter-based streams per replica, keyed by the replica's 63-bit seed.

    `Streams.keyed(base, "train", replicas=range(lo, hi))` keys replica r on
    seed_from(base, "train", r), so any block of replicas draws what those
    replicas draw in the whole batch. Draws are made on the CPU or on the
    device asked for, with the same bits.
    """

    def __init__(self, seeds: Sequence[int] | torch.Tensor):
        seeds = torch.as_tensor(seeds, dtype=torch.int64).cpu()
        if seeds.dim() != 1 or seeds.numel() < 1:
            raise ValueError(f"seeds must be a non-empty 1-D sequence of ints (one per replica), got shape "
                             f"{tuple(seeds.shape)}")
        if bool((seeds < 0).any()):
            raise ValueError("seeds must lie in [0, 2**63)")
        if seeds.unique().numel() != seeds.numel():
            raise ValueError("seeds must be distinct: two replicas with one seed would share every stream")
        self.seeds = seeds

    @classmethod
    def keyed(cls, *keys: object, replicas: Iterable[int]) -> "Streams":
        """Replica r's seed is seed_from(*keys, r)."""
        return cls([seed_from(*keys, r) for r in replicas])

    def __len__(self) -> int:
        return self.seeds.numel()

    def __getitem__(self, index: slice) -> "Streams":
        if not isinstance(index, slice):
            raise TypeError("index Streams with a slice of replicas")
        return Streams(self.seeds[index])

    def key(self, purpose: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The 64-bit key (a, b), each (S,) int64 in [0, 2**32), of stream (purpose, epoch) of every replica."""
        for name, value in (("purpose", purpose), ("epoch", epoch)):
            if not 0 <= value <= M32:
                raise ValueError(f"{name} must lie in [0, 2**32), got {value}")
        a, b = self.seeds & M32, self.seeds >> 32
        a, b = _absorb(a, b, purpose)
        return _absorb(a, b, epoch)

    def words(self, purpose: int, epoch: int, count: int, device: str | torch.device = "cpu") -> torch.Tensor:
        """(S, count) int64 uniform 32-bit words: word i of each replica's stream (purpose, epoch)."""
        a, b = (k.to(device).unsqueeze(1) for k in self.key(purpose, epoch))
        x = torch.arange(count, dtype=torch.int64, device=device).unsqueeze(0) ^ a  # (S, count)
        tmp = torch.empty_like(x)
        _mix32_(x, tmp).bitwise_xor_(b)
        return _mix32_(x, tmp)

    def bytes(self, purpose: int, epoch: int, count: int, device: str | torch.device = "cpu") -> torch.Tensor:
        """(S, count) uniform bytes (uint8): the little-endian bytes of `words`, four a word."""
        words = self.words(purpose, epoch, -(-count // 4), device)
        # the word's bit pattern as int32, without overflow: w - 2**32 where w >= 2**31
        signed = words.sub_(torch.bitwise_right_shift(words, 31).bitwise_left_shift_(32)).to(torch.int32)
        return signed.view(torch.uint8)[:, :count]  # little-endian on every device torch builds for

    def permutations(self, epoch: int, n: int, device: str | torch.device = "cpu") -> torch.Tensor:
        """(S, n) int64: each replica's permutation of [0, n) for `epoch` (see the module docstring)."""
        return Permuter(self, n, device)(epoch).to(torch.int64)

    def permuter(self, n: int, device: str | torch.device = "cpu") -> "Permuter":
        """Each epoch's permutations of [0, n), drawn into buffers kept from one epoch to the next."""
        return Permuter(self, n, device)


class Permuter:
    """Every replica's permutation of [0, n) for any epoch, computed into buffers it keeps.

    A trainer calls it once per epoch; the buffers (three int32 rounds buffers
    and a mask for a cache-sized block of replicas, and the (S, n) output) are
    allocated once, since on a fresh allocation every epoch the page faults
    cost more than the arithmetic. A call returns (S, n) int32
    values (int64 beyond 2**20 rows), a view of a buffer that the next call
    overwrites.
    """

    def __init__(self, streams: Streams, n: int, device: str | torch.device = "cpu"):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
        self.bits = max(5, (n - 1).bit_length())  # at least 32 values: tiny Feistel domains permute unevenly
        if self.bits > 41:
            raise ValueError(f"n must be <= 2**41 to permute, got {n}")
        self.streams, self.n, self.device = streams, n, torch.device(device)
        self.rounds = PERMUTATION_ROUNDS if self.bits >= 8 else SMALL_DOMAIN_ROUNDS
        # the round function's R * c + d < 2**(ceil(bits / 2) + bits): int32 up to 20 bits, int64 up to 41
        self.dtype = torch.int32 if self.bits <= 20 else torch.int64
        s, size = len(streams), 1 << self.bits
        self.wl, self.wr = self.bits // 2, self.bits - self.bits // 2  # widths of the halves L (high bits) and R
        # on the CPU the rounds run over blocks of replicas whose buffers stay in cache (at S=256 and 16,000
        # rows, 2.4 times faster than over all replicas at once); a GPU takes every replica in one go
        self.chunk = s if self.device.type == "cuda" else max(1, min(s, CACHE_VALUES // size))
        x = torch.arange(size, dtype=self.dtype, device=self.device)
        self.x_left = x.bitwise_right_shift(self.wr).expand(self.chunk, -1)
        self.x_right = x.bitwise_and(((1 << self.wr) - 1)).expand(self.chunk, -1)
        self.buffers = [torch.empty(self.chunk, size, dtype=self.dtype, device=self.device) for _ in range(3)]
        self.mask = torch.empty(self.chunk, size, dtype=torch.bool, device=self.device) if size > n else None
        self.out = torch.empty(s, n, dtype=self.dtype, device=self.device)

    def __call__(self, epoch: int) -> torch.Tensor:
        a, b = self.streams.key(PERMUTATION, epoch)
        rounds = torch.arange(1, self.rounds + 1, dtype=torch.int64)
        kx = mix32(a.unsqueeze(1) ^ (rounds * _GOLDEN & M32))  # (S, rounds) xor keys
        km = mix32(b.unsqueeze(1) ^ (rounds * _SILVER & M32))  # (S, rounds) multipliers
        size = (1 << self.bits) - 1
        cs = (km & size | 1).to(self.dtype).to(self.device)  # (S, rounds) odd multipliers
        ds = (kx & size).to(self.dtype).to(self.device)  # (S, rounds) increments
        for lo in range(0, len(self.streams), self.chunk):
            hi = min(lo + self.chunk, len(self.streams))
            self._permute(cs[lo:hi], ds[lo:hi], self.out[lo:hi])
        return self.out

    def _permute(self, cs: torch.Tensor, ds: torch.Tensor, out: torch.Tensor) -> None:
        """The permutations of a block of replicas (their round keys cs, ds) into out (rows, n)."""
        rows, size = out.shape[0], (1 << self.bits) - 1
        left, right, f = (buf[:rows] for buf in self.buffers)
        left.copy_(self.x_left[:rows])
        right.copy_(self.x_right[:rows])
        wl, wr = self.wl, self.wr
        for i in range(self.rounds):
            # f(R) = ((R * c + d) mod 2**bits) >> wr, c odd and d below 2**bits: multiply-add-shift hashing,
            # strongly universal from wr bits to wl; R * c + d < 2**(wr + bits), below 2**31 in int32
            # (bits <= 20) and 2**62 in int64: no signed overflow
            torch.mul(right, cs[:, i:i + 1], out=f).add_(ds[:, i:i + 1]).bitwise_and_(size).bitwise_right_shift_(wr)
            left, right, f = right, f.bitwise_xor_(left), left  # (L, R) -> (R, L xor f)
            wl, wr = wr, wl
        y = left.bitwise_left_shift_(wr).bitwise_or_(right)  # (rows, 2**bits), a bijection of [0, 2**bits) each
        if self.mask is None:
            out.copy_(y)
        else:  # the n values below n, in input order
            mask = self.mask[:rows]
            torch.masked_select(y, torch.lt(y, self.n, out=mask), out=out.view(-1))
