"""The ``simulation`` section: many virtual sites cut from the experiment's own sites'
training rows, trained together by the batched engine (``medfl run --engine batched``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from medfl.spec._base import SpecModel

SITE_COLUMN = "site"  # the column partitioner's name for "the source site of each row"
MAX_VIRTUAL_SITES = 10_000_000


class IidPartition(SpecModel):
    """Rows shuffled and dealt out: every site within one row of the same size."""

    type: Literal["iid"] = "iid"


class DirichletPartition(SpecModel):
    """Label skew: each outcome class's rows split over the sites in Dirichlet(alpha)
    proportions (small alpha: each site mostly one class)."""

    type: Literal["dirichlet"] = "dirichlet"
    alpha: float = Field(default=0.5, gt=0, le=1e6)
    min_size: int = Field(
        default=1,
        ge=1,
        description="rows every site gets at least; sites left below it after the draw are "
        "filled from the largest sites (said in the result)",
    )


class QuantityPartition(SpecModel):
    """Quantity skew: IID rows, site sizes in Dirichlet(alpha) shares of the pool."""

    type: Literal["quantity"] = "quantity"
    alpha: float = Field(default=1.0, gt=0, le=1e6)
    min_size: int = Field(default=1, ge=1, description="rows every site gets at least")


class ColumnPartition(SpecModel):
    """The natural partition: one site per level of a categorical column, or per source
    site with ``column: site``."""

    type: Literal["column"] = "column"
    column: str = Field(
        min_length=1, description="a categorical column of the schema, or 'site' (the hospital)"
    )


class ShardPartition(SpecModel):
    """Fixed-size shards, each drawn from the pool with replacement (any number of sites)."""

    type: Literal["shards"] = "shards"
    shard_size: int = Field(ge=1, le=1_000_000, description="rows per virtual site")


Partitioner = Annotated[
    IidPartition | DirichletPartition | QuantityPartition | ColumnPartition | ShardPartition,
    Field(discriminator="type"),
]


class VirtualSites(SpecModel):
    """How the pooled training rows of the experiment's sites become virtual sites."""

    count: int | None = Field(
        default=None,
        ge=1,
        le=MAX_VIRTUAL_SITES,
        description="how many virtual sites; not with partitioner 'column' (one per level)",
    )
    partitioner: Partitioner
    seed: int | None = Field(
        default=None, ge=0, le=2**31 - 1, description="seed of the partition; default training.seed"
    )

    @model_validator(mode="after")
    def _count(self) -> VirtualSites:
        by_column = isinstance(self.partitioner, ColumnPartition)
        if by_column and self.count is not None:
            raise ValueError("count: partitioner 'column' makes one site per level; leave it out")
        if not by_column and self.count is None:
            raise ValueError(f"count: partitioner {self.partitioner.type!r} needs a site count")
        return self


class Simulation(SpecModel):
    """Read by the batched engine only: which sites train, how many a round, and where."""

    virtual_sites: VirtualSites | None = Field(
        default=None, description="none: the experiment's own sites, each one stack entry"
    )
    sites_per_round: int | None = Field(
        default=None, ge=1, description="sites sampled each round; default: all"
    )
    sample_fraction: float | None = Field(
        default=None, gt=0, le=1, description="instead of sitesPerRound: this share of the sites"
    )
    device: Literal["cpu", "cuda", "auto"] = Field(
        default="cpu", description="auto: cuda where torch sees a GPU, else cpu"
    )

    @model_validator(mode="after")
    def _one_sampling(self) -> Simulation:
        if self.sites_per_round is not None and self.sample_fraction is not None:
            raise ValueError("give either 'sitesPerRound' or 'sampleFraction', not both")
        count = self.virtual_sites.count if self.virtual_sites else None
        if count is not None and self.sites_per_round is not None and self.sites_per_round > count:
            raise ValueError(
                f"sitesPerRound is {self.sites_per_round} but virtualSites.count is {count}"
            )
        return self

    def per_round(self, sites: int) -> int:
        """Sites sampled each round out of ``sites``."""
        if self.sites_per_round is not None:
            return min(self.sites_per_round, sites)
        if self.sample_fraction is not None:
            return max(1, round(self.sample_fraction * sites))
        return sites
