"""A deliberately non-deterministic variant of ProposalWorkflow, for the replay test.

It lives in its own small module because the workflow sandbox re-imports the module that
defines a workflow.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.proposal import ProposalStart, ProposalState


@workflow.defn(name="ProposalWorkflow")
class ReorderedProposalWorkflow:
    """An extra timer before the first step: what an unpatched change to running logic does."""

    @workflow.run
    async def run(self, start: ProposalStart) -> ProposalState:
        await workflow.sleep(timedelta(seconds=1))
        return ProposalState(proposal_id=start.proposal_id)
