"""``python -m devstack.bench``: how fast and how big the item synchronization is, on synthetic item banks (issue 5).

For each bank size, on an embedded PostgreSQL and a generated item bank served by the item bank server, it runs
four cases in two modes and prints the figures next to issue 22 requirement 5's targets (``report.WALL_TARGETS``,
the request budget ceil(N/100) + 10 for nothing changed, 3 GiB, push-to-row p95 10 s), then two more cases:
``--planning-only N`` (:mod:`.planning`: ``open_run`` over a generated bank of N projects, e.g. 100,000, with
nothing changed) and ``--push-latency`` (:mod:`.pushes`: 50 ``git push`` es during a full sync under the scheduler,
push-to-row and each push's hook event). Without either, ``make bench`` runs everything: the four cases at
``--sizes``, the planning case at ``--planning-sizes`` and the push-latency case at ``--push-sizes``.

* cases: (a) the first full sync of an empty ``imrt``; (b) a nightly incremental run after 1% of the items got a
  commit, 0.5% lost their webhook and 0.25% were deleted; (c) a run with nothing changed; (d) ``mode=full`` over the
  synced bank.
* modes: ``dag``, the real DAG under the real scheduler (API server, scheduler, DAG processor; LocalExecutor,
  PostgreSQL metadata), each run triggered through the REST API and timed from the trigger request to the run's
  ``end_date``; ``direct``, the same work in this one process calling ``imrt_sync.pipeline`` (``list_ids``, then
  ``sync_unit`` over the same units with a thread pool as wide as the DAG's parallelism, ``dispatch_webhooks``,
  ``summarize``): the floor that orchestration adds to.

Each mode gets its own copy of the generated bank (served by its own item bank server process), its own fresh
``imrt`` database and git cache; the changes of case (b) are applied identically to both copies (same commits,
same shas), and the result of every case is checked (plan and verdict) and compared, row by row over every item
table (``devstack.imrt_snapshot``), with a reference: one full sync of the same bank state into an empty database.
"same end state: yes" means the runs so far, in that mode with its order, batching and concurrency, wrote exactly
what one full sync writes.

The scheduler runs with ``[scheduler] use_job_schedule = False``: the DAG is unpaused before the first case and no
scheduled (09:00 UTC) run is ever created, so every measured run is one REST-triggered run and nothing else runs
beside it. Generated banks are cached under ``<data-dir>/banks`` (generating 20,000 items takes minutes).

Figures per case: wall time; GitLab requests, REST, GraphQL and git, by endpoint (the server's counters, reset per
case), against ceil(N/100); where the time goes (planning, the sync instances, dispatch_webhooks, summary, the
orchestration overhead); rows written to ``imrt`` (``pg_stat_user_tables`` inserts + updates + deletes); mapped
``sync`` task instances; peak memory (PSS, sampled every 0.5 s) of the Airflow processes and of the whole stack
(Airflow, or this process in direct mode, plus PostgreSQL and the item bank server). The final markdown report is
also written to ``<data-dir>/bench-report.md`` (raw figures: ``bench-results.json``).
"""
