"""Typed SQLAlchemy 2 models of leadflow's tables; import this package to register them all."""

from models.analysis import WebsiteAnalysis
from models.api_usage import ApiConfig, ApiReservation, ApiUsage
from models.base import Base
from models.campaigns import Campaign, CampaignLead, Sequence, SequenceStep, Template
from models.emails import Email, EmailLink, SmtpProvider, SmtpSendCount, Suppression
from models.leads import Lead, LeadBatch, LeadSourceRecord, QuarantinedRow
from models.tracking import EmailEvent

__all__ = [
    "ApiConfig",
    "ApiReservation",
    "ApiUsage",
    "Base",
    "Campaign",
    "CampaignLead",
    "Email",
    "EmailEvent",
    "EmailLink",
    "Lead",
    "LeadBatch",
    "LeadSourceRecord",
    "QuarantinedRow",
    "Sequence",
    "SequenceStep",
    "SmtpProvider",
    "SmtpSendCount",
    "Suppression",
    "Template",
    "WebsiteAnalysis",
]
