"""Typed SQLAlchemy 2 models of leadflow's tables; import this package to register them all."""

from models.analysis import WebsiteAnalysis
from models.api_usage import ApiConfig, ApiUsage
from models.base import Base
from models.leads import Lead, LeadBatch, LeadSourceRecord, QuarantinedRow

__all__ = [
    "ApiConfig",
    "ApiUsage",
    "Base",
    "Lead",
    "LeadBatch",
    "LeadSourceRecord",
    "QuarantinedRow",
    "WebsiteAnalysis",
]
