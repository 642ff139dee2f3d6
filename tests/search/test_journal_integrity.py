"""Journal integrity: checksummed records; torn, garbage and altered lines are reported with their
line number, quarantined (never silently skipped or left in place) and their evaluations run again,
so a finished run never reports "complete" with fewer records than its generations need."""

from __future__ import annotations

import json

import pytest
from conftest import journal_without_timing, synthetic_config

from taylorglo.search.__main__ import main
from taylorglo.search.analysis import experiment_status
from taylorglo.search.journal import CorruptLine, ExperimentDir, decode_line, encode_line
from taylorglo.search.runner import run_search

POP, GENS = 4, 3
RECORDS = POP * GENS


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
    from taylorglo.search.baselines import run_baselines

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
