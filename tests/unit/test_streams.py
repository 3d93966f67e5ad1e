"""Counter-based streams (`neural_trader.streams`): the properties the trainer relies on.

Every test here is about properties, not pinned values (except `mix32`, held to
a plain-Python transcription of its formula): a permutation is a permutation,
draws depend on (replica seed, purpose, epoch) alone, two replicas or two
epochs never share a stream, positions and pairs are uniform (chi-square on a
fixed draw), words and bytes are uniform, dropout keeps a unit with the
model's stated probability, every value stays in range (no signed overflow),
and the CPU and a GPU draw the same bits.

Chi-square tests run on fixed seeds, so they pass or fail the same way every
run; each asserts p > 1e-4, a threshold a uniform generator passes with
probability 0.9999 per test. There are 13 such tests: should the permutation
algorithm change (new draws), a correct one still passes them all with
probability above 0.998, while a broken one (a round too few, a biased bit)
lands at p < 1e-10 at these sample sizes. Rates (bits of words, kept units)
are held to 6 binomial standard deviations, which a fair draw exceeds with
probability 2e-9.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from neural_trader.data import make_generator
from neural_trader.models import TraderNet
from neural_trader.streams import DROPOUT, PERMUTATION, Streams, mix32

M32 = 2**32 - 1


def _mix32_reference(x: int) -> int:
    x ^= x >> 16
    x = (x * 0x21F0AAAD) & M32
    x ^= x >> 15
    x = (x * 0x735A2D97) & M32
    return x ^ (x >> 15)


def test_mix32_is_the_documented_xorshift_multiply_mixer():
    rng = np.random.default_rng(0)
    values = [0, 1, 2, M32, M32 - 1, 2**31, 2**31 - 1, *rng.integers(0, 2**32, 3000).tolist()]
    got = mix32(torch.tensor(values, dtype=torch.int64)).tolist()
    assert got == [_mix32_reference(v) for v in values]


def test_mix32_is_injective_and_stays_in_32_bits():
    x = torch.arange(0, 2**32, 2**32 // 200_000 + 1, dtype=torch.int64)
    x = torch.cat([x, torch.arange(200_000, dtype=torch.int64), torch.arange(M32 - 1000, M32 + 1, dtype=torch.int64)])
    x = x.unique()
    y = mix32(x)
    assert y.unique().numel() == x.numel()
    assert int(y.min()) >= 0 and int(y.max()) <= M32


@pytest.mark.parametrize("n", [1, 2, 3, 7, 31, 32, 33, 1000, 16_000, 2**14, 2**14 + 1])
def test_every_row_is_a_permutation(n):
    streams = Streams.keyed("streams", "perm", replicas=range(5))
    for epoch in (0, 1, 250):
        perm = streams.permutations(epoch, n)
        assert perm.dtype == torch.int64 and perm.shape == (5, n)
        assert torch.equal(perm.sort(dim=1).values, torch.arange(n).expand(5, n))


@pytest.mark.parametrize("n", [2**20, 2**20 + 1])
def test_a_large_domain_permutes_in_range(n):
    """Sizes that straddle the module's switch from int32 to int64 arithmetic (at 2**20 rows as written):
    values stay in [0, n), each once, where a signed overflow would show as a value out of range or repeated."""
    perm = Streams([7]).permutations(3, n)[0]
    assert int(perm.min()) == 0 and int(perm.max()) == n - 1
    assert torch.equal(torch.bincount(perm, minlength=n), torch.ones(n, dtype=torch.int64))


def test_draws_are_deterministic_and_a_replicas_own():
    """A replica's draws depend on its seed alone: slicing or re-keying the batch changes nothing."""
    whole = Streams.keyed("streams", "own", replicas=range(8))
    part = Streams.keyed("streams", "own", replicas=range(3, 5))
    assert torch.equal(whole[3:5].seeds, part.seeds)
    for epoch in (0, 9):
        assert torch.equal(whole.permutations(epoch, 100)[3:5], part.permutations(epoch, 100))
        assert torch.equal(whole.words(DROPOUT, epoch, 50)[3:5], part.words(DROPOUT, epoch, 50))
        assert torch.equal(whole.bytes(DROPOUT, epoch, 50)[3:5], part.bytes(DROPOUT, epoch, 50))
    again = Streams.keyed("streams", "own", replicas=range(8))
    assert torch.equal(whole.permutations(4, 1000), again.permutations(4, 1000))
    permuter = whole.permuter(1000)
    first = permuter(4).clone()
    permuter(5)
    assert torch.equal(permuter(4), first)  # reused buffers, same draw for the same epoch


