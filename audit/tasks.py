"""The audit trail's periodic jobs (api/jobs.py): sealing and signed checkpoints."""

from __future__ import annotations

from typing import Any

from api.jobs import periodic_job
from audit.chain import audit_checkpoint_create
from audit.chain import audit_seal as chain_seal


@periodic_job("audit_seal")
def audit_seal() -> dict[str, Any]:
    """Link committed, unsealed events into the hash chain (as ``manage.py audit_seal``)."""
    result = chain_seal()
    return {"sealed": result.sealed, "head_seq": result.head.seq}


@periodic_job("audit_checkpoint")
def audit_checkpoint() -> dict[str, Any]:
    """Seal, then sign and store the chain head (as ``manage.py audit_checkpoint``)."""
    return {"seq": audit_checkpoint_create().document.get("seq")}
