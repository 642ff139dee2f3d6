"""The experiment directory and its formats (``journal``): the typed Job and EvaluationRecord, written
byte for byte as before; the lock; integrity: checksummed records; torn, garbage and altered lines
are reported with their line number, quarantined (never silently skipped or left in place) and their
evaluations run again, so a finished run never reports "complete" with fewer records than its
generations need; one-shot evaluation files."""

from __future__ import annotations

import json
import threading

import pytest

from taylorglo.search.__main__ import main
from taylorglo.search.analysis import experiment_status
from taylorglo.search.baselines import run_baselines
from taylorglo.search.config import ExperimentConfig
from taylorglo.search.journal import (
    MEASURED,
    CorruptLine,
    EvaluationRecord,
    ExperimentDir,
    ExperimentLocked,
    Job,
    decode_line,
    encode_line,
    read_evaluation_file,
)
from taylorglo.search.runner import _record, make_job, run_search

from .conftest import journal_without_timing, synthetic_config

POP, GENS = 4, 3
RECORDS = POP * GENS

# Written by the runner before Job and EvaluationRecord existed (commit ef6265f), for the candidate,
# result and clock below: the journal format must stay byte for byte the same.
GOLDEN_LINES = [
    b'{"attempts": 2, "crc32": "49557162", "error": null, "finished_at": 1796000000.5, "fitness": 0.125, '
    b'"generation": 3, "index": 2, "lr": 0.125, "replica": 1, "seed": 12, "status": "ok", "steps": 40, '
    b'"test_accuracy": null, "train_time": 1.0, "val_accuracy": 0.875, "val_loss": null, '
    b'"vector": [0.5, -1.0, 0.25, 0.0, 1.5, 0.0, 0.5, 0.5], "violates_invariant": false, "wall_time": 1.25, '
    b'"worker": "host:1"}\n',
    b'{"attempts": 1, "crc32": "2e7c6f2f", "error": "nan loss", "finished_at": 1796000000.5, "fitness": 1.0, '
    b'"generation": 3, "index": 2, "lr": 0.125, "replica": 0, "seed": 11, "status": "diverged", '
    b'"steps": null, "test_accuracy": null, "train_time": null, "val_accuracy": null, "val_loss": null, '
    b'"vector": [0.5, -1.0, 0.25, 0.0, 1.5, 0.0, 0.5, 0.5], "violates_invariant": false, "wall_time": null, '
    b'"worker": null}\n',
]
GOLDEN_JOB = {
    "attempt": 1,
    "evaluate_test": False,
    "evaluator": "taylorglo.search.synthetic:evaluate",
    "generation": 3,
    "index": 2,
    "loss": None,
    "options": {},
    "order": 3,
    "replica": 1,
    "seed": 12,
    "task": {"dataset": "digits", "lr": 0.125},
    "variables": ["x", "y"],
    "vector": [0.5, -1.0, 0.25, 0.0, 1.5, 0.0, 0.5, 0.5],
}


def _golden_config() -> ExperimentConfig:
    return ExperimentConfig.from_dict(
        {
            "task": {"dataset": "digits"},
            "search": {"order": 3, "population_size": 6, "penalty": 1.0},
            "execution": {"backend": "inline", "evaluator": "taylorglo.search.synthetic:evaluate"},
        },
        validate_task=False,
    )


_CAND = {
    "index": 2,
    "vector": [0.5, -1.0, 0.25, 0.0, 1.5, 0.0, 0.5, 0.5],
    "lr": 0.125,
    "violates_invariant": False,
    "seed": 11,
    "seeds": [11, 12],
}


