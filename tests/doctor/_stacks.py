"""Stacks and helpers for doctor tests: a clean stack (edit it line by line) and check lookup."""

from __future__ import annotations

from typing import Any

from oxeo_flows.doctor import DoctorReport

BUCKET = "oxeo-doctor-code"


def clean_stack(endpoint: str, moto: str, **edits: str) -> str:
    """A stack with nothing wrong; ``edits`` replace whole lines by their key (TOML text)."""
    lines = {
        "runner": 'runner = "vertex"',
        "network": 'network = "dask"',
        "project-number": 'project-number = "123456789012"',
        "reserved": 'reserved-ip-ranges = ["vertex-peering"]',
        "service-account": 'service-account = "prefect@oxeo-main.iam.gserviceaccount.com"',
        "tls": "",
        "public-ip": "",
        "docker-image": 'docker-image = "europe-west4-docker.pkg.dev/oxeo-main/dask/dask:2026.8.0"',
        "dask-gcp": "",
        "start-timeout": "start-timeout = 300",
        "bucket": f'bucket = "{BUCKET}"',
        "required": 'required = ["sat-extractor-sa"]',
        "endpoints": f'compute = "{endpoint}"\nservice-networking = "{endpoint}"',
    }
    lines.update(edits)
    return f"""
[tool.oxeo-flows]
default-stack = "prod"

[tool.oxeo-flows.stacks.prod]
{lines["runner"]}

[tool.oxeo-flows.stacks.prod.gcp]
project = "oxeo-main"
{lines["project-number"]}
region = "europe-west4"
{lines["network"]}
subnetwork = "dask-europe-west4"
{lines["reserved"]}
{lines["service-account"]}

[tool.oxeo-flows.stacks.prod.gcp.endpoints]
{lines["endpoints"]}

[tool.oxeo-flows.stacks.prod.vertex]
image = "europe-docker.pkg.dev/oxeo-main/flows/extract:1"

[tool.oxeo-flows.stacks.prod.dask]
backend = "gcp"
{lines["start-timeout"]}
{lines["tls"]}

[tool.oxeo-flows.stacks.prod.dask.gcp]
{lines["public-ip"]}
{lines["docker-image"]}
{lines["dask-gcp"]}

[tool.oxeo-flows.stacks.prod.aws]
region = "eu-west-1"
endpoint-url = "{moto}"

[tool.oxeo-flows.stacks.prod.storage]
{lines["bucket"]}
folder = "pipelines"

[tool.oxeo-flows.stacks.prod.secrets]
sources = ["env"]
{lines["required"]}
"""


def status_of(report: DoctorReport) -> dict[tuple[str, str], str]:
    return {(c.group, c.name): c.status for c in report.checks}


def one(report: DoctorReport, group: str, name: str) -> Any:
    found = report.find(group, name)
    assert found, f"no check {group}/{name} in {status_of(report)}"
    return found[0]
