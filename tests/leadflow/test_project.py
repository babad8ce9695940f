"""Finding the checkout (leadflow/project.py): LEADFLOW_PROJECT_DIR, else the package's
location; a directory that is no checkout is refused with the fix, and `leadflow deploy` says
so before calling Prefect."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from leadflow.project import ProjectDirError, project_dir

ROOT = Path(__file__).resolve().parents[2]


def test_the_checkout_is_found_from_the_package_location(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.delenv("LEADFLOW_PROJECT_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert project_dir() == ROOT


def test_leadflow_project_dir_names_the_checkout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    checkout = tmp_path / "srv" / "leadflow"
    (checkout / "flows").mkdir(parents=True)
    (checkout / "deployments").mkdir()
    (checkout / "deployments" / "catalog.py").write_text("")
    monkeypatch.setenv("LEADFLOW_PROJECT_DIR", str(checkout))
    assert project_dir() == checkout.resolve()


def test_leadflow_project_dir_that_is_no_checkout_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.setenv("LEADFLOW_PROJECT_DIR", str(tmp_path))
    with pytest.raises(ProjectDirError, match="not a leadflow checkout"):
        project_dir()


def test_leadflow_deploy_refuses_a_wrong_project_dir_before_calling_prefect(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "LEADFLOW_PROJECT_DIR": str(tmp_path),
           "PREFECT_API_URL": "http://127.0.0.1:9/api"}  # nothing listens: never reached
    done = subprocess.run([sys.executable, "-m", "leadflow.cli", "deploy"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "is not a leadflow checkout" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_non_editable_install_is_no_checkout(tmp_path: Path) -> None:
    """Installed from a wheel, the packages (flows/ and deployments/catalog.py among them) sit
    in site-packages: that directory is not the checkout, and `leadflow deployments --write`
    says to set LEADFLOW_PROJECT_DIR instead of writing prefect.yaml into site-packages."""
    site = tmp_path / "site-packages"
    # What a wheel of this project installs: setuptools' build_py of its packages.
    built = subprocess.run([sys.executable, "-c", "import setuptools; setuptools.setup()", "-q",
                            "egg_info", "--egg-base", str(tmp_path),
                            "build_py", "--build-lib", str(site)],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    assert (site / "flows").is_dir() and (site / "deployments" / "catalog.py").is_file()
    env = {k: v for k, v in os.environ.items() if k != "LEADFLOW_PROJECT_DIR"}
    env["PYTHONPATH"] = str(site)
    here = tmp_path / "elsewhere"
    here.mkdir()
    done = subprocess.run([sys.executable, "-m", "leadflow.cli", "deployments", "--write"],
                          cwd=here, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "set LEADFLOW_PROJECT_DIR" in done.stderr
    assert not (site / "prefect.yaml").exists()
    assert list(here.iterdir()) == []
    # Printing prefect.yaml needs no checkout.
    printed = subprocess.run([sys.executable, "-m", "leadflow.cli", "deployments"],
                             cwd=here, env=env, capture_output=True, text=True, timeout=120)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.startswith("# Prefect deployments of leadflow")
