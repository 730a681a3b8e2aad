"""The Store contract (servicelogs.storage.Store), one suite run unchanged against the local store and S3
(moto in server mode over HTTP; the `store` fixture of conftest.py): what the ledger and the run rely on,
operation by operation."""

from __future__ import annotations

import zlib

import pytest

from servicelogs.storage import StagedFile, Store


def test_put_get_exists_delete(store: Store) -> None:
    assert store.get("a/b.json") is None and not store.exists("a/b.json")
    store.put("a/b.json", b"one")
    assert store.get("a/b.json") == b"one" and store.exists("a/b.json")
    store.put("a/b.json", b"two")  # put replaces
    assert store.get("a/b.json") == b"two"
    store.delete("a/b.json")
    store.delete("a/b.json")  # deleting what is gone is no error
    assert store.get("a/b.json") is None


def test_put_if_absent_creates_once(store: Store) -> None:
    assert store.put_if_absent("log/00001.json", b"first")
    assert not store.put_if_absent("log/00001.json", b"second")
    assert store.get("log/00001.json") == b"first"


def test_list_is_sorted_with_sizes_and_keeps_to_its_prefix(store: Store) -> None:
    for key, data in [("p/b", b"22"), ("p/a", b"1"), ("p/c/d", b"333"), ("pq/x", b"4")]:
        store.put(key, data)
    assert list(store.list("p")) == [("p/a", 1), ("p/b", 2), ("p/c/d", 3)]
    assert list(store.list("p", start_after="p/a")) == [("p/b", 2), ("p/c/d", 3)]
    assert list(store.list("nothing")) == []


def test_delete_prefix_deletes_below_it_only(store: Store) -> None:
    for key in ("s/run/1/x", "s/run/1/y/z", "s/run/2/x", "s/runner/x"):
        store.put(key, b"v")
    store.delete_prefix("s/run/1")
    assert [k for k, _ in store.list("s")] == ["s/run/2/x", "s/runner/x"]


def _staged_batch(store: Store, staging: str) -> list[StagedFile]:
    work = store.work_dir(staging)
    files = []
    for rel, data in [("table/day=01/part-b.parquet", b"rows" * 100), ("rejects/part-b.parquet", b"bad")]:
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_bytes(data)
        files.append(StagedFile(f"{staging}/{rel}", f"t/{rel.split('/', 1)[1]}", len(data), zlib.crc32(data)))
    return store.stage(work, staging, files)


def test_stage_then_publish_each_file_as_written_idempotently(store: Store) -> None:
    files = _staged_batch(store, "_state/staging/run-1/batch-1")
    assert [f.staged for f in files] == [
        "_state/staging/run-1/batch-1/table/day=01/part-b.parquet",
        "_state/staging/run-1/batch-1/rejects/part-b.parquet",
    ]
    assert all(store.is_staged(f) and not store.is_published(f) for f in files)
    assert store.staged_runs("_state/staging") == {"run-1"}
    for f in files:
        store.publish(f)
        store.publish(f)  # a repair after a crash publishes again: no error, no second copy
        assert store.is_published(f)
    assert store.get("t/day=01/part-b.parquet") == b"rows" * 100 and store.get("t/part-b.parquet") == b"bad"
    assert [k for k, _ in store.list("t")] == ["t/day=01/part-b.parquet", "t/part-b.parquet"]


def test_a_staged_file_gone_or_altered_is_not_staged(store: Store) -> None:
    first, second = _staged_batch(store, "_state/staging/run-1/batch-1")
    store.delete(first.staged)
    assert not store.is_staged(first)
    store.put(second.staged, b"other bytes")
    assert not store.is_staged(second)


def test_a_run_is_alive_while_it_holds_its_lease(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICELOGS_LEASE_SECONDS", "600")  # not the proofs' 1 s: a loaded machine outlasts it
    with store.lease("run-1", "_state/runs"):
        assert not store.is_dead("run-1", "_state/runs")
    store.end_lease("run-1", "_state/runs")
    assert store.is_dead("run-1", "_state/runs")
    assert store.is_dead("never-ran", "_state/runs")


def test_cleaning_an_empty_place_finds_nothing(store: Store) -> None:
    assert store.abort_uploads("_state/staging/nobody") == 0
    assert store.clean_temp("_state") == 0
