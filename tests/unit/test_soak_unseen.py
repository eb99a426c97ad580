"""Why the chaos soak never saw a push in a row (devstack.soak.unseen), over constructed journals and end states: each
reason, and pushes that nothing explains. No stack."""

from __future__ import annotations

from devstack.soak.compare import Comparison, Row
from devstack.soak.journal import DONE, REFUSED, Journal
from devstack.soak.latency import push_latencies, summarize
from devstack.soak.oracle import Expected
from devstack.soak.quiesce import Quiet
from devstack.soak.report import SoakResult, render
from devstack.soak.unseen import (
    DELETED,
    MALFORMED,
    MOVED_OUT,
    NEVER_PARSED,
    UNEXPLAINED,
    WATCHER_MISSED,
    EndState,
    breakdown,
    classify_unseen,
)

DELETED_P, MOVED_P, BACK_P, MISSED_P, UNPARSED_P = range(1, 6)
MALFORMED_P, MALFORMED_LOST_P, LOST_P, SEEN_P, BACK_REFUSED_P = range(6, 11)


def sha(name: str) -> str:
    return name.ljust(40, "0")


def expected(project_id: int, commit: str, head_malformed: bool = False) -> Expected:
    return Expected(300000 + project_id, f"iat-soak/p{project_id}", sha(commit), "Author A", head_malformed, project_id)


def row(project_id: int, commit: str) -> Row:
    return Row(300000 + project_id, "Author A", project_id, sha(commit), "Author A")


def push(journal: Journal, project_id: int, commit: str, *, expects_row: bool = True) -> None:
    journal.pushed(project_id, sha(commit), expects_row=expects_row)
    journal.record("push_status", DONE, commit, project_id)


def soak_journal() -> Journal:
    """One project per case, in the order the soak would have acted."""
    journal = Journal()
    push(journal, DELETED_P, "d1")
    journal.record("delete", DONE, "iat-soak/p1", DELETED_P)
    push(journal, MOVED_P, "m1")
    journal.record("transfer_out", DONE, "iat-soak/p2 -> iat-elsewhere", MOVED_P)
    # Moved out and back, before the push and after it: in scope at the end, so no move explains it.
    journal.record("transfer_out", DONE, "iat-soak/p3 -> iat-elsewhere", BACK_P)
    journal.record("transfer_back", DONE, "iat-elsewhere/p3 -> iat-soak", BACK_P)
    push(journal, BACK_P, "b1")
    journal.record("transfer_out", DONE, "iat-soak/p3 -> iat-elsewhere", BACK_P)
    journal.record("transfer_back", DONE, "iat-elsewhere/p3 -> iat-soak/sub-a", BACK_P)
    push(journal, MISSED_P, "w1")
    push(journal, UNPARSED_P, "n1")
    journal.record("transfer_out", DONE, "iat-soak/p5 -> iat-elsewhere", UNPARSED_P)
    journal.record("transfer_back", DONE, "iat-elsewhere/p5 -> iat-soak", UNPARSED_P)
    push(journal, MALFORMED_P, "x1")
    push(journal, MALFORMED_P, "x2", expects_row=False)
    push(journal, MALFORMED_LOST_P, "y1")
    push(journal, MALFORMED_LOST_P, "y2", expects_row=False)
    push(journal, LOST_P, "l1")
    push(journal, LOST_P, "l2")
    push(journal, SEEN_P, "s1")
    push(journal, SEEN_P, "s2")
    push(journal, BACK_REFUSED_P, "r1")
    journal.record("transfer_out", DONE, "iat-soak/p10 -> iat-elsewhere", BACK_REFUSED_P)
    journal.record("transfer_back", REFUSED, "iat-elsewhere/p10 -> iat-soak: 400", BACK_REFUSED_P)  # it stayed out
    return journal


def end_state() -> EndState:
    kept = [
        expected(BACK_P, "b1"),
        expected(MISSED_P, "w1"),
        expected(MALFORMED_P, "x0", head_malformed=True),
        expected(MALFORMED_LOST_P, "y1", head_malformed=True),  # the malformed head's rows should show y1
        expected(LOST_P, "l2"),
        expected(SEEN_P, "s2"),
    ]
    rows = [
        row(BACK_P, "b0"),
        row(MISSED_P, "w1"),
        row(MALFORMED_P, "x0"),
        row(MALFORMED_LOST_P, "y0"),
        row(LOST_P, "l0"),
        row(SEEN_P, "s2"),
    ]
    return EndState.of(kept, rows)


