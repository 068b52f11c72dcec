"""Every Redis key and channel garage uses, built in one place under `garage:`.

Lua scripts receive the keys they touch as KEYS where the caller knows them, and the
prefixes below as ARGV where the key depends on a value only the script reads (a job's
model decides its queue). garage runs on one Redis (or a Sentinel-managed primary), not a
cluster, so building keys inside a script is safe.
"""

from __future__ import annotations

from datetime import date

__all__ = [
    "ACTIVE_PREFIX",
    "ALL_JOBS",
    "API_KEY_IDS",
    "API_KEY_PREFIX",
    "BATCHES_TO_FINALIZE",
    "BATCH_CHANNEL_PREFIX",
    "BATCH_PREFIX",
    "CONTRIBUTION_KEYS_PREFIX",
    "CONTRIBUTION_PREFIX",
    "ENDED_CHANNEL",
    "EVENTS_CHANNEL_PREFIX",
    "FAIR_PREFIX",
    "JOB_PREFIX",
    "LEASES",
    "QUEUE_PREFIX",
    "RATE_PREFIX",
    "REVOKED_CHANNEL",
    "START_DEADLINES",
    "STATS",
    "STATS_MODELS",
    "USAGE_OWNERS_PREFIX",
    "USAGE_PREFIX",
    "WAKE_CHANNEL",
    "WORKERS",
    "api_key",
    "api_key_ids",
    "batch",
    "batch_channel",
    "batch_jobs",
    "batch_staged_queue_prefix",
    "batch_staged_queues",
    "batch_staged_start_deadlines",
    "contribution",
    "contribution_keys",
    "events",
    "events_channel",
    "file",
    "file_content",
    "idempotency",
    "job",
    "owner_batches",
    "owner_files",
    "owner_jobs",
    "owner_workers",
    "queue",
    "usage",
    "usage_owners",
    "worker",
]

ROOT = "garage:"
JOB_PREFIX = ROOT + "job:"  # garage:job:{id} -> HASH of the job's fields
EVENTS_SUFFIX = ":events"  # garage:job:{id}:events -> STREAM of the job's events
QUEUE_PREFIX = ROOT + "queue:"  # garage:queue:{model}:{lane} -> ZSET id -> order score
LEASES = ROOT + "leases"  # ZSET running job id -> lease expiry (ms)
START_DEADLINES = ROOT + "start-deadlines"  # ZSET queued job id -> start deadline (ms)
ALL_JOBS = ROOT + "jobs"  # ZSET job id -> created (ms); listing for admins
WORKERS = ROOT + "workers"  # ZSET worker id -> last poll (ms)
STATS = ROOT + "stats"  # HASH of fleet-wide counters and histogram buckets (stats.py)
STATS_MODELS = ROOT + "stats:models"  # SET of the model names that have their own series
ACTIVE_PREFIX = ROOT + "active:"  # garage:active:{owner} -> its jobs queued or running
# garage:fair:owners:{lane} -> HASH owner -> its clock; garage:fair:now:{lane} -> the lane's
FAIR_PREFIX = ROOT + "fair:"
RATE_PREFIX = ROOT + "rate:"  # garage:rate:{owner} -> its submit rate's state (quotas.py)
USAGE_PREFIX = ROOT + "usage:"  # garage:usage:{owner}:{day} -> HASH of one owner's totals
USAGE_OWNERS_PREFIX = ROOT + "usage-owners:"  # garage:usage-owners:{day} -> SET of owners
# garage:contrib:{worker key id}:{day} -> HASH of what the key's workers gave that day
CONTRIBUTION_PREFIX = ROOT + "contrib:"
CONTRIBUTION_KEYS_PREFIX = ROOT + "contrib-keys:"  # garage:contrib-keys:{day} -> SET of key ids
API_KEY_PREFIX = ROOT + "apikey:"  # garage:apikey:{sha256 of the secret} -> HASH of the key
API_KEY_IDS = ROOT + "apikeys"  # HASH key id -> the SHA-256 its record is under
BATCH_PREFIX = ROOT + "batch:"  # garage:batch:{id} -> HASH of the batch and its counts
BATCHES_TO_FINALIZE = ROOT + "batches:finalize"  # ZSET batch id -> when to (re)try (ms)
# PUBLISH "<model> <job id>" when a job becomes claimable, "<model> *<n>" when n jobs do
WAKE_CHANNEL = ROOT + "wake"
ENDED_CHANNEL = ROOT + "ended"  # PUBLISH the job id when a job reaches an end
REVOKED_CHANNEL = ROOT + "revoked"  # PUBLISH a key id when an admin revokes the key
EVENTS_CHANNEL_PREFIX = ROOT + "ev:"  # PUBLISH garage:ev:{id} when a job's stream grows
# PUBLISH garage:batch-ev:{id} when a batch's counts change or it reaches a final status
BATCH_CHANNEL_PREFIX = ROOT + "batch-ev:"