def test_the_runners_records_are_written_byte_for_byte_as_before(monkeypatch):
    import taylorglo.search.runner as runner

    monkeypatch.setattr(runner.time, "time", lambda: 1796000000.5)
    cfg = _golden_config()
    ok = {"status": "ok", "val_accuracy": 0.875, "val_loss": float("nan"), "test_accuracy": None, "steps": 40}
    ok.update(wall_time=1.25, train_time=1.0, worker="host:1", error=None, log="not journaled")
    diverged = {"status": "diverged", "error": "nan loss", "val_accuracy": float("nan")}
    records = [_record(cfg, _CAND, 1, 3, ok, 2), _record(cfg, _CAND, 0, 3, diverged, 1)]
    assert all(isinstance(r, EvaluationRecord) for r in records)
    assert [encode_line(r.to_dict()) for r in records] == GOLDEN_LINES
    # ... and read back into the same typed record, whose status says whether it was measured
    for raw, rec in zip(GOLDEN_LINES, records):
        assert EvaluationRecord.from_dict(decode_line(raw)) == rec
    assert records[0].measured and not records[1].measured and MEASURED == ("ok", "below_threshold")


def test_a_record_from_before_seeds_per_candidate_reads_as_replica_0():
    old = {"generation": 0, "index": 8, "seed": 5, "vector": [0.0] * 8, "status": "invariant", "fitness": 1.0}
    rec = EvaluationRecord.from_dict(dict(old, attempts=0, unknown_field="kept out"))
    assert rec.replica == 0 and rec.lr is None and rec.attempts == 0 and not rec.measured


def test_a_job_is_the_dict_evaluators_have_always_received():
    job = make_job(_golden_config(), generation=3, index=2, seed=12, vector=_CAND["vector"], lr=0.125)
    job = Job.from_dict(dict(job.to_dict(), replica=1, attempt=1))
    assert isinstance(job, Job) and job.to_dict() == GOLDEN_JOB
    assert Job.from_dict(job.to_dict()) == job
    older = {k: v for k, v in GOLDEN_JOB.items() if k not in ("replica", "loss", "evaluate_test")}
    assert Job.from_dict(older).to_dict() == dict(GOLDEN_JOB, replica=0)


def test_one_shot_evaluation_files_are_read_and_appended_by_the_directory(tmp_path):
    exp = ExperimentDir(tmp_path / "e")
    assert exp.evaluation_names() == [] and exp.read_evaluation_set("chosen") == []
    a = {"seed": 1, "spec": {"vector": [1.0]}, "status": "ok", "test_accuracy": 0.5}
    b = {"seed": 2, "spec": {"loss": "cross-entropy"}, "status": "failed", "test_accuracy": None}
    exp.append_evaluation_set("chosen", a)
    exp.append_evaluation_set("chosen", b)
    exp.append_evaluation_set("cross-entropy", b)
    path = exp.evaluation_path("chosen")
    assert path == tmp_path / "e" / "evaluations" / "chosen.jsonl"
    # the format analysis.evaluate_losses has always written: sorted keys, no checksum
    assert path.read_text().splitlines()[0] == json.dumps(a, sort_keys=True)
    with open(path, "a") as fh:
        fh.write('{"seed": 3, "spec"')  # a torn last line is skipped by readers
    assert exp.evaluation_names() == ["chosen", "cross-entropy"]
    assert exp.read_evaluation_set("chosen") == [a, b] == read_evaluation_file(path)
    assert exp.read_evaluation_set("chosen", {"vector": [1.0]}) == [a]


def _finished(path, **search) -> tuple[ExperimentDir, list[dict]]:
    cfg = synthetic_config(search={"population_size": POP, "generations": GENS, **search})
    result = run_search(path, cfg, log=None)
    assert result.complete and result.evaluations == RECORDS
    return ExperimentDir(path), journal_without_timing(path)


def _lines(exp: ExperimentDir) -> list[bytes]:
    return exp.journal_path.read_bytes().splitlines(keepends=True)


def _rerun(path) -> tuple[object, list[str]]:
    logged: list[str] = []
    return run_search(path, log=logged.append), logged


def _quarantined(exp: ExperimentDir, path=None) -> list[dict]:
    q = exp.quarantine_path(exp.journal_path if path is None else path)
    return [json.loads(line) for line in q.read_text().splitlines()]


