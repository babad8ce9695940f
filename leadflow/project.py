"""Where the leadflow checkout is: the directory Prefect's entrypoints (`flows/x.py:fn`) and
prefect.yaml are relative to, so that `leadflow deploy` and `leadflow deployments` work from
any directory."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "LEADFLOW_PROJECT_DIR"


class ProjectDirError(RuntimeError):
    """No leadflow checkout where LEADFLOW_PROJECT_DIR or the package's location says."""


def is_checkout(path: Path) -> bool:
    return (path / "flows").is_dir() and (path / "deployments" / "catalog.py").is_file()


def project_dir() -> Path:
    """LEADFLOW_PROJECT_DIR when set (the checkout workers run flows from, docs/deployment.md),
    else the checkout this package was imported from."""
    if value := os.environ.get(ENV_VAR):
        path = Path(value).expanduser().resolve()
        if not is_checkout(path):
            raise ProjectDirError(f"{ENV_VAR}={value} is not a leadflow checkout (no flows/ "
                                  "or deployments/catalog.py there)")
        return path
    path = Path(__file__).resolve().parent.parent
    # Installed from a wheel, the package sits in site-packages next to flows/ and
    # deployments/ (packages too): only a checkout has the project's pyproject.toml.
    if not (is_checkout(path) and (path / "pyproject.toml").is_file()):
        raise ProjectDirError(f"leadflow is installed at {path}, not in a checkout: set "
                              f"{ENV_VAR} to the checkout's directory")
    return path
