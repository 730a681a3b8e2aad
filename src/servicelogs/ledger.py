"""The exactly-once ledger of one table, kept beside it under `<target>/_servicelogs/<table>/`.

It is a commit log in the manner of Delta Lake's: record N is the object `ledger/commits/<N:020>.json`,
created only if absent (S3 `If-None-Match: *`; locally a hard link, which fails on an existing name).
Exactly one run wins each N, and a run creates N only after reading N-1, so the log is dense and totally
ordered. A record is either a batch commit or a fence. A commit records, together, which source objects a
batch consumed, identified by (key, size, ETag or version), and which files it made visible, each with its
size and checksum as written: "done" and "visible" change in that one atomic write.

A fence says "run R is taken for dead". A run writes one before it deletes anything of another run (its
staging, its uploads); a run refuses to commit once a fence of its own sits in the log below the position
it would take. Since each position is created once and only after all those below it were read, the order
of the log, not any clock, decides: a commit of R placed before R's fence stands (and the fencing run
publishes it before cleaning), one after it is never made. Leases and locks only decide *when* to fence.

    ledger/commits/<N>.json       a commit (batch id, run id, sources, files) or a fence (the run fenced)
    ledger/checkpoints/<N>.checkpoint  done sources, batch ids and fenced runs as of record N
    ledger/intents/<batch>.json    the source set of a batch about to be converted (written before its files)
    staging/<run>/<batch>/...       files of uncommitted batches: outside the table, never seen by a reader
    runs/<run>.json, .lock/.lease   run summaries; liveness of running runs

Files reach the table only after their commit, by rename (local) or copy (S3) to a name derived from the
batch id, each checked against the size (and on S3 the ETag) the commit names. A crash between commit and
copy is repaired by the next run (`publish_pending`), idempotently: a staged file is moved again, a file
already moved is left alone. A checkpoint at N is written only once every commit up to N is published, so
a run only checks the commits after the latest checkpoint.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from servicelogs.errors import ConflictError, FencedError, StorageError
from servicelogs.sources import SourceObject
from servicelogs.storage import StagedFile, Store, each

SEQ_DIGITS = 20
CHECKPOINT_EVERY = 100  # commits; bounds what a run reads beyond the checkpoint


@dataclass(frozen=True)
class Commit:
    seq: int
    batch_id: str
    run_id: str
    token: str
    sources: tuple[SourceObject, ...]
    files: tuple[StagedFile, ...]
    time: float = 0.0
    latest_day: str = ""  # the latest delivery day (ISO) among the sources whose key names one

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "kind": "commit",
                "seq": self.seq,
                "batch_id": self.batch_id,
                "run_id": self.run_id,
                "token": self.token,
                "time": self.time,
                "sources": [[o.key, o.size, o.etag] for o in self.sources],
                "files": [f.to_json() for f in self.files],
                "latest_day": self.latest_day,
            },
            separators=(",", ":"),
        ).encode()


@dataclass(frozen=True)
class Fence:
    """Run `fenced` is taken for dead by run `run_id`: from this position on it can commit nothing."""

    seq: int
    run_id: str
    fenced: str
    token: str
    time: float = 0.0

    def to_json(self) -> bytes:
        body = {"kind": "fence", "seq": self.seq, "run_id": self.run_id, "fenced": self.fenced, "token": self.token}
        return json.dumps({**body, "time": self.time}, separators=(",", ":")).encode()


Record = Commit | Fence


def parse_record(data: bytes, seq: int, name: str) -> Record:
    """A record of the log at position `seq`; one that does not parse (left by an older version that could
    publish a partial write) is named, never taken for something else."""
    try:
        d = json.loads(data)
        if d.get("kind") == "fence":
            return Fence(seq, d["run_id"], d["fenced"], d["token"], d.get("time", 0.0))
        return Commit(
            seq,
            d["batch_id"],
            d["run_id"],
            d["token"],
            tuple(SourceObject(k, s, e) for k, s, e in d["sources"]),
            tuple(StagedFile.from_json(f) for f in d["files"]),
            d.get("time", 0.0),
            str(d.get("latest_day") or ""),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise StorageError("read", name, f"ledger record does not parse ({e}): the ledger is damaged") from e


@dataclass
class State:
    """What the ledger says, as of record `head`."""

    head: int = 0
    checkpoint: int = 0
    done: dict[str, tuple[int, str]] = field(default_factory=dict)  # key -> (size, etag) of its last commit
    batches: set[str] = field(default_factory=set)
    recent: list[Commit] = field(default_factory=list)  # commits after the checkpoint
    fenced: dict[str, tuple[int, str]] = field(default_factory=dict)  # run -> (position, run) of its first fence
    latest_day: str = ""
    """The high-water mark of the listing window (servicelogs.listing): the latest delivery day (ISO) of the
    committed sources, "" before any commit names one (a ledger of an older version: its next commit does)."""

    def is_done(self, obj: SourceObject) -> bool:
        return self.done.get(obj.key) == (obj.size, obj.etag)

    def refuse_if_fenced(self, run_id: str) -> None:
        if run_id in self.fenced:
            seq, by = self.fenced[run_id]
            raise FencedError(run_id, by, seq)

    def apply(self, record: Record) -> None:
        self.head = max(self.head, record.seq)
        if isinstance(record, Fence):
            self.fenced.setdefault(record.fenced, (record.seq, record.run_id))
            return
        for obj in record.sources:
            self.done[obj.key] = (obj.size, obj.etag)
        self.batches.add(record.batch_id)
        self.recent.append(record)
        self.latest_day = max(self.latest_day, record.latest_day)


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

    @property
    def staging_root(self) -> str:
        return f"{self.prefix}/staging"

    def staging(self, run_id: str, batch_id: str = "") -> str:
        """A batch's staging folder; without a batch, the run's."""
        run = f"{self.staging_root}/{run_id}"
        return f"{run}/{batch_id}" if batch_id else run

    def staged_run(self, key: str) -> str:
        """The run a staged key belongs to."""
        return key[len(self.staging_root) + 1 :].split("/", 1)[0]

    @property
    def runs(self) -> str:
        return f"{self.prefix}/runs"

    def _name(self, key: str) -> str:
        return f"{self.store.url}/{key}"

    # -- reading ---------------------------------------------------------------------------------------
    def load(self) -> State:
        """The latest checkpoint plus the records after it."""
        for _ in range(5):  # a checkpoint may vanish under us (pruned by another run): read again
            checkpoints = [k for k, _ in self.store.list(f"{self.prefix}/ledger/checkpoints")]
            state = State()
            if checkpoints:
                latest = max(checkpoints)
                data = self.store.get(latest)
                if data is None:
                    continue
                state = _read_checkpoint(data, _seq_of(latest), self._name(latest))
            self.catch_up(state)
            return state
        raise StorageError("read", f"{self.prefix}/ledger/checkpoints", "checkpoints keep vanishing")

    def read(self, seq: int) -> Record | None:
        key = self._commit_key(seq)
        data = self.store.get(key)
        return None if data is None else parse_record(data, seq, self._name(key))

    def catch_up(self, state: State) -> None:
        """Apply the records after `state.head`, one position after the other up to the first free one: the
        log is dense, so this reads every record below the position a run then writes (a listing could
        miss one created while it ran)."""
        while (record := self.read(state.head + 1)) is not None:
            state.apply(record)

    def commits(self) -> Iterator[Commit]:
        for key, _ in self.store.list(f"{self.prefix}/ledger/commits"):
            data = self.store.get(key) if key.endswith(".json") else None
            if data is not None:
                record = parse_record(data, _seq_of(key), self._name(key))
                if isinstance(record, Commit):
                    yield record

    def intents(self) -> Iterator[tuple[str, tuple[SourceObject, ...]]]:
        for key, _ in self.store.list(f"{self.prefix}/ledger/intents"):
            data = self.store.get(key)
            if data is None:
                continue
            try:
                d = json.loads(data)
                intent = d["batch_id"], tuple(SourceObject(k, s, e) for k, s, e in d["sources"])
            except (ValueError, KeyError, TypeError):
                # Intents only steer a redo: one that does not parse is dropped, not worth failing a run for.
                self.store.delete(key)
                continue
            yield intent

    # -- writing ---------------------------------------------------------------------------------------
    def drop_intent(self, batch_id: str) -> None:
        """Intents only steer a redo: dropping one is always safe."""
        self.store.delete(self.intent_key(batch_id))

    def record_intent(self, batch_id: str, sources: Iterable[SourceObject]) -> None:
        body = {"batch_id": batch_id, "sources": [[o.key, o.size, o.etag] for o in sources]}
        self.store.put(self.intent_key(batch_id), json.dumps(body, separators=(",", ":")).encode())

    def commit(
        self,
        state: State,
        batch_id: str,
        run_id: str,
        sources: tuple[SourceObject, ...],
        files: list[StagedFile],
        latest_day: str = "",
    ) -> Commit:
        """Append a commit after `state.head`; on a lost race, catch up and try the next position.
        `latest_day`: the latest delivery day among `sources` (the listing window's high-water mark).

        Raises FencedError when a fence of `run_id` is in the log before that position (another run took
        this one for dead and may have deleted its staging), and ConflictError when a commit that won
        meanwhile already holds this batch or any of its sources: the caller then drops its staged files
        (they never became visible).
        """
        token = secrets.token_hex(8)
        while True:
            state.refuse_if_fenced(run_id)
            self._check_conflict(state, batch_id, sources)
            commit = Commit(state.head + 1, batch_id, run_id, token, sources, tuple(files), time.time(), latest_day)
            if self._put(state, commit):
                return commit

    def fence(self, state: State, run_id: str, by: str) -> bool:
        """Declare run `run_id` dead: append a fence, unless the log already holds one. Once this returns,
        that run can commit nothing more, and every commit it made is in `state` (below the fence)."""
        token = secrets.token_hex(8)
        while run_id not in state.fenced:
            if self._put(state, Fence(state.head + 1, by, run_id, token, time.time())):
                return True
        return False

    def _put(self, state: State, record: Record) -> bool:
        """Create `record` at its position (state.head + 1), or catch up when another run took it."""
        key = self._commit_key(record.seq)
        if self.store.put_if_absent(key, record.to_json()):
            state.apply(record)
            return True
        theirs = self.read(record.seq)
        if theirs is not None and theirs.token == record.token:
            state.apply(record)  # our earlier attempt landed; its answer was lost (timeout, reset)
            return True
        self.catch_up(state)
        return False

    def _check_conflict(self, state: State, batch_id: str, sources: tuple[SourceObject, ...]) -> None:
        if batch_id in state.batches:
            raise ConflictError(f"batch {batch_id} was committed by another run")
        taken = [o.key for o in sources if state.is_done(o)]
        if taken:
            raise ConflictError(f"{len(taken)} source(s) of batch {batch_id} committed by another run: {taken[0]}")

    def publish(self, commit: Commit) -> None:
        """Make a committed batch's files visible, each as committed; idempotent, safe to run from several
        runs at once. A file neither staged nor visible as committed is damage, named."""
        each(self.store, self._publish_file, commit.files)

    def _publish_file(self, file: StagedFile) -> None:
        self.store.publish(file)
        if not self.store.is_published(file):
            raise StorageError(
                "publish",
                self._name(file.visible),
                f"committed file ({file.size} bytes) is neither staged ({file.staged}) nor visible: "
                "the ledger is damaged",
            )

    def finish(self, commit: Commit) -> None:
        """After publishing: drop the batch's staging and its intent."""
        self.store.delete_prefix(self.staging(commit.run_id, commit.batch_id))
        self.drop_intent(commit.batch_id)

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


def attempt_staging(staging: str, attempt: int) -> str:
    """Where attempt n of a batch stages: the first in the batch's folder, a retry (Spark) beside it, so that
    no attempt deletes another's files."""
    return f"{staging}.{attempt}" if attempt else staging


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
    # Fenced runs and the latest delivery day ride in the batch table's metadata: a checkpoint without them
    # (older) fenced none and names no day.
    fenced = json.dumps({run: list(at) for run, at in state.fenced.items()})
    batches = pa.table({"batch_id": pa.array(sorted(state.batches), pa.string())}).replace_schema_metadata(
        {"servicelogs.fenced": fenced, "servicelogs.latest_day": state.latest_day}
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    body = sink.getvalue().to_pybytes()
    sink2 = pa.BufferOutputStream()
    pq.write_table(batches, sink2, compression="zstd")
    tail = sink2.getvalue().to_pybytes()
    # Two Parquet files in one object: [len(first) as 12 digits][first][second].
    return f"{len(body):012d}".encode() + body + tail


def _read_checkpoint(data: bytes, seq: int, name: str) -> State:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        n = int(data[:12])
        # ParquetFile, not read_table: read_table loads pyarrow.dataset (~0.1 CPU-s a run) for one buffer.
        table = pq.ParquetFile(pa.BufferReader(data[12 : 12 + n])).read()
        batches = pq.ParquetFile(pa.BufferReader(data[12 + n :])).read()
        metadata = batches.schema.metadata or {}
        fenced = json.loads(metadata.get(b"servicelogs.fenced", b"{}"))
        latest_day = metadata.get(b"servicelogs.latest_day", b"").decode()
    except (ValueError, OSError, pa.ArrowException) as e:
        raise StorageError("read", name, f"checkpoint does not parse ({e}): the ledger is damaged") from e
    keys, sizes, etags = (table.column(c).to_pylist() for c in ("key", "size", "etag"))
    done = {k: (s, e) for k, s, e in zip(keys, sizes, etags, strict=True)}
    return State(
        head=seq,
        checkpoint=seq,
        done=done,
        batches=set(batches.column("batch_id").to_pylist()),
        fenced={run: (at[0], at[1]) for run, at in fenced.items()},
        latest_day=latest_day,
    )
