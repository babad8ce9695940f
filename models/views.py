"""The analysts' SQL views: what each `v_*` view answers and what its columns mean.

The views themselves are created by migration 0003 (PostgreSQL and SQLite variants of the same
query); this module documents them for docs/warehouse.md, and tests/models/test_views.py checks
that every view listed here exists with exactly these columns, in this order.
"""

from __future__ import annotations

from dataclasses import dataclass

# What every view means by its words (shown above the views in docs/warehouse.md).
DEFINITIONS = (
    "An email is *sent* once handed to an SMTP server or written to the outbox (status `sent`, "
    "or `bounced` when the server refused it); it *bounced* when its status is `bounced` or a "
    "`bounce` event arrived; *delivered* = sent and not bounced. Opens and clicks count emails "
    "with at least one human event (`is_machine` false), never proxy, scanner or repeat "
    "events; an email a human clicked counts as opened too (its images may have been "
    "blocked), as in the figures of `emails`, `leads` and `campaigns`. Days and months are "
    "UTC calendar days and months."
)


@dataclass(frozen=True)
class ViewDoc:
    name: str
    description: str
    columns: tuple[tuple[str, str], ...]  # (column, meaning), in the view's column order


VIEWS: tuple[ViewDoc, ...] = (
    ViewDoc(
        "v_campaign_funnel",
        "The outreach funnel of each campaign, one row per step: every step its emails were "
        "queued as (by the emails' own step numbers, so moving the campaign to another "
        "sequence or editing its steps later does not change what it sent), and the steps of "
        "its current sequence with no email yet (zeros). Rates are fractions (0.25 = 25%), "
        "NULL when nothing was delivered (or sent, for the bounce rate).",
        (
            ("campaign_id", "Campaign id"),
            ("campaign_name", "Campaign name"),
            ("step_number", "Step number of the emails (1 = initial email)"),
            ("step_name", "Name of the step the emails were queued as; for a step with no "
             "email yet, its name in the campaign's sequence"),
            ("sent", "Emails sent: status sent or bounced"),
            ("delivered", "Sent emails that did not bounce"),
            ("human_opens", "Sent emails a human opened or clicked (a click means it was read)"),
            ("human_clicks", "Sent emails with at least one human click"),
            ("replies", "Sent emails that got a reply"),
            ("unsubscribes", "Sent emails whose recipient unsubscribed through them"),
            ("bounces", "Sent emails that bounced (status bounced or a bounce event)"),
            ("open_rate", "human_opens / delivered"),
            ("click_rate", "human_clicks / delivered"),
            ("reply_rate", "replies / delivered"),
            ("unsubscribe_rate", "unsubscribes / delivered"),
            ("bounce_rate", "bounces / sent"),
        ),
    ),
    ViewDoc(
        "v_lead_quality",
        "Lead quality by the source that first found each lead and its tier (tier NULL = not "
        "scored).",
        (
            ("source", "First source of the leads: apollo | google_places | pdl | csv | ..."),
            ("tier", "hot | warm | cold; NULL = not scored"),
            ("leads", "Leads"),
            ("avg_quality_score", "Average quality_score (0-100) of the scored leads"),
            ("with_email", "Leads with an email address"),
            ("with_valid_email", "Leads whose email Hunter verified as valid"),
            ("with_website", "Leads with a website"),
            ("with_booking_tool", "Leads whose website uses an online booking tool"),
        ),
    ),
    ViewDoc(
        "v_source_roi",
        "What each source cost and what it brought (the seed's ROI calculator), all time. "
        "Sources are those with a plan, a metered call or a lead; enrichment (hunter) and AI "
        "(openai) costs appear under their own names, with no leads. Costs in USD; a cost per "
        "X is NULL when X is 0.",
        (
            ("source", "apollo | google_places | pdl | hunter | openai | csv | ..."),
            ("api_cost", "Sum of api_usage.cost, USD"),
            ("leads", "Leads whose first source it is"),
            ("hot_leads", "Of those, leads in tier hot"),
            ("replies", "Of those, leads that replied to any email"),
            ("cost_per_lead", "api_cost / leads, USD"),
            ("cost_per_hot_lead", "api_cost / hot_leads, USD"),
            ("cost_per_reply", "api_cost / replies, USD"),
        ),
    ),
    ViewDoc(
        "v_api_usage_monthly",
        "Metered API usage per source and UTC calendar month, against the plan's monthly limit "
        "(api_configs).",
        (
            ("source", "apollo | google_places | pdl | hunter | openai"),
            ("month", "First day of the UTC month"),
            ("calls", "Calls made"),
            ("units", "Units billed (records or requests, per api_configs.unit)"),
            ("cost", "Cost, USD"),
            ("monthly_limit", "Units allowed per month; NULL = no plan configured"),
            ("limit_used_share", "units / monthly_limit (1.0 = limit reached); NULL without a "
             "limit"),
        ),
    ),
    ViewDoc(
        "v_daily_activity",
        "What happened each UTC day: leads loaded, emails sent and what recipients did. Email "
        "figures count distinct emails (an email opened on two days counts on both); an email "
        "the SMTP server refused (no sent_at) is sent and bounced when it was refused "
        "(emails.failed_at); another bounce is dated by its first bounce event.",
        (
            ("day", "UTC calendar day"),
            ("leads_created", "Leads first loaded that day"),
            ("emails_sent", "Emails sent that day (status sent or bounced)"),
            ("human_opens", "Emails a human opened or clicked that day"),
            ("human_clicks", "Emails clicked by a human that day"),
            ("replies", "Emails replied to that day"),
            ("unsubscribes", "Emails whose recipient unsubscribed that day"),
            ("bounces", "Emails that bounced that day"),
        ),
    ),
    ViewDoc(
        "v_email_engagement",
        "Each email with its human engagement figures and the seed's status (`opened` and "
        "`clicked` are derived from human events, never stored: `emails.status` keeps the "
        "delivery state). The figures are those the tracking app keeps current (a couple of "
        "seconds behind the events; the scheduled refresh repairs them).",
        (
            ("email_id", "Email id"),
            ("campaign_id", "Campaign"),
            ("lead_id", "Lead"),
            ("step_number", "Step of the sequence (1 = initial email)"),
            ("to_email", "Recipient address"),
            ("sent_at", "When the SMTP server (or the outbox) accepted the email (UTC); NULL = "
             "not accepted: not sent yet, failed, in review, or refused by the server "
             "(delivery_status bounced, which counts as sent and bounced)"),
            ("status", "clicked (sent, a human clicked) | opened (sent, a human opened) | else "
             "the delivery status: scheduled | queued | sending | sent | failed | bounced | "
             "cancelled | review"),
            ("delivery_status", "emails.status: the delivery state alone"),
            ("human_opens", "Opens by humans"),
            ("first_opened_at", "First human open (UTC)"),
            ("human_clicks", "Clicks by humans"),
            ("first_clicked_at", "First human click (UTC)"),
            ("machine_events", "Opens and clicks flagged as machine-made (proxies, scanners, "
             "repeats)"),
        ),
    ),
)
