"""leadflow: Prefect-orchestrated B2B lead generation, enrichment, scoring and outreach."""

from leadflow.runtime import apply_runtime_defaults

apply_runtime_defaults()
