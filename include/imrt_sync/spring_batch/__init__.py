"""The Spring Batch mirror: every run of the workflow as the legacy ``batch_*`` rows (:mod:`.mirror`)."""

from .mirror import SpringBatchMirror
from .model import (
    FINAL_STATUSES,
    JOB_KEY,
    JOB_NAME,
    STEP_NAME,
    AbandonResult,
    Execution,
    RunAlreadyLinkedError,
    cut_exit_message,
)

__all__ = [
    "FINAL_STATUSES",
    "JOB_KEY",
    "JOB_NAME",
    "STEP_NAME",
    "AbandonResult",
    "Execution",
    "RunAlreadyLinkedError",
    "SpringBatchMirror",
    "cut_exit_message",
]
