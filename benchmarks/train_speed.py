"""Training speed of the seed's DataLoader loop against this project's trainer.

Runs the seed's workload (N=1000 series, T=20, L=4, hidden 5, batch 1000) four
ways in one process, side by side, so the ratios are the figure, not the times:

  (a) a re-creation of the seed notebook's loop (TensorDataset + DataLoader);
  (b) neural_trader.trader.train_trader with one replica;
  (c) the same trainer with S = 16, 64 and 256 replicas in one batched computation;
  (d) the same trainer at S = 64 with dropout 0.5 (the study's DropoutTrader).

Each ratio is model-epochs per second over (a)'s. Row (d) also prints its cost
over the same configuration without dropout (the (c) row of the same S, timed
in the same rounds): seconds with dropout over seconds without, the JSON's
`dropout_cost_ratio`. The configurations are timed in turn, `--repeats`
rounds of all of them, and each keeps its fastest round:
on a shared machine another process can stall any single run, and taking the
best of interleaved rounds lets every configuration meet the same quiet spells.
Data drawing and model set-up are outside the timed region. The last line
printed is JSON.

Threads default to 1, as the study runs (runtime.torch_threads). The seed loop's
ops are too small for torch to split, so it runs the same at 1 or 2 threads; the
batched trainer is faster at 2 threads on an idle machine (an S=64 epoch in
about 17 ms instead of 26 on 2 cores) but collapses when another process holds
a core, since every op then waits for its descheduled second worker. Pass
`--threads 2` to measure that case.

    python benchmarks/train_speed.py --epochs 500
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from torch import nn

from neural_trader.synthetic.config import AR1Regime
from neural_trader.data import Windows, make_generator, window_returns
from neural_trader.models import TraderNet
from neural_trader.synthetic.sources import generate_returns
from neural_trader.streams import Streams
from neural_trader.trader import train_trader
from neural_trader.train import resolve_device

N, M, T, L, HIDDEN, BATCH, LR = 1000, 100, 20, 4, 5, 1000, 0.01


class SeedTrader(nn.Module):
    """The notebook's model, as written there: two nn.Linear layers with sigmoids."""

    def __init__(self) -> None:
        super().__init__()
        self.linear0, self.linear1 = nn.Linear(L, HIDDEN), nn.Linear(HIDDEN, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear1(torch.sigmoid(self.linear0(x)))).squeeze()


def seed_loop(train: Windows, valid: Windows, epochs: int) -> float:
    """The notebook's training loop; returns seconds taken."""
    torch.manual_seed(0)  # the notebook's global RNG, on purpose: this is its loop
    model = SeedTrader()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(train.x, train.y), shuffle=True, batch_size=BATCH
    )
    optim = torch.optim.RMSprop(model.parameters(), lr=LR)
    history = []
    start = time.perf_counter()
    for _ in range(epochs):
        n_batch, stats = 0, torch.zeros(2)
        for bx, by in loader:
            recom = model(bx)
            ret = recom * by
            loss = -ret.mean()
            optim.zero_grad()
            loss.backward()
            optim.step()
            n_batch += 1
            stats += torch.tensor([recom.detach().mean(), ret.detach().mean()])
        stats /= n_batch
        vrec = model(valid.x)
        vret = vrec * valid.y
        history.append(torch.cat([stats, torch.tensor([vrec.detach().mean(), vret.detach().mean()])]))
    return time.perf_counter() - start


def replica_data(replicas: int, device: torch.device) -> tuple[Windows, Windows]:
    regime = AR1Regime(rho=0.2)

    def draw(n: int, split: str) -> torch.Tensor:
        return torch.stack(
            [generate_returns(regime, n, T, generator=make_generator("bench", split, s)) for s in range(replicas)]
        )

    return window_returns(draw(N, "train"), L).to(device), window_returns(draw(M, "valid"), L).to(device)


