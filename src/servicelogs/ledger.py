"""The exactly-once ledger of one table, kept beside it under `<target>/_servicelogs/<table>/`.

It is a commit log in the manner of Delta Lake's: commit N is the object `ledger/commits/<N:020>.json`,
created only if absent (S3 `If-None-Match: *`; locally a hard link, which fails on an existing name).
Exactly one run wins each N, so the log is a total order of batch commits. A commit records, together,
which source objects a batch consumed, identified by (key, size, ETag or version), and which files it
made visible: "done" and "visible" change in that one atomic write.

    ledger/commits/<N>.json       batch id, run id, sources, files, staging prefix
    ledger/checkpoints/<N>.checkpoint  every done source as of commit N (a no-op run reads this + a few commits)
    ledger/intents/<batch>.json    the source set of a batch about to be converted (written before its files)
    staging/<run>/<batch>/...       files of uncommitted batches: outside the table, never seen by a reader
    runs/<run>.json, .lock/.lease   run summaries; liveness of running runs

Files reach the table only after their commit, by rename (local) or copy (S3) to a name derived from the
batch id. A crash between commit and copy is repaired by the next run (`publish_pending`), idempotently:
a staged file is moved again, a file already moved is left alone. A checkpoint at N is written only once
every commit up to N is published, so a run only checks the commits after the latest checkpoint.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from servicelogs.errors import ConflictError, StorageError
from servicelogs.sources import SourceObject
from servicelogs.storage import Store

SEQ_DIGITS = 20
CHECKPOINT_EVERY = 100  # commits; bounds what a run reads beyond the checkpoint


@dataclass(frozen=True)
class Commit:
    seq: int
    batch_id: str
    run_id: str
    token: str
    sources: tuple[SourceObject, ...]
    files: tuple[tuple[str, str], ...]  # (staged key, visible key)
    time: float = 0.0

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "seq": self.seq,
                "batch_id": self.batch_id,
                "run_id": self.run_id,
                "token": self.token,
                "time": self.time,
                "sources": [[o.key, o.size, o.etag] for o in self.sources],
                "files": [list(f) for f in self.files],
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Commit:
        d = json.loads(data)
        return cls(
            d["seq"],
            d["batch_id"],
            d["run_id"],
            d["token"],
            tuple(SourceObject(k, s, e) for k, s, e in d["sources"]),
            tuple((a, b) for a, b in d["files"]),
            d.get("time", 0.0),
        )


@dataclass
class State:
    """What the ledger says, as of commit `head`."""

    head: int = 0
    checkpoint: int = 0
    done: dict[str, tuple[int, str]] = field(default_factory=dict)  # key -> (size, etag) of its last commit
    batches: set[str] = field(default_factory=set)
    recent: list[Commit] = field(default_factory=list)  # commits after the checkpoint

    def is_done(self, obj: SourceObject) -> bool:
        return self.done.get(obj.key) == (obj.size, obj.etag)

    def apply(self, commit: Commit) -> None:
        for obj in commit.sources:
            self.done[obj.key] = (obj.size, obj.etag)
        self.batches.add(commit.batch_id)
        self.head = max(self.head, commit.seq)
        self.recent.append(commit)


class Ledger:
    def __init__(self, store: Store, prefix: str) -> None:
        self.store = store
        self.prefix = prefix.strip("/")

    # -- keys ------------------------------------------------------------------------------------------
    def _commit_key(self, seq: int) -> str:
        return f"{self.prefix}/ledger/commits/{seq:0{SEQ_DIGITS}d}.json"

    def _checkpoint_key(self, seq: int) -> str:
        return f"{self.prefix}/ledger/checkpoints/{seq:0{SEQ_DIGITS}d}.checkpoint"

    def intent_key(self, batch_id: str) -> str:
        return f"{self.prefix}/ledger/intents/{batch_id}.json"

    def staging(self, run_id: str, batch_id: str) -> str:
        return f"{self.prefix}/staging/{run_id}/{batch_id}"

    @property
    def runs(self) -> str:
        return f"{self.prefix}/runs"

    # -- reading ---------------------------------------------------------------------------------------
    def load(self) -> State:
        """The latest checkpoint plus the commits after it."""
        for _ in range(5):  # a checkpoint may vanish under us (pruned by another run): read again
            checkpoints = [k for k, _ in self.store.list(f"{self.prefix}/ledger/checkpoints")]
            state = State()
            if checkpoints:
                latest = max(checkpoints)
                data = self.store.get(latest)
                if data is None:
                    continue
                state = _read_checkpoint(data, _seq_of(latest))
            self.catch_up(state)
            return state
        raise StorageError("read", f"{self.prefix}/ledger/checkpoints", "checkpoints keep vanishing")

    def catch_up(self, state: State) -> None:
        """Apply the commits after `state.head`, in order."""
        start = self._commit_key(state.head) if state.head else ""
        for key, _ in self.store.list(f"{self.prefix}/ledger/commits", start_after=start):
            if not key.endswith(".json"):
                continue
            data = self.store.get(key)
            if data is not None:
                state.apply(Commit.from_json(data))

    def commits(self) -> Iterator[Commit]:
        for key, _ in self.store.list(f"{self.prefix}/ledger/commits"):
            data = self.store.get(key)
            if data is not None:
                yield Commit.from_json(data)

    def intents(self) -> Iterator[tuple[str, tuple[SourceObject, ...]]]:
        for key, _ in self.store.list(f"{self.prefix}/ledger/intents"):
            data = self.store.get(key)
            if data is not None:
                d = json.loads(data)
                yield d["batch_id"], tuple(SourceObject(k, s, e) for k, s, e in d["sources"])

    # -- writing ---------------------------------------------------------------------------------------
    def record_intent(self, batch_id: str, sources: Iterable[SourceObject]) -> None:
        body = {"batch_id": batch_id, "sources": [[o.key, o.size, o.etag] for o in sources]}
        self.store.put(self.intent_key(batch_id), json.dumps(body, separators=(",", ":")).encode())

    def commit(
        self, state: State, batch_id: str, run_id: str, sources: tuple[SourceObject, ...], files: list[tuple[str, str]]
    ) -> Commit:
        """Append a commit after `state.head`; on a lost race, catch up and try the next number.

        Raises ConflictError when a commit that won meanwhile already holds this batch or any of its
        sources: the caller then drops its staged files (they never became visible).
        """
        token = secrets.token_hex(8)
        while True:
            self._check_conflict(state, batch_id, sources)
            commit = Commit(state.head + 1, batch_id, run_id, token, sources, tuple(files), time.time())
            data = commit.to_json()
            if self.store.put_if_absent(self._commit_key(commit.seq), data):
                state.apply(commit)
                return commit
            theirs = self.store.get(self._commit_key(commit.seq))
            if theirs is not None and Commit.from_json(theirs).token == token:
                state.apply(commit)  # our earlier attempt landed; its answer was lost (timeout, reset)
                return commit
            self.catch_up(state)

    def _check_conflict(self, state: State, batch_id: str, sources: tuple[SourceObject, ...]) -> None:
        if batch_id in state.batches:
            raise ConflictError(f"batch {batch_id} was committed by another run")
        taken = [o.key for o in sources if state.is_done(o)]
        if taken:
            raise ConflictError(f"{len(taken)} source(s) of batch {batch_id} committed by another run: {taken[0]}")

    def publish(self, commit: Commit) -> None:
        """Make a committed batch's files visible; idempotent, safe to run from several runs at once."""
        for staged, visible in commit.files:
            if not self.store.publish(staged, visible) and not self.store.exists(visible):
                raise StorageError(
                    "publish",
                    visible,
                    f"committed file is neither staged ({staged}) nor visible: the ledger is damaged",
                )

    def finish(self, commit: Commit) -> None:
        """After publishing: drop the batch's staging and its intent."""
        self.store.delete_prefix(self.staging(commit.run_id, commit.batch_id))
        self.store.delete(self.intent_key(commit.batch_id))

    def publish_pending(self, state: State, published_by: str = "") -> int:
        """Publish the commits after the checkpoint (a crash may have struck between commit and copy),
        but those of run `published_by`, which published its own before it went on."""
        pending = [c for c in state.recent if c.run_id != published_by]
        for commit in pending:
            self.publish(commit)
        return len(pending)

    def checkpoint(self, state: State, run_id: str = "") -> bool:
        """Write a checkpoint at `state.head`, once all commits up to it are published."""
        if state.head <= state.checkpoint:
            return False
        self.publish_pending(state, published_by=run_id)
        written = self.store.put_if_absent(self._checkpoint_key(state.head), _write_checkpoint(state))
        for commit in state.recent:
            if commit.run_id != run_id:
                self.finish(commit)
        state.checkpoint, state.recent = state.head, []
        old = sorted(k for k, _ in self.store.list(f"{self.prefix}/ledger/checkpoints"))[:-3]
        for key in old:
            self.store.delete(key)
        return written


