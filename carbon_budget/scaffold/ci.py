"""`carbon-budget init --ci github`: a pull-request workflow for a team's own project; `--ci github-nightly`: the
same, and a scheduled training run that starts at the grid's cleanest hour.

The pull-request workflow runs the pipeline with its gate, posts `carbon-budget report` against the base branch as
one comment that each push updates, and fails the check when the gate failed, after the report is posted. The
nightly one waits (`carbon-budget wait`, bounded by a maximum wait) for the cleanest start the forecast offers, then
runs `dvc repro`. Actions are pinned to commit hashes, tokens are read-only but for the one comment, and nothing a
user controls reaches a shell but through the environment, quoted: what GitHub's workflow schema and zizmor ask of
a workflow. A workflow already there is the team's and is never overwritten.
"""

from __future__ import annotations

from pathlib import Path

GITHUB_WORKFLOW = Path(".github/workflows/carbon-budget.yml")
GITHUB_NIGHTLY_WORKFLOW = Path(".github/workflows/carbon-budget-nightly.yml")
CI_PROVIDERS = ("github", "github-nightly")

# The steps both workflows start with after the checkout: Python, the project and the plugin, the DVC remote's data.
_SETUP_STEPS = """\
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
"""

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

@@SETUP@@
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


_GITHUB_NIGHTLY = """\
# carbon-budget (`carbon-budget init --ci github-nightly`): train every night, starting at the cleanest hour the
# grid's forecast offers within a maximum wait, so the same run emits less CO2 (with an average-intensity forecast;
# what a marginal one says is docs' "Run when the grid is clean"). Set, in the repository's variables:
#   CARBON_BUDGET_FORECAST  the forecast: electricitymaps:ZONE, watttime:REGION, ukgrid, carbon-aware-sdk:LOCATION,
#                           or a forecast file in the repository; unset, the pipeline runs at once
#   CARBON_BUDGET_DURATION  how long `dvc repro` runs (default 1h)
#   CARBON_BUDGET_MAX_WAIT  the longest wait for a cleaner start (default 4h): a job on a GitHub-hosted runner ends
#                           after 6 hours, and the wait and the run must both fit in it
#   CARBON_AWARE_SDK_URL    the carbon-aware-sdk WebAPI's address, for carbon-aware-sdk:LOCATION
# and in its secrets the provider's key: ELECTRICITYMAPS_API_TOKEN, or WATTTIME_USERNAME and WATTTIME_PASSWORD.
# A provider that is down or refuses the key never fails the run: it starts at once, and the log says why.
name: carbon-budget-nightly

on:
  schedule:
    - cron: "17 22 * * *" # 22:17 UTC; `carbon-budget wait` picks the cleanest start in the hours after
  workflow_dispatch:

permissions: {}

concurrency:
  group: carbon-budget-nightly
  cancel-in-progress: false

jobs:
  nightly:
    runs-on: ubuntu-latest
    timeout-minutes: 360
    permissions:
      contents: read
    steps:
      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2
        with:
          persist-credentials: false

@@SETUP@@
      - name: Wait for the cleanest start, then reproduce the pipeline (its gate fails it when over budget)
        env:
          CARBON_BUDGET_FORECAST: ${{ vars.CARBON_BUDGET_FORECAST }}
          CARBON_BUDGET_DURATION: ${{ vars.CARBON_BUDGET_DURATION || '1h' }}
          CARBON_BUDGET_MAX_WAIT: ${{ vars.CARBON_BUDGET_MAX_WAIT || '4h' }}
          CARBON_AWARE_SDK_URL: ${{ vars.CARBON_AWARE_SDK_URL }}
          ELECTRICITYMAPS_API_TOKEN: ${{ secrets.ELECTRICITYMAPS_API_TOKEN }}
          WATTTIME_USERNAME: ${{ secrets.WATTTIME_USERNAME }}
          WATTTIME_PASSWORD: ${{ secrets.WATTTIME_PASSWORD }}
          CARBON_BUDGET_WORKER: "off" # the runner ends with the job: publish in the gate's own process
          MLFLOW_TRACKING_URI: ${{ secrets.MLFLOW_TRACKING_URI }}
        run: |
          if [ -z "$CARBON_BUDGET_FORECAST" ]; then
            echo "::warning::no repository variable CARBON_BUDGET_FORECAST: running now, unshifted"
            dvc repro
          else
            carbon-budget wait --forecast "$CARBON_BUDGET_FORECAST" --duration "$CARBON_BUDGET_DURATION" \\
              --max-wait "$CARBON_BUDGET_MAX_WAIT" -- dvc repro
          fi

      - name: Keep the records and what the wait predicted and realised
        if: always()
        uses: actions/upload-artifact@ea165f8d65b6e75b540449e92b4886f43607fa02 # v4.6.2
        with:
          name: carbon-budget-nightly
          path: |
            metrics/
            .carbon-budget/carbon-aware.json
          include-hidden-files: true
          if-no-files-found: ignore
"""


def workflows(provider: str) -> list[tuple[Path, str]]:
    """The workflow files `init --ci PROVIDER` writes, each with its text."""
    if provider not in CI_PROVIDERS:
        raise ValueError(f"unknown CI provider {provider!r} (one of: {', '.join(CI_PROVIDERS)})")
    nightly = [(GITHUB_NIGHTLY_WORKFLOW, _GITHUB_NIGHTLY)] if provider == "github-nightly" else []
    return [(path, text.replace("@@SETUP@@", _SETUP_STEPS)) for path, text in [(GITHUB_WORKFLOW, _GITHUB), *nightly]]
