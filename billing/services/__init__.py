"""Billing writes, one module per area: payments, refunds, webhooks."""
