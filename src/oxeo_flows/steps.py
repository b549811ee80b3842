"""prefect.yaml steps shipped by oxeo-flows.

Reference them by their full name in a deployment's ``pull`` section, for example::

    pull:
      - oxeo_flows.steps.git_clone_ssh:
          repository: git@github.com:oxeo/pipelines.git
          ssh_key_secret: github-deploy-key
      - oxeo_flows.steps.pull_code:
          bucket: my-code-bucket
          folder: pipelines

Each step is loaded on first use, so importing this module is cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from oxeo_flows.git import git_clone_ssh
    from oxeo_flows.storage import pull_code

# step name -> module that defines it
_STEPS: dict[str, str] = {
    "git_clone_ssh": "oxeo_flows.git",
    "pull_code": "oxeo_flows.storage",
}

__all__ = ["git_clone_ssh", "pull_code"]


def __getattr__(name: str) -> Any:
    if name in _STEPS:
        return getattr(importlib.import_module(_STEPS[name]), name)
    msg = f"module 'oxeo_flows.steps' has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_STEPS))
