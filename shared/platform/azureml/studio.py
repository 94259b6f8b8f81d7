"""Links into Azure ML studio for a run's job and endpoint, for the status blob.

- a job: ``https://ml.azure.com/runs/<job>?wsid=/subscriptions/<sub>/resourcegroups/<rg>/workspaces/<ws>``, the
  form the service itself returns as the job's ``Studio`` service endpoint (azure-ai-ml's ``Job.studio_url``
  reads it; the SDK's recordings in tests/fixtures/azureml/recordings/pipeline_job_get.json hold it, and its
  fallback ``azure/ai/ml/entities/_job/_studio_url_from_job_id.py`` builds the same from the job's id);
- an online endpoint: ``https://ml.azure.com/endpoints/realtime/<endpoint>/detail?wsid=/subscriptions/<sub>/
  resourceGroups/<rg>/providers/Microsoft.MachineLearningServices/workspaces/<ws>``, the endpoint page as
  Azure/promptflow links it (docs/how-to-guides/develop-a-tool/create-dynamic-list-tool-input.md).
"""

from __future__ import annotations

from urllib.parse import quote

STUDIO = "https://ml.azure.com"


def job_url(job: str, subscription: str, resource_group: str, workspace: str) -> str:
    wsid = f"/subscriptions/{subscription}/resourcegroups/{resource_group}/workspaces/{workspace}"
    return f"{STUDIO}/runs/{quote(job)}?wsid={wsid}"


def endpoint_url(endpoint: str, subscription: str, resource_group: str, workspace: str) -> str:
    wsid = (
        f"/subscriptions/{subscription}/resourceGroups/{resource_group}"
        f"/providers/Microsoft.MachineLearningServices/workspaces/{workspace}"
    )
    return f"{STUDIO}/endpoints/realtime/{quote(endpoint)}/detail?wsid={wsid}"
