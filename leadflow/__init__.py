"""leadflow: Prefect-orchestrated B2B lead generation, enrichment, scoring and outreach."""

from leadflow.run_log import route_project_loggers
from leadflow.runtime import apply_runtime_defaults

apply_runtime_defaults()
route_project_loggers()
