"""`carbon-budget init --ci github`: a pull-request workflow for a team's own project.

It runs the pipeline with its gate, posts `carbon-budget report` against the base branch as one comment that each
push updates, and fails the check when the gate failed, after the report is posted. Actions are pinned to commit
hashes, the token is read-only but for the one comment, and nothing from the pull request reaches a shell
unquoted: what GitHub's workflow schema and zizmor ask of a workflow. A workflow already there is the team's and
is never overwritten.
"""

from __future__ import annotations

from pathlib import Path

GITHUB_WORKFLOW = Path(".github/workflows/carbon-budget.yml")
CI_PROVIDERS = ("github",)

_GITHUB = """\
# carbon-budget (`carbon-budget init --ci github`): every pull request shows what it costs in energy and CO2
# against its base branch, as one comment each push updates, and fails when the gate fails (after the comment).
# Install: the step below installs requirements.txt (or the project itself); list carbon-budget there, or set the
# repository variable CARBON_BUDGET_PIP_SPEC to what `pip install` should take for it.
# A team MLflow server: set the MLFLOW_TRACKING_URI secret, and the report's noise band comes from the base
# branch's own executions there.
name: carbon-budget

on:
  pull_request:

permissions: {}

concurrency:
  group: carbon-budget-${{ github.ref }}
  cancel-in-progress: true

jobs:
  carbon-budget:
    runs-on: ubuntu-latest
    timeout-minutes: 60
    permissions:
      contents: read
      pull-requests: write # to create or update the one report comment
    steps:
      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2
        with:
          fetch-depth: 0 # the base branch's committed records are the comparison
          persist-credentials: false

      - uses: actions/setup-python@a26af69be951a213d495a4c3e4e4022e16d87065 # v5.6.0
        with:
          python-version: "3.11"

      - name: Install the project and carbon-budget
        env:
          CARBON_BUDGET_PIP_SPEC: ${{ vars.CARBON_BUDGET_PIP_SPEC }}
        run: |
          python -m pip install --upgrade pip
          if [ -f requirements.txt ]; then python -m pip install -r requirements.txt;
          elif [ -f pyproject.toml ]; then python -m pip install .; fi
          if [ -n "$CARBON_BUDGET_PIP_SPEC" ]; then python -m pip install "$CARBON_BUDGET_PIP_SPEC"; fi
          carbon-budget --version

      - name: Pull data and cached stages from the DVC remote, when one is configured
        run: |
          if [ -n "$(dvc remote list)" ]; then
            dvc pull --allow-missing || echo "::warning::dvc pull failed; stages will run from scratch"
          fi

      - name: Reproduce the pipeline (its gate fails it when over budget)
        id: repro
        continue-on-error: true
        env:
          CARBON_BUDGET_WORKER: "off" # the runner ends with the job: publish in the gate's own process
          MLFLOW_TRACKING_URI: ${{ secrets.MLFLOW_TRACKING_URI }}
        run: dvc repro

      - name: Carbon report against the base branch
        env:
          BASE_REF: ${{ github.base_ref }}
          CARBON_BUDGET_WORKER: "off"
          MLFLOW_TRACKING_URI: ${{ secrets.MLFLOW_TRACKING_URI }}
        run: carbon-budget report --base "origin/${BASE_REF}" --pull-request --output carbon-report.md

      - name: Post or update the report comment
        uses: actions/github-script@60a0d83039c74a4aee543508d2ffcb1c3799cdea # v7.0.1
        with:
          script: |
            const fs = require('fs');
            const body = fs.readFileSync('carbon-report.md', 'utf8');
            const marker = '<!-- carbon-budget-report -->';
            const { owner, repo } = context.repo;
            const issue_number = context.issue.number;
            const comments = await github.paginate(github.rest.issues.listComments, { owner, repo, issue_number });
            const mine = comments.find(c => c.user.type === 'Bot' && c.body.includes(marker));
            if (mine) {
              await github.rest.issues.updateComment({ owner, repo, comment_id: mine.id, body });
            } else {
              await github.rest.issues.createComment({ owner, repo, issue_number, body });
            }

      - name: Fail when the gate failed
        if: steps.repro.outcome == 'failure'
        run: |
          echo "::error::dvc repro failed (over budget, or a stage failed): see the report comment"
          exit 1
"""


def workflow(provider: str) -> tuple[Path, str]:
    """The workflow file `init --ci PROVIDER` writes, and its text."""
    if provider not in CI_PROVIDERS:
        raise ValueError(f"unknown CI provider {provider!r} (one of: {', '.join(CI_PROVIDERS)})")
    return GITHUB_WORKFLOW, _GITHUB
