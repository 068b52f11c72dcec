"""Chaos suite: a batch across several worker processes while workers, a broker replica and
Redis are killed and restarted at random; afterwards every job has exactly one result.

The quick profile (240 requests, under a minute) runs with the rest of the tests. The large
one is the same test with more requests, by hand:

    GARAGE_CHAOS_JOBS=5000 .venv/bin/pytest tests/chaos -p no:cacheprovider -s

`GARAGE_CHAOS_SEED` picks the faults' schedule (default 16) and `GARAGE_CHAOS_REPORT`
names a file the run's counts are written to, as JSON; with `-s` they are printed too.

`driver.py` injects the faults, `client.py` is a user riding them out, `checks.py` reads
event streams, counters and logs afterwards; `test_chaos.py` puts them together.
"""