def job(job_id: str) -> str:
    return JOB_PREFIX + job_id


def events(job_id: str) -> str:
    return JOB_PREFIX + job_id + EVENTS_SUFFIX


def events_channel(job_id: str) -> str:
    return EVENTS_CHANNEL_PREFIX + job_id


def queue(model: str, lane: str) -> str:
    return f"{QUEUE_PREFIX}{model}:{lane}"


def owner_jobs(owner: str) -> str:
    """ZSET of one owner's job ids by creation time."""
    return f"{ROOT}owner:{owner}:jobs"


def idempotency(owner: str, key: str) -> str:
    return f"{ROOT}idem:{owner}:{key}"


def api_key(key_hash: str) -> str:
    """HASH describing one API key, found by the SHA-256 of the secret."""
    return API_KEY_PREFIX + key_hash


def api_key_ids() -> str:
    """HASH key id -> key hash, so admins can list and revoke keys by id."""
    return API_KEY_IDS


def worker(worker_id: str) -> str:
    """STRING holding the worker's last poll (JSON), expiring when it goes quiet."""
    return f"{ROOT}worker:{worker_id}"


def batch(batch_id: str) -> str:
    return BATCH_PREFIX + batch_id


def batch_jobs(batch_id: str) -> str:
    """LIST of the batch's job ids, in the order of the input file's lines."""
    return BATCH_PREFIX + batch_id + ":jobs"


def batch_channel(batch_id: str) -> str:
    return BATCH_CHANNEL_PREFIX + batch_id


def batch_staged_queues(batch_id: str) -> str:
    """SET of "<lane>:<model>" for each queue a batch being created has jobs staged for."""
    return f"{ROOT}staging:{batch_id}:queues"


def batch_staged_queue_prefix(batch_id: str) -> str:
    """Prefix of the ZSETs (id -> queue score) of a batch's staged jobs, one per
    "<lane>:<model>" in `batch_staged_queues`."""
    return f"{ROOT}staging:{batch_id}:queue:"


def batch_staged_start_deadlines(batch_id: str) -> str:
    """ZSET staged job id -> start deadline (ms) of a batch being created."""
    return f"{ROOT}staging:{batch_id}:start-deadlines"


def owner_workers(owner: str) -> str:
    """ZSET of the worker ids one worker key polled for, by last poll (ms)."""
    return f"{ROOT}owner:{owner}:workers"


def owner_batches(owner: str) -> str:
    return f"{ROOT}owner:{owner}:batches"


def file(file_id: str) -> str:
    """HASH describing an uploaded or written file."""
    return f"{ROOT}file:{file_id}"


def file_content(file_id: str) -> str:
    return f"{ROOT}file:{file_id}:content"


def owner_files(owner: str) -> str:
    return f"{ROOT}owner:{owner}:files"


def usage(owner: str, day: date) -> str:
    """HASH of one owner's usage on one UTC day: `<counter><SEP><model>` -> count (usage.py).
    lib.lua builds the same name from USAGE_PREFIX."""
    return f"{USAGE_PREFIX}{owner}:{day.isoformat()}"


def usage_owners(day: date) -> str:
    """SET of the owners with usage on one UTC day, so an admin's read finds them all."""
    return f"{USAGE_OWNERS_PREFIX}{day.isoformat()}"


def contribution(key_id: str, day: date) -> str:
    """HASH of what one worker key's workers gave on one UTC day:
    `<counter><SEP><worker id>` -> count, and the key's `name` and `owner` that day
    (contributions.py). lib.lua builds the same name from CONTRIBUTION_PREFIX."""
    return f"{CONTRIBUTION_PREFIX}{key_id}:{day.isoformat()}"


def contribution_keys(day: date) -> str:
    """SET of the worker key ids that earned anything on one UTC day."""
    return f"{CONTRIBUTION_KEYS_PREFIX}{day.isoformat()}"
