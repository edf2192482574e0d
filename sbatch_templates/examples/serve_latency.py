"""A toy low-latency inference loop: the payload of the inference template.

A small MLP answers one request at a time (closed loop, like an online service); latency per
request is measured and P50/P95/P99 printed. Replace the model and the request source with
your own server and client; keep the `mark` call so cost per 1000 requests can be reported.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from _common import mark


def percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--mark", action="store_true")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = nn.Sequential(
        nn.Linear(args.dim, 4 * args.dim), nn.GELU(), nn.Linear(4 * args.dim, args.dim)
    )
    model = model.to(device).eval()
    latencies_ms: list[float] = []
    with torch.inference_mode():
        for _ in range(min(50, args.requests)):  # warm-up
            model(torch.randn(args.batch, args.dim, device=device))
        for _ in range(args.requests):
            request = torch.randn(args.batch, args.dim, device=device)
            started = time.perf_counter()
            model(request)
            if device.type == "cuda":
                torch.cuda.synchronize()
            latencies_ms.append((time.perf_counter() - started) * 1000)
    latencies_ms.sort()
    print(
        f"requests={args.requests} p50={percentile(latencies_ms, 50):.3f} ms "
        f"p95={percentile(latencies_ms, 95):.3f} ms p99={percentile(latencies_ms, 99):.3f} ms "
        f"mean={statistics.fmean(latencies_ms):.3f} ms"
    )
    if args.mark:
        mark(requests=args.requests)


if __name__ == "__main__":
    main()
