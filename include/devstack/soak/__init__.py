"""``python -m devstack.soak`` (``make soak``): a seeded chaos soak of the item synchronization on the real stack.

For ``--minutes``, random actions chosen from one seed (printed, so a run can be replayed) hit the real stack that
``make run`` builds (embedded PostgreSQL, the item bank server with its users and hooks wired to the hook receiver,
Airflow's API server, scheduler and DAG processor): ``git push``es by a developer (item.json edits, workflow status
and author changes, malformed JSON later fixed, README-only pushes, bursts), project create, delete, rename,
transfer, archive and unarchive through the item bank's REST routes, the sync user taken out of the group and put
back, GitLab faults, a ``sync`` task process killed with SIGKILL, the scheduler killed and restarted, and every
kind of trigger (``POST /sync``, ``POST /sync/{id}``, ``dagRuns`` full/incremental/``item_ids``, hook events).

Then quiescence (faults off, access restored, no run active and no hook event pending, polled with a deadline), one
incremental run, and a comparison of every ``item``/``item_git`` row with the bank read by plain git from the item
bank server's repositories on disk (:mod:`devstack.soak.oracle` says what is expected, and why). The report gives
the actions by kind, the push-to-row latency, and the differences with each project's action history; the exit
status is non-zero when any count is.

Modules: ``stack`` (building the stack), ``gitclient`` (the developer's git), ``world`` (what the actions share),
``journal`` (what happened), ``git_actions``, ``project_actions``, ``chaos_actions``, ``triggers`` (the actions),
``schedule`` (choosing them), ``latency`` and ``row_history`` (watching ``item_git`` during the soak), ``quiesce``,
``oracle``, ``compare``, ``unseen`` (why a push was never seen in a row), ``report`` and ``cli``.
"""