def test_two_replicas_two_epochs_two_purposes_never_share_a_stream():
    streams = Streams.keyed("streams", "share", replicas=range(64))
    keys = set()
    for purpose in (PERMUTATION, DROPOUT):
        for epoch in range(50):
            a, b = streams.key(purpose, epoch)
            keys |= set(zip(a.tolist(), b.tolist()))
    assert len(keys) == 64 * 2 * 50  # every (replica, purpose, epoch) its own 64-bit key
    perm = streams.permutations(0, 1000)
    assert len({tuple(row) for row in perm.tolist()}) == 64
    assert not any(torch.equal(perm, streams.permutations(e, 1000)) for e in range(1, 5))
    words = streams.words(DROPOUT, 0, 16)
    assert len({tuple(row) for row in words.tolist()}) == 64
    assert not torch.equal(words, streams.words(PERMUTATION, 0, 16))


@pytest.mark.parametrize("n", [5, 16, 33, 100])
def test_positions_are_uniform(n):
    """Chi-square over (position, value) counts on a fixed draw of 20,000 replicas."""
    perm = Streams.keyed("streams", "uniform", n, replicas=range(20_000)).permutations(2, n)
    counts = torch.stack([torch.bincount(perm[:, pos], minlength=n) for pos in range(n)]).double()
    assert stats.chisquare(counts.flatten().numpy()).pvalue > 1e-4