def test_each_record_carries_a_checksum_of_its_canonical_json_and_old_lines_stay_readable(tmp_path):
    exp, reference = _finished(tmp_path / "e")
    for raw in _lines(exp):
        stored = json.loads(raw)
        assert len(stored["crc32"]) == 8
        assert decode_line(raw) == {k: v for k, v in stored.items() if k != "crc32"}
    # a line written before checksums existed: no crc32 field, read as it is
    legacy = json.dumps(reference[0], sort_keys=True).encode() + b"\n"
    assert decode_line(legacy) == reference[0]
    assert (
        encode_line(reference[0]) == _lines(exp)[0] or decode_line(encode_line(reference[0])) == reference[0]
    )


def test_decode_line_names_what_is_wrong():
    good = encode_line({"generation": 0, "index": 1, "status": "ok", "fitness": 0.25})
    cases = {
        good[:-1]: "torn",
        b"garbage\n": "not JSON",
        b"\n": "empty",
        b"[1, 2]\n": "not a JSON object",
        good.replace(b"0.25", b"0.75"): "checksum mismatch",
        b'{"generation": 0}\n': "no index",
    }
    for raw, reason in cases.items():
        with pytest.raises(CorruptLine, match=reason):
            decode_line(raw, ("generation", "index", "status", "fitness"))


def test_a_torn_last_line_of_a_finished_run_is_quarantined_and_its_evaluation_run_again(tmp_path):
    exp, reference = _finished(tmp_path / "e")
    lines = _lines(exp)
    exp.journal_path.write_bytes(b"".join(lines[:-1]) + lines[-1][:40])  # a kill during the last append
    st = experiment_status(tmp_path / "e")
    assert not st["complete"] and st["integrity"]["missing"] == [(GENS - 1, POP - 1, 0)]
    assert st["integrity"]["files"]["journal.jsonl"]["corrupt"][0]["line"] == RECORDS
    result, logged = _rerun(tmp_path / "e")
    assert result.complete and result.evaluations == RECORDS
    assert journal_without_timing(tmp_path / "e") == reference
    assert any(f"journal.jsonl line {RECORDS}: torn" in line for line in logged)
    assert any("evaluating them again" in line for line in logged)
    (entry,) = _quarantined(exp)
    assert entry["line"] == RECORDS and entry["raw"] == lines[-1][:40].decode() and "torn" in entry["reason"]
    assert experiment_status(tmp_path / "e")["complete"]


def test_a_line_replaced_by_garbage_is_reported_quarantined_and_its_evaluation_run_again(tmp_path):
    exp, reference = _finished(tmp_path / "e")
    lines = _lines(exp)
    lines[2] = b"\x00\x00garbage from a bad disk\n"
    exp.journal_path.write_bytes(b"".join(lines))
    result, logged = _rerun(tmp_path / "e")
    assert result.complete and result.evaluations == RECORDS
    assert journal_without_timing(tmp_path / "e") == reference
    assert any("journal.jsonl line 3: not JSON" in line for line in logged)
    (entry,) = _quarantined(exp)
    assert entry["line"] == 3 and "garbage from a bad disk" in entry["raw"]
    assert "journal.jsonl line 3" in (tmp_path / "e" / "search.log").read_text()


def test_garbage_lines_are_quarantined_not_silently_skipped_or_left_in_place(tmp_path):
    exp, reference = _finished(tmp_path / "e")
    lines = _lines(exp)
    garbage = [b"###\n", b"{}\n", b"\n", b"[1, 2, 3]\n"]
    exp.journal_path.write_bytes(b"".join(lines[:5] + garbage + lines[5:]))
    st = experiment_status(tmp_path / "e")
    corrupt = st["integrity"]["files"]["journal.jsonl"]["corrupt"]
    assert [c["line"] for c in corrupt] == [6, 7, 8, 9]
    result, logged = _rerun(tmp_path / "e")
    assert result.evaluations == RECORDS and journal_without_timing(tmp_path / "e") == reference
    assert [e["line"] for e in _quarantined(exp)] == [6, 7, 8, 9]
    assert sum("moved to journal.quarantine.jsonl" in line for line in logged) == 4
    assert exp.journal_path.read_bytes() == b"".join(lines)  # the records, exactly as they were
    files = experiment_status(tmp_path / "e")["integrity"]["files"]["journal.jsonl"]
    assert files["corrupt"] == [] and files["quarantined"] == 4 and files["records"] == RECORDS


