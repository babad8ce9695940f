"""Outreach: routing leads to scenarios, composing personalised emails with tracking, the send
queue with SMTP providers and limits, and the suppression list."""
