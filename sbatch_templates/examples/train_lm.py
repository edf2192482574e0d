"""A tiny causal language model trained on synthetic tokens: the payload of the training and
fine-tuning templates. Replace it with your own training script; keep the `mark` call.

Runs under torchrun (RANK/WORLD_SIZE/LOCAL_RANK) or plain srun (SLURM_PROCID/...), with
NCCL on GPUs and gloo on CPUs, and reports tokens/s and the tokens processed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.distributed as dist
from torch import nn

from _common import dist_env, mark


class TinyLM(nn.Module):
    def __init__(self, vocab: int, dim: int, seq: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.zeros(seq, dim))
        layer = nn.TransformerEncoderLayer(dim, nhead=4, dim_feedforward=4 * dim, batch_first=True)
        self.blocks = nn.TransformerEncoder(layer, num_layers=2)
        self.head = nn.Linear(dim, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(seq))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.pos[: tokens.shape[1]]
        x = self.blocks(x, mask=self.mask[: tokens.shape[1], : tokens.shape[1]], is_causal=True)
        return self.head(x)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps per epoch")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--mark", action="store_true", help="record work units (slurm-ai mark)")
    args = parser.parse_args()

    rank, world, _local_rank = dist_env()
    use_cuda = torch.cuda.is_available()
    # slurm-ai bind orders CUDA_VISIBLE_DEVICES so that this rank's own GPU comes first:
    # device 0 is always the rank's own GPU (all job GPUs stay visible for CUDA IPC/P2P).
    device = torch.device("cuda:0" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(0)
    if world > 1:
        os.environ.setdefault("RANK", str(rank))
        os.environ.setdefault("WORLD_SIZE", str(world))
        dist.init_process_group("nccl" if use_cuda else "gloo")
    torch.manual_seed(1234 + rank)
    model = TinyLM(args.vocab, args.dim, args.seq).to(device)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model)
    optim = torch.optim.AdamW(model.parameters(), lr=3e-4)
    loss_fn = nn.CrossEntropyLoss()

    started = time.perf_counter()
    tokens = 0
    loss = torch.tensor(0.0)
    for _epoch in range(args.epochs):
        for _step in range(args.steps):
            batch = torch.randint(0, args.vocab, (args.batch, args.seq + 1), device=device)
            logits = model(batch[:, :-1])
            loss = loss_fn(logits.reshape(-1, args.vocab), batch[:, 1:].reshape(-1))
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            tokens += args.batch * args.seq
    elapsed = time.perf_counter() - started
    total_tokens = tokens * world
    if rank == 0:
        print(
            f"trained {args.epochs} epoch(s), {total_tokens} tokens in {elapsed:.1f} s "
            f"({total_tokens / elapsed:,.0f} tokens/s), final loss {loss.item():.3f}"
        )
        if args.mark:
            mark(tokens=total_tokens, epochs=args.epochs, samples=args.batch * args.steps * world)
    if world > 1:
        # Every collective is done after this barrier. Then leave without the C++
        # teardown: the TCPStore's host (rank 0, or torchrun's agent) may exit first,
        # and gloo's and the store client's destructors then abort the other ranks
        # ("terminate called without an active exception", SIGABRT; seen about 1 run
        # in 6 on the local cluster, with or without destroy_process_group()).
        dist.barrier()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