def test_a_flipped_character_in_a_record_fails_its_checksum_and_the_evaluation_runs_again(tmp_path):
    exp, reference = _finished(tmp_path / "e")
    lines = _lines(exp)
    rec = json.loads(lines[6])
    acc = json.dumps(rec["val_accuracy"]).encode()
    flipped = acc[:-1] + (b"1" if acc[-1:] != b"1" else b"2")  # still valid JSON, another number
    lines[6] = lines[6].replace(b'"val_accuracy": ' + acc, b'"val_accuracy": ' + flipped)
    assert json.loads(lines[6])["val_accuracy"] != rec["val_accuracy"]
    exp.journal_path.write_bytes(b"".join(lines))
    assert len(list(ExperimentDir(tmp_path / "e").evaluations())) == RECORDS - 1  # never read as a record
    result, logged = _rerun(tmp_path / "e")
    assert any("journal.jsonl line 7: checksum mismatch" in line for line in logged)
    assert result.evaluations == RECORDS and journal_without_timing(tmp_path / "e") == reference


def test_status_shows_integrity_and_is_not_complete_while_a_record_is_missing(tmp_path, capsys):
    exp, _ = _finished(tmp_path / "e")
    assert main(["status", str(tmp_path / "e")]) == 0
    out = capsys.readouterr().out
    assert f"records OK: journal.jsonl {RECORDS}; corrupt lines: 0; quarantined: 0; missing: 0" in out
    lines = _lines(exp)
    lost = json.loads(lines[1])
    lines[1] = b"garbage\n"
    exp.journal_path.write_bytes(b"".join(lines))
    assert main(["status", str(tmp_path / "e")]) == 1
    out = capsys.readouterr().out
    assert "not complete" in out and "corrupt lines: 1" in out and "missing: 1" in out
    assert "journal.jsonl line 2: not JSON" in out
    assert f"g{lost['generation']} c{lost['index']} s{lost['replica']}" in out
    _rerun(tmp_path / "e")
    assert main(["status", str(tmp_path / "e")]) == 0
    assert "quarantined: 1; missing: 0" in capsys.readouterr().out


def test_final_selection_records_are_checked_quarantined_and_trained_again(tmp_path):
    cfg = synthetic_config(
        search={"population_size": POP, "generations": 2, "final_top_k": 1, "final_seeds": 2}
    )
    first = run_search(tmp_path / "e", cfg, log=None)
    exp = ExperimentDir(tmp_path / "e")
    records = exp.final_records()
    assert len(records) == 4 and all(
        "crc32" in json.loads(line) for line in exp.final_path.read_text().splitlines()
    )
    lines = exp.final_path.read_bytes().splitlines(keepends=True)
    exp.final_path.write_bytes(b"".join(lines[:1] + [b"garbage\n"] + lines[2:3]) + lines[3][:30])
    assert experiment_status(tmp_path / "e")["integrity"]["final_missing"] == [
        (records[1]["id"], 1),
        (records[3]["id"], 1),
    ]
    again, logged = _rerun(tmp_path / "e")
    assert again.chosen == first.chosen  # the choice stands
    assert any("final.jsonl line 2: not JSON" in line for line in logged)
    assert any("final.jsonl line 4: torn" in line for line in logged)
    strip = [{k: v for k, v in r.items() if k != "finished_at"} for r in exp.final_records()]
    want = [{k: v for k, v in r.items() if k != "finished_at"} for r in records]
    key = lambda r: (r["id"], r["replica"])  # noqa: E731
    assert sorted(strip, key=key) == sorted(want, key=key)
    assert [e["line"] for e in _quarantined(exp, exp.final_path)] == [2, 4]
    assert experiment_status(tmp_path / "e")["complete"]


