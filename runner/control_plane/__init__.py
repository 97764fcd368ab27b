"""The control plane: a ``workflow_job`` webhook becomes one fresh EC2 runner; a reaper cleans up.

Where things live:
    handlers.py     the three Lambda entry points (thin: parse the event, call the logic below)
    webhook.py      signature check, event parsing, pool matching, enqueueing
    pools.py        which runner pool a job's labels select (and why no job can steal another's)
    scale_up.py     one queued job -> one instance with a just-in-time runner
    fleet.py        EC2: counting, launching (CreateFleet, spot fallback), tagging, terminating
    github.py       GitHub REST client: App JWT or token auth, rate limits, JIT config, runners
    reaper.py       terminates stuck or expired instances, deletes orphan runners and parameters
    config.py       every setting, read from the environment the stack gives each Lambda
    admission.py    who may get a runner: owner, repository allow-list, forks, events, branches
    metrics.py      counters as CloudWatch embedded metric format lines
    bootstrap/      the runner instance's user data (rendered by the stack)
The fake GitHub and the offline harness live in simulator/, outside what ships.
"""
