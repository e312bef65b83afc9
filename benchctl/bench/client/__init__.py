"""The benchmark client beside the shell or as Slurm tasks: one load run by several client processes.

``split`` gives each task its share of a load (closed loop: users and requests; open loop: every n-th
arrival of the one seeded schedule), ``task`` is the process each of them runs
(``python -m benchctl.bench.client.task``), ``records`` the per-request records they write, ``merge`` the
run's points from the union of those records (percentiles of the union, never an average of percentiles),
and ``launch`` what the shell does: start the tasks here or as a Slurm job, follow them, merge, finish.
"""
