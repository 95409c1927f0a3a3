"""The AIGP feature repository: entity, sources, feature views and feature services, top to bottom.

Every view is generated from :mod:`aigp.schema` (one view per :class:`~aigp.schema.Group`, one field per
feature, its Feast type from the schema's dtype), so a feature is named and typed once. The sources are
the parquet tables ``aigp features ingest`` writes; their directory comes from ``AIGP_FEATURE_DATA``
(default: ``feature_repo/data/sources`` next to this file). Paths are made absolute here because the
DuckDB offline store opens a relative FileSource path from the process's working directory, not from
the repository.

``feast apply`` / ``feast materialize`` in this folder read this module (``.feastignore`` hides the rest);
``aigp.feature_repo.store`` builds the same objects for any data directory with :func:`build_definitions`.

Identity-blind: the only entity is the SKU; there is no user-level entity or feature (tested).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Bool, Float32, Int64, String

from aigp.ingest import source_table, table_file
from aigp.schema import (
    DYNAMIC_FEATURES,
    ENTITY_KEY,
    EVENT_TIMESTAMP,
    FEATURES,
    Group,
    features_in,
    numeric_state_features,
)

DEFAULT_FEATURE_DATA = Path(__file__).resolve().parent / "data" / "sources"
FEATURE_DATA_ENV = "AIGP_FEATURE_DATA"

FEAST_TYPES = {"int64": Int64, "float32": Float32, "string": String, "bool": Bool}

# A daily state row is the state at 00:00 UTC of the day priced and serves requests until the next one;
# older than a day, it describes another day and is not served (the training-set join leaves it null).
DAILY_TTL = timedelta(days=1)
# SKU attributes hold for the SKU's life (0 = never expires). Their source restates them on every day the
# SKU is priced (``aigp.ingest.SKU_SNAPSHOTS``), so `feast materialize` of any window loads them for the SKUs
# priced in it, and a training row sees the attributes known at its decision time.
STATIC_TTL = timedelta(0)

# Feature services: who reads which features.
SERVICES: dict[str, tuple[str, list[str]]] = {
    # The value model (LTVE) and numeric baselines: the structured state, no text.
    "ltve_training": ("numeric state features the LTVE critic is trained on", numeric_state_features()),
    # The prompt builder: everything a pricing prompt shows, text included.
    "llm_prompt": ("every feature a pricing prompt renders, text included", list(FEATURES)),
    # Drift and safety monitoring: the day-to-day state, sliced by category.
    "monitoring": ("dynamic features watched for drift, with the category to slice by",
                   ["category", *DYNAMIC_FEATURES]),
}


def feature_data_dir() -> str:
    """Where the source tables are: ``AIGP_FEATURE_DATA`` or the default, absolute (a URI stays as is)."""
    value = os.environ.get(FEATURE_DATA_ENV) or str(DEFAULT_FEATURE_DATA)
    return value if "://" in value else str(Path(value).expanduser().resolve())


@dataclass(frozen=True)
class Definitions:
    entity: Entity
    sources: dict[Group, FileSource]
    views: dict[Group, FeatureView]
    services: dict[str, FeatureService]

    def objects(self) -> list:
        return [self.entity, *self.sources.values(), *self.views.values(), *self.services.values()]

    def view_of(self, feature: str) -> FeatureView:
        return self.views[FEATURES[feature].group]


def build_definitions(feature_data: str) -> Definitions:
    """Entity, sources, views and services over the source tables in ``feature_data``."""
    sku = Entity(name="sku", join_keys=[ENTITY_KEY], value_type=ValueType.INT64,
                 description="a product (SKU); the only entity: pricing is identity-blind")
    sources = {
        group: FileSource(name=f"{group.value}_source", path=_join(feature_data, table_file(source_table(group))),
                          timestamp_field=EVENT_TIMESTAMP,
                          description=f"{group.value} rows written by `aigp features ingest`")
        for group in Group
    }
    views = {
        group: FeatureView(
            name=group.value,
            entities=[sku],
            ttl=STATIC_TTL if group is Group.SKU else DAILY_TTL,
            schema=[Field(name=ENTITY_KEY, dtype=Int64),
                    *(Field(name=f.name, dtype=FEAST_TYPES[f.dtype], description=f.description,
                            tags={"unit": f.unit} if f.unit else {})
                      for f in features_in(group))],
            source=sources[group],
            online=True,
            tags={"group": group.value},
        )
        for group in Group
    }
    services = {}
    for name, (description, features) in SERVICES.items():
        by_view: dict[Group, list[str]] = {}
        for feature in features:
            by_view.setdefault(FEATURES[feature].group, []).append(feature)
        services[name] = FeatureService(
            name=name, description=description,
            features=[views[group][names] for group, names in by_view.items()],
        )
    return Definitions(sku, sources, views, services)


def _join(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}" if "://" in base else str(Path(base) / name)


# --- the objects `feast apply` registers (module-level names are what Feast discovers) -----------------
_repo = build_definitions(feature_data_dir())

sku = _repo.entity

sku_attributes_source = _repo.sources[Group.SKU]
daily_performance_source = _repo.sources[Group.PERFORMANCE]
pricing_history_source = _repo.sources[Group.PRICING]
competitor_stats_source = _repo.sources[Group.COMPETITOR]
calendar_source = _repo.sources[Group.CALENDAR]
text_context_source = _repo.sources[Group.TEXT]

sku_attributes = _repo.views[Group.SKU]
daily_performance = _repo.views[Group.PERFORMANCE]
pricing_history = _repo.views[Group.PRICING]
competitor_stats = _repo.views[Group.COMPETITOR]
calendar = _repo.views[Group.CALENDAR]
text_context = _repo.views[Group.TEXT]

ltve_training = _repo.services["ltve_training"]
llm_prompt = _repo.services["llm_prompt"]
monitoring = _repo.services["monitoring"]