def test_baseline_records_are_checked_and_a_lost_one_is_trained_again(tmp_path, capsys):

    cfg = synthetic_config(
        search={
            "population_size": POP,
            "generations": 1,
            "final_top_k": 1,
            "final_seeds": 2,
            "baseline_lrs": [0.1],
        },
        task={"lr": 0.1},
        execution={"evaluator_options": {"noise": 0.02}},
    )
    run_search(tmp_path / "e", cfg, log=None)
    first = run_baselines(tmp_path / "e", log=None)
    exp = ExperimentDir(tmp_path / "e")
    records = exp.baseline_records()
    lines = exp.baselines_path.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"status": "ok"', b'"status": "ko"')
    exp.baselines_path.write_bytes(b"".join(lines[:-1]) + lines[-1][:20])  # and a torn last line
    assert len(exp.baseline_records()) == len(records) - 2
    capsys.readouterr()
    again = run_baselines(tmp_path / "e", log=None)
    err = capsys.readouterr().err
    assert (
        "baselines.jsonl line 2: checksum mismatch" in err
        and f"baselines.jsonl line {len(lines)}: torn" in err
    )
    assert len(exp.baseline_records()) == len(records)
    assert again["best_baseline"] == first["best_baseline"]
    assert [e["line"] for e in _quarantined(exp, exp.baselines_path)] == [2, len(lines)]


def test_a_second_runner_on_the_same_directory_is_refused(tmp_path):
    exp = ExperimentDir(tmp_path / "e")
    exp.acquire_lock()
    try:
        with pytest.raises(ExperimentLocked, match=r"in use by pid \d+"):
            run_search(tmp_path / "e", synthetic_config(), log=None)
        # the refusal comes from another thread of this process too: flock is per open file
        errors = []
        t = threading.Thread(target=lambda: errors.append(_try_lock(tmp_path / "e")))
        t.start()
        t.join()
        assert errors == ["locked"]
    finally:
        exp.release_lock()
    run_search(tmp_path / "e", synthetic_config(search={"generations": 1}), log=None)


def test_baselines_that_would_train_are_refused_under_a_held_lock_a_complete_table_is_read(tmp_path):
    cfg = synthetic_config(
        search={"generations": 1, "final_top_k": 1, "final_seeds": 2, "baseline_lrs": [0.1]}
    )
    run_search(tmp_path / "e", cfg, log=None)
    exp = ExperimentDir(tmp_path / "e")
    exp.acquire_lock()  # a search or another tuning of this directory
    try:
        with pytest.raises(ExperimentLocked, match=r"in use by pid \d+"):
            run_baselines(tmp_path / "e", log=None)
        assert exp.baseline_records() == []  # refused before training anything
    finally:
        exp.release_lock()
    first = run_baselines(tmp_path / "e", log=None)
    exp.acquire_lock()
    try:  # nothing left to train: the summary is read without the lock
        assert run_baselines(tmp_path / "e", log=None)["best_baseline"] == first["best_baseline"]
    finally:
        exp.release_lock()


def _try_lock(path) -> str:
    try:
        ExperimentDir(path).acquire_lock()
    except ExperimentLocked:
        return "locked"
    return "acquired"


def test_a_stale_lock_file_from_a_dead_process_is_taken_over(tmp_path):
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "lock").write_text("pid 999999 on somewhere\n")
    result = run_search(tmp_path / "e", synthetic_config(search={"generations": 1}), log=None)
    assert result.generations == 1


def test_torn_journal_line_is_cut_and_the_candidate_reevaluated(tmp_path):
    cfg = synthetic_config(search={"generations": 1})
    run_search(tmp_path / "e", cfg, log=None)
    reference = journal_without_timing(tmp_path / "e")
    exp = ExperimentDir(tmp_path / "e")
    lines = exp.journal_path.read_bytes().splitlines(keepends=True)
    exp.journal_path.write_bytes(lines[0] + lines[1][:25])  # a kill in the middle of the second append
    exp.state_path.unlink()  # ... so generation 0 was never told
    run_search(tmp_path / "e", log=None)
    assert journal_without_timing(tmp_path / "e") == reference