def classified(journal: Journal):
    first_seen = {(LOST_P, sha("l0")): 1.0, (SEEN_P, sha("s2")): journal.started + 5.0}
    latencies, never_seen = push_latencies(journal.pushes, first_seen)
    return latencies, classify_unseen(never_seen, journal, end_state())


def test_each_push_never_seen_gets_the_reason_the_soak_knows():
    latencies, unseen = classified(soak_journal())

    reasons = {(u.counted.push.project_id, u.counted.push.sha[:2]): u.reason for u in unseen}
    assert len(latencies) == 2, "both pushes of the project whose later push a row showed are measured"
    assert reasons == {
        (DELETED_P, "d1"): DELETED,
        (MOVED_P, "m1"): MOVED_OUT,
        (BACK_P, "b1"): UNEXPLAINED,  # in scope at the end, the bank expects it, the row is older
        (MISSED_P, "w1"): WATCHER_MISSED,
        (UNPARSED_P, "n1"): NEVER_PARSED,  # moved out and back: in scope at the end
        (MALFORMED_P, "x1"): MALFORMED,
        (MALFORMED_LOST_P, "y1"): UNEXPLAINED,  # a malformed head after it, but the bank expects it
        (LOST_P, "l1"): UNEXPLAINED,  # neither it nor the later l2 was ever shown
        (LOST_P, "l2"): UNEXPLAINED,
        (BACK_REFUSED_P, "r1"): MOVED_OUT,  # the transfer back was refused
    }


def test_a_departure_explains_a_push_only_when_the_bank_expects_no_item_of_it_at_the_end():
    journal = soak_journal()
    end = end_state()
    end.expected[DELETED_P] = expected(DELETED_P, "d1")  # the delete did not happen after all
    _, never_seen = push_latencies(journal.pushes, {})

    reasons = {u.counted.push.project_id: u.reason for u in classify_unseen(never_seen, journal, end)}
    assert reasons[DELETED_P] == UNEXPLAINED
    assert reasons[MOVED_P] == MOVED_OUT


def test_the_breakdown_and_the_counts_that_must_be_0():
    journal = soak_journal()
    _, unseen = classified(journal)
    deleted = next(u for u in unseen if u.reason == DELETED)
    assert deleted.departed_after is not None and 0.0 <= deleted.departed_after < 60

    text = breakdown(unseen)
    assert text.startswith("10 pushes never seen in a row: 1 project deleted later (gone at most ")
    assert "2 moved out of scope later (gone at most " in text
    assert text.endswith(
        "1 in the final rows, missed by the watcher, 1 no item.json that parses at the end, "
        "1 superseded by a malformed head, 4 unexplained"
    )
    result = SoakResult(19, 3, "abc", "first", journal, None, Quiet(), Comparison(), unseen=unseen)
    assert result.counts()["unseen_pushes_unexplained"] == 4
    assert result.counts()["unseen_pushes_missed_by_watcher"] == 1
    assert not result.passed


def test_the_report_shows_the_breakdown_and_each_unexplained_push_with_its_project_history():
    journal = soak_journal()
    _, unseen = classified(journal)
    result = SoakResult(19, 3, "abc", "first", journal, summarize(journal.pushes, {}), Quiet(), Comparison())
    result.unseen = unseen

    report = render(result)
    assert f"\n  {breakdown(unseen)}\n" in report
    listed = report.split("pushes never seen in a row, unexplained or missed by the watcher:\n")[1]
    assert f"push {sha('b1')[:10]} to project {BACK_P} at " in listed
    assert f"unexplained; bank expects {sha('b1')[:10]}, row at {sha('b0')[:10]}" in listed
    assert f"transfer_back project {BACK_P}: done, iat-elsewhere/p3 -> iat-soak/sub-a" in listed
    assert f"in the final rows, missed by the watcher; bank expects {sha('w1')[:10]}, row at {sha('w1')[:10]}" in listed
    assert f"to project {DELETED_P} " not in listed and f"to project {MALFORMED_P} " not in listed


def test_a_push_knows_which_entries_of_its_project_came_after_it():
    journal = soak_journal()
    b1 = next(p for p in journal.pushes if p.sha == sha("b1"))

    after = journal.history(BACK_P, since=b1.position)
    assert [e.kind for e in after] == ["push_status", "transfer_out", "transfer_back"]
    assert after[0].detail == "b1" and len(journal.history(BACK_P)) == 5