def _seq_of(key: str) -> int:
    return int(key.rsplit("/", 1)[1].split(".", 1)[0])


def _write_checkpoint(state: State) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    keys = sorted(state.done)
    table = pa.table(
        {
            "key": pa.array(keys, pa.string()),
            "size": pa.array([state.done[k][0] for k in keys], pa.int64()),
            "etag": pa.array([state.done[k][1] for k in keys], pa.string()),
        }
    )
    batches = pa.table({"batch_id": pa.array(sorted(state.batches), pa.string())})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    body = sink.getvalue().to_pybytes()
    sink2 = pa.BufferOutputStream()
    pq.write_table(batches, sink2, compression="zstd")
    tail = sink2.getvalue().to_pybytes()
    # Two Parquet files in one object: [len(first) as 12 digits][first][second].
    return f"{len(body):012d}".encode() + body + tail


def _read_checkpoint(data: bytes, seq: int) -> State:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = int(data[:12])
    table = pq.read_table(pa.BufferReader(data[12 : 12 + n]))
    batches = pq.read_table(pa.BufferReader(data[12 + n :]))
    keys, sizes, etags = (table.column(c).to_pylist() for c in ("key", "size", "etag"))
    done = {k: (s, e) for k, s, e in zip(keys, sizes, etags, strict=True)}
    return State(head=seq, checkpoint=seq, done=done, batches=set(batches.column("batch_id").to_pylist()))
