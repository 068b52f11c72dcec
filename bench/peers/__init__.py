"""The peers garage is measured against in one run (`bench/peers_run.py`): one module per
peer, each with the same small interface (`base.Peer`, `base.Session`): start two workers
on a Redis database of its own, one job submitted and waited for, N jobs queued and then
drained, and the jobs the kill scenario needs.

A peer's module is also what its workers import (the Celery app, the RQ and arq job
functions, the dramatiq actors), so it imports nothing heavy at the top and reads its
Redis URL and settings from the environment the runner starts its workers with.

Importing this package imports no peer: `peers_run.py` picks them.
"""
