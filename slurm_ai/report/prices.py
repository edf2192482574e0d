"""Prices, PUE and CO2 intensity from the config section [prices].

    [prices]
    currency = "EUR"
    cost_per_kwh = 0.25          # energy price at the meter
    pue = 1.3                    # facility energy / IT energy
    co2_kg_per_kwh = 0.35        # grid intensity, per facility kWh
    [prices.partitions.bare]
    cost_per_node_hour = 0.0     # hardware: amortisation, support, space
    cost_per_gpu_hour = 1.80
    [prices.partitions.vm]
    cost_per_kwh = 0.30          # per-partition override
    cost_per_gpu_hour = 2.10

Cost of a set of jobs = IT kWh x PUE x cost_per_kwh + node-hours x
cost_per_node_hour + GPU-hours x cost_per_gpu_hour, each with the partition's
own value where set. No price at all configured means costs are shown as
unknown rather than as zero.

The report's one other setting rides along here, so every caller of
`load_prices` (the report, `slurm-ai doctor`) reads it the same way:

    [report]
    min_jobs = 20                # jobs per side before the decision compares cost per result
"""

from __future__ import annotations

from dataclasses import dataclass, field

from slurm_ai.config import Config, Section

PRICE_KEYS = ("cost_per_kwh", "cost_per_node_hour", "cost_per_gpu_hour")
# Below this many jobs per side the decision section does not compare cost per
# result ("too few jobs to say"), however narrow a few jobs' interval looks.
# Percentiles have their own minimum n (uncertainty.py rule 2).
DEFAULT_MIN_JOBS = 20
PRICE_HIGH = 1e6  # per kWh, node-hour or GPU-hour, per kg CO2: no tariff comes near


@dataclass(frozen=True)
class PartitionPrices:
    cost_per_kwh: float
    cost_per_node_hour: float
    cost_per_gpu_hour: float


@dataclass(frozen=True)
class Prices:
    currency: str = "EUR"
    cost_per_kwh: float = 0.0
    pue: float = 1.0
    co2_kg_per_kwh: float = 0.0
    partitions: dict[str, PartitionPrices] = field(default_factory=dict)
    configured: bool = False
    # [report] min_jobs: jobs with results each side needs in the decision's cost comparison.
    min_jobs: int = DEFAULT_MIN_JOBS

    def for_partition(self, name: str) -> PartitionPrices:
        return self.partitions.get(name) or PartitionPrices(self.cost_per_kwh, 0.0, 0.0)

    def cost(self, partition: str, it_kwh: float, node_hours: float, gpu_hours: float) -> float:
        p = self.for_partition(partition)
        return (
            it_kwh * self.pue * p.cost_per_kwh
            + node_hours * p.cost_per_node_hour
            + gpu_hours * p.cost_per_gpu_hour
        )

    def co2_kg(self, it_kwh: float) -> float:
        return it_kwh * self.pue * self.co2_kg_per_kwh


def _nonneg(section: Section, key: str, default: float) -> float:
    # Finite and not negative (Section.get_float); the ceiling catches a slipped
    # exponent (1e30 EUR per kWh) before it turns every cost in the report absurd.
    return section.get_float(key, default, high=PRICE_HIGH)


def load_min_jobs(config: Config) -> int:
    """[report] min_jobs, at least 1; ConfigError otherwise."""
    from slurm_ai.errors import ConfigError

    value = config.section("report").get_int("min_jobs", DEFAULT_MIN_JOBS, low=-(2**31))
    if value < 1:
        raise ConfigError("[report] min_jobs: must be at least 1")
    return value


def load_prices(config: Config) -> Prices:
    """Prices from [prices] (and [report] min_jobs); ConfigError names the bad key."""
    from slurm_ai.errors import ConfigError

    section = config.section("prices")
    kwh = _nonneg(section, "cost_per_kwh", 0.0)
    pue = section.get_float("pue", 1.0, low=1.0, high=100.0)
    if pue < 1.0:
        raise ConfigError("[prices] pue: must be at least 1.0")
    configured = "cost_per_kwh" in section.values
    parts_section = section.get_table("partitions")
    partitions: dict[str, PartitionPrices] = {}
    for name in parts_section.values:
        sub = parts_section.get_table(name)
        configured = configured or any(k in sub.values for k in PRICE_KEYS)
        partitions[name] = PartitionPrices(
            cost_per_kwh=_nonneg(sub, "cost_per_kwh", kwh),
            cost_per_node_hour=_nonneg(sub, "cost_per_node_hour", 0.0),
            cost_per_gpu_hour=_nonneg(sub, "cost_per_gpu_hour", 0.0),
        )
    return Prices(
        currency=section.get_str("currency", "EUR"),
        cost_per_kwh=kwh,
        pue=pue,
        co2_kg_per_kwh=_nonneg(section, "co2_kg_per_kwh", 0.0),
        partitions=partitions,
        configured=configured,
        min_jobs=load_min_jobs(config),
    )