def ours(replicas: int, epochs: int, device: torch.device, dropout: float = 0.0) -> float:
    train, valid = replica_data(replicas, device)
    inits = [make_generator("init", s) for s in range(replicas)]  # CPU generators, as the study's
    model = TraderNet(inits, L, HIDDEN, dropout).to(device)
    streams = Streams.keyed("shuffle", replicas=range(replicas))
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    train_trader(model, train, valid, streams, lr=LR, epochs=epochs, batch_size=BATCH)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=500, help="epochs per configuration")
    parser.add_argument("--replicas", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (the seed loop always runs on cpu)")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch intra-op threads (default 1, the study's runtime.torch_threads; see the module docstring)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="rounds over all configurations; the best counts")
    parser.add_argument("--dropout", type=float, default=0.5, help="dropout of row (d)")
    parser.add_argument("--dropout-replicas", type=int, default=64, help="replicas of row (d) and of its base")
    args = parser.parse_args()
    if args.epochs < 1 or args.repeats < 1 or args.dropout_replicas < 1:
        parser.error("--epochs, --repeats and --dropout-replicas must be >= 1")
    if not 0.0 < args.dropout < 1.0:
        parser.error("--dropout must be in (0, 1)")
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)

    seed_train, seed_valid = replica_data(1, torch.device("cpu"))
    seed_train, seed_valid = Windows(seed_train.x[0], seed_train.y[0]), Windows(seed_valid.x[0], seed_valid.y[0])
    runs = {"seed": lambda: seed_loop(seed_train, seed_valid, args.epochs), 1: lambda: ours(1, args.epochs, device)}
    sd = args.dropout_replicas
    runs |= {s: (lambda s=s: ours(s, args.epochs, device)) for s in dict.fromkeys([*args.replicas, sd])}
    runs["dropout"] = lambda: ours(sd, args.epochs, device, args.dropout)
    best = {key: float("inf") for key in runs}
    for _ in range(args.repeats):
        for key, run in runs.items():
            best[key] = min(best[key], run())
    seed_eps = args.epochs / best["seed"]
    single_eps = args.epochs / best[1]
    batched = {s: s * args.epochs / best[s] for s in args.replicas}
    base_eps, dropout_eps = sd * args.epochs / best[sd], sd * args.epochs / best["dropout"]
    cost = best["dropout"] / best[sd]  # seconds with dropout over seconds without, same S and data

    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, device {device}, {args.epochs} epochs each, best of {args.repeats} rounds")
    print(f"{'configuration':<28}{'model-epochs/s':>16}{'ratio':>10}")
    print(f"{'(a) seed DataLoader loop':<28}{seed_eps:>16.1f}{1.0:>10.1f}")
    print(f"{'(b) ours, 1 replica':<28}{single_eps:>16.1f}{single_eps / seed_eps:>10.1f}")
    for s, eps in batched.items():
        print(f"{f'(c) ours, {s} replicas':<28}{eps:>16.1f}{eps / seed_eps:>10.1f}")
    if sd not in batched:
        print(f"{f'(c) ours, {sd} replicas':<28}{base_eps:>16.1f}{base_eps / seed_eps:>10.1f}")
    print(f"{f'(d) {sd} replicas, dropout {args.dropout:g}':<28}{dropout_eps:>16.1f}{dropout_eps / seed_eps:>10.1f}")
    print(f"dropout cost at {sd} replicas: {cost:.2f}x the time without dropout")
    print(json.dumps({
        "seed_loop_epochs_per_s": round(seed_eps, 2),
        "single_epochs_per_s": round(single_eps, 2),
        "single_ratio": round(single_eps / seed_eps, 2),
        "batched": {str(s): round(eps / seed_eps, 2) for s, eps in batched.items()},
        "dropout_replicas": sd,
        "dropout_epochs_per_s": round(dropout_eps, 2),
        "dropout_base_epochs_per_s": round(base_eps, 2),
        "dropout_cost_ratio": round(cost, 3),
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
