"""Through a real Prefect server and two process workers: deployments registered with
`prefect deploy --all`, runs triggered through the REST API, run by the workers, and every lead
and email processed exactly once."""

from __future__ import annotations

from sqlalchemy import func, select

from deployments.catalog import JOBS
from deployments.local_cluster import LocalCluster
from models import Lead, LeadBatch, LeadSourceRecord
from models.db import session_scope


def test_every_job_is_deployed_on_the_server(cluster: LocalCluster) -> None:
    assert cluster.deployment_names() == sorted(job.name for job in JOBS)
    outreach = cluster.deployment("daily-outreach", "daily-outreach")
    assert outreach["schedules"][0]["schedule"]["cron"] == "0 * * * *"
    assert outreach["schedules"][0]["schedule"]["timezone"] == "UTC"
    assert outreach["work_pool_name"] == "leadflow-process"


def test_a_triggered_deployment_is_run_by_a_worker(cluster: LocalCluster,
                                                   cluster_db: str) -> None:
    run_id = cluster.trigger("generate-leads/generate-leads", {
        "source": "apollo", "industry": "salon", "location": "Denver, CO", "max_results": 30,
    })
    states = cluster.wait([run_id], timeout=300)
    assert states == {run_id: "COMPLETED"}, cluster.logs()
    with session_scope(cluster_db) as session:
        batch = session.scalars(select(LeadBatch).where(LeadBatch.location == "Denver, CO")).one()
        assert batch.status == "done"
        leads = session.scalar(select(func.count()).select_from(Lead)
                               .where(Lead.batch_id == batch.id))
        records = session.scalar(select(func.count()).select_from(LeadSourceRecord))
    assert leads and leads == batch.leads_generated
    assert records == 30