@pytest.mark.parametrize("n", [8, 16, 64, 1000])
def test_pairs_of_positions_are_uniform(n):
    """The values at positions (0, 1) and (0, n - 1), binned into 8 ranges, against their exact expected counts."""
    replicas, k = 20_000, 8
    perm = Streams.keyed("streams", "pairs", n, replicas=range(replicas)).permutations(0, n)
    size = torch.bincount(torch.arange(n) * k // n, minlength=k).double()  # values in each bin
    expected = (size.view(-1, 1) * size.view(1, -1) - torch.diag(size)).flatten() / (n * (n - 1)) * replicas
    for j in (1, n - 1):
        pair = torch.bincount(perm[:, 0] * k // n * k + perm[:, j] * k // n, minlength=k * k).double()
        keep = expected > 0
        assert stats.chisquare(pair[keep].numpy(), expected[keep].numpy()).pvalue > 1e-4, j


def test_two_rows_share_a_batch_at_the_uniform_rate():
    """Neighbouring rows of the data land in the same batch of 1000 out of 16,000 as often as any two rows do."""
    n, batch, replicas = 16_000, 1000, 256
    where = torch.argsort(Streams.keyed("streams", "batch", replicas=range(replicas)).permutations(0, n), dim=1)
    same = (where[:, :-1] // batch == where[:, 1:] // batch).double().mean().item()
    expected = (batch - 1) / (n - 1)
    # 256 x 15,999 pairs, dependent within a replica; the rate's sd is below 0.001 (binomial over 256 replicas' means)
    assert abs(same - expected) < 0.003, (same, expected)


def test_words_and_bytes_are_uniform():
    words = Streams.keyed("streams", "words", replicas=range(16)).words(DROPOUT, 3, 4096)
    assert int(words.min()) >= 0 and int(words.max()) <= M32
    bits = ((words.unsqueeze(-1) >> torch.arange(32)) & 1).double()  # (16, 4096, 32)
    per_bit = bits.mean(dim=(0, 1))  # 65,536 draws a bit: sd 0.002
    assert torch.all((per_bit - 0.5).abs() < 6 * 0.5 / 256), per_bit
    raw = Streams.keyed("streams", "bytes", replicas=range(16)).bytes(DROPOUT, 0, 65_536)  # 4096 draws a value
    assert raw.dtype == torch.uint8 and raw.shape == (16, 65_536)
    counts = torch.bincount(raw.flatten().long(), minlength=256)
    assert stats.chisquare(counts.double().numpy()).pvalue > 1e-4


def test_bytes_are_the_words_little_endian():
    streams = Streams([11, 12])
    words, raw = streams.words(DROPOUT, 1, 5), streams.bytes(DROPOUT, 1, 18)
    expected = [[(w >> (8 * i)) & 255 for w in row for i in range(4)][:18] for row in words.tolist()]
    assert raw.tolist() == expected


@pytest.mark.parametrize("dropout", [0.5, 0.3])  # packed bits (keep_bytes 128), a byte a unit (179)
def test_dropout_keeps_a_unit_with_the_stated_probability(dropout):
    """The fraction of units `sample_noise` keeps, overall, per unit and per pair of units, on a fixed draw.

    64 replicas x 4000 rows x 5 units = 1.28M units, kept independently with
    probability keep = keep_bytes / 256: the fraction kept has binomial sd
    sqrt(keep (1 - keep) / 1.28M) (0.00044 at keep 0.5) and is held to 6 sd;
    each unit's (256,000 draws: sd 0.001) and the rate at which units 0 and 1
    are both kept (mean keep**2) likewise. The inverted-dropout multipliers
    then average 1 within 6 of their sd. keep itself is within 1/512 of
    1 - dropout (0.3: keep_bytes = round(179.2) = 179, keep = 0.69921875).
    """
    replicas, rows = 64, 4000
    model = TraderNet([make_generator("test_streams", "init", s) for s in range(replicas)], 4, 5, dropout)
    assert model.keep == model.keep_bytes / 256 and abs(model.keep - (1 - dropout)) <= 1 / 512
    assert model.keep_bytes == (128 if dropout == 0.5 else 179)
    streams = Streams.keyed("streams", "dropout", replicas=range(replicas))
    mask = model.dropout_mask(model.sample_noise(rows, streams, 3))  # (S, rows, hidden): 1/keep or 0
    assert mask.shape == (replicas, rows, 5)
    kept, keep = (mask > 0).double(), model.keep
    assert set(mask.unique().tolist()) == {0.0, float(torch.tensor(1 / keep, dtype=mask.dtype))}

    def sd(p: float, draws: int) -> float:
        return (p * (1 - p) / draws) ** 0.5

    assert abs(kept.mean().item() - keep) < 6 * sd(keep, kept.numel())
    per_unit = kept.mean(dim=(0, 1))
    assert torch.all((per_unit - keep).abs() < 6 * sd(keep, replicas * rows)), per_unit
    both = (kept[..., 0] * kept[..., 1]).mean().item()
    assert abs(both - keep**2) < 6 * sd(keep**2, replicas * rows), both
    assert abs(mask.double().mean().item() - 1) < 6 * sd(keep, kept.numel()) / keep
    model.eval()
    assert model.sample_noise(rows, streams, 3) is None  # no dropout outside training


@pytest.mark.parametrize("bad,match", [([1, 1], "distinct"), ([-1], r"\[0, 2\*\*63\)"), ([[1, 2]], "1-D"),
                                       ([], "non-empty")])
def test_bad_seeds_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        Streams(bad)


def test_a_bad_epoch_or_size_is_refused():
    streams = Streams([1])
    with pytest.raises(ValueError, match="epoch must lie in"):
        streams.permutations(-1, 10)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        streams.permutations(0, 0)
    with pytest.raises(TypeError, match="slice"):
        streams[0]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_draws_the_cpus_bits():
    streams = Streams.keyed("streams", "cuda", replicas=range(33))
    for n in (7, 1000, 16_000, 2**20 + 1):
        assert torch.equal(streams.permutations(5, n, "cuda").cpu(), streams.permutations(5, n))
    assert torch.equal(streams.words(DROPOUT, 2, 999, "cuda").cpu(), streams.words(DROPOUT, 2, 999))
    assert torch.equal(streams.bytes(DROPOUT, 2, 999, "cuda").cpu(), streams.bytes(DROPOUT, 2, 999))
