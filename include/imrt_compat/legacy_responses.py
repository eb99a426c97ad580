"""The legacy job API's wire format: the bodies and status codes of ``POST /sync`` and ``PUT /abandon/{jobInstanceId}``
as the Item Ingest Service answered them from tag 0.1.61 (SmarterApp/AP_IMRT_ItemIngestService at tag 0.1.61, under
``src/main/java/org/opentestsystem/ap/imrt/iis/``: ``controller/ItemIngestJobController.java``,
``model/JobExecutionResponse.java``, ``controller/GlobalExceptionHandler.java`` for the 409 and
``service/impl/SpringBatchJobManagementServiceImpl.java`` for ``/abandon``), and the body of
``GET /sync/{jobExecutionId}``, which this service adds (docs/legacy-api.md)."""

from __future__ import annotations

from datetime import datetime

from imrt_sync.spring_batch import JOB_NAME, AbandonResult, Execution
from imrt_sync.spring_batch.model import naive_utc


def started_response(execution: Execution) -> dict:
    """The 200 body of ``POST /sync`` (tag 0.1.61+, keys in the legacy order)."""
    return {
        "jobExecutionId": execution.job_execution_id,
        "jobInstanceId": execution.job_instance_id,
        "name": JOB_NAME,
        "status": "STARTING",
        "message": f"Started {JOB_NAME} successfully",
    }


def already_running_message(job_instance_id: int) -> str:
    """The text/plain 409 body of ``POST /sync`` (two spaces before "To abandon")."""
    return (
        f"A job execution for this job is already running: JobInstance: id={job_instance_id}, version=0, "
        f"Job=[{JOB_NAME}].  To abandon the running execution of this job, make a PUT call to /abandon, "
        "passing in the job instance id"
    )


def execution_view(execution: Execution) -> dict:
    """The JSON of ``GET /sync/{jobExecutionId}``: the row, times in ISO 8601 UTC with ``Z`` (or null)."""
    return {
        "jobExecutionId": execution.job_execution_id,
        "jobInstanceId": execution.job_instance_id,
        "name": JOB_NAME,
        "status": execution.status,
        "exitCode": execution.exit_code,
        "exitMessage": execution.exit_message,
        "createTime": _iso(execution.create_time),
        "startTime": _iso(execution.start_time),
        "endTime": _iso(execution.end_time),
        "lastUpdated": _iso(execution.last_updated),
        "airflowRunId": execution.run_id,
    }


def abandon_response(result: AbandonResult) -> tuple[int, dict | str]:
    """The status and body of ``PUT /abandon/{jobInstanceId}``: 404 with a text body when the job instance does not
    exist, else 200 with JSON naming the newest execution abandoned (or none)."""
    instance_id, job_name = result.job_instance_id, result.job_name
    if result.kind == "not_found":
        return 404, f"Could not find job instance for instance id {instance_id}"
    if result.kind == "none":
        return 200, {
            "jobExecutionId": 0,
            "jobInstanceId": instance_id,
            "name": job_name,
            "status": "NO JOB EXECUTIONS",
            "message": f"No job executions are currently running for the {job_name} (job instance id {instance_id})",
        }
    newest = result.job_execution_ids[-1]
    return 200, {
        "jobExecutionId": newest,
        "jobInstanceId": instance_id,
        "name": job_name,
        "status": "ABANDONED",
        "message": f"Job Execution {newest} for Job {job_name} abandoned successfully",
    }


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return naive_utc(value).isoformat(timespec="milliseconds") + "Z"
