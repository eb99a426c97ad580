import pytest

from imrt_sync.planning import DeletionGuard, ProjectState, plan_run, work_units

GUARD = DeletionGuard(minimum=5, ratio=0.10)


def project(pid, head="h", hook=True, branch="main"):
    return ProjectState(pid, str(200000 + pid), branch, head, hook)


def test_new_stale_unchanged_gone_and_missing_hook_are_told_apart():
    projects = [project(1, "a"), project(2, "b2"), project(3, "c", hook=False), project(4, None)]
    recorded = {2: "b1", 3: "c", 9: "z"}
    plan = plan_run(projects, recorded, full=False, guard=GUARD, listing_complete=True, items_total=3)
    assert plan.to_sync == (1, 2)  # 1 is new, 2 moved
    assert plan.unchanged == (3,)
    assert plan.empty == (4,)
    assert plan.gone == (9,)
    assert plan.to_delete == (9,)
    assert plan.missing_webhook == (3,)
    assert plan.total_ids == 4
    assert plan.deletion_blocked == ""


def test_full_mode_resyncs_unchanged_items():
    plan = plan_run(
        [project(1, "a"), project(2, "b")],
        {1: "a", 2: "b"},
        full=True,
        guard=GUARD,
        listing_complete=True,
        items_total=2,
    )
    assert plan.to_sync == (1, 2)
    assert plan.unchanged == ()


def test_incomplete_listing_deletes_nothing():
    plan = plan_run([project(1)], {1: "h", 2: "x"}, full=False, guard=GUARD, listing_complete=False, items_total=2)
    assert plan.to_delete == ()


def test_empty_listing_never_deletes_even_below_the_guard():
    plan = plan_run([], {1: "a", 2: "b"}, full=False, guard=GUARD, listing_complete=True, items_total=2)
    assert plan.to_delete == ()
    assert "returned no projects" in plan.deletion_blocked


@pytest.mark.parametrize(
    ("recorded", "gone", "allowed"),
    [(20, 5, True), (20, 6, False), (100, 10, True), (100, 11, False), (1000, 100, True), (1000, 101, False)],
)
def test_deletion_guard_allows_max_of_minimum_and_ratio(recorded, gone, allowed):
    heads = dict.fromkeys(range(recorded), "h")
    listed = [project(pid) for pid in range(gone, recorded)]
    plan = plan_run(listed, heads, full=False, guard=GUARD, listing_complete=True, items_total=recorded)
    assert plan.gone == tuple(range(gone))
    if allowed:
        assert plan.to_delete == tuple(range(gone)) and not plan.deletion_blocked
    else:
        assert plan.to_delete == ()
        assert f"{gone} of {recorded} items would be deleted" in plan.deletion_blocked


def test_targeted_run_deletes_a_requested_project_that_is_gone():
    plan = plan_run([], {7: "h"}, full=False, guard=GUARD, listing_complete=True, items_total=40, only_ids=(7,))
    assert plan.to_delete == (7,)


@pytest.mark.parametrize(
    ("items_total", "gone", "allowed"), [(20, 5, True), (20, 6, False), (200, 20, True), (200, 21, False)]
)
def test_the_guard_of_a_targeted_run_counts_over_every_item_in_item_git(items_total, gone, allowed):
    requested = tuple(range(1, gone + 1))  # every requested project answers 404 (webhook or item_ids run)
    plan = plan_run(
        [],
        dict.fromkeys(requested, "h"),
        full=False,
        guard=GUARD,
        listing_complete=True,
        items_total=items_total,
        only_ids=requested,
    )
    assert plan.gone == requested
    if allowed:
        assert plan.to_delete == requested and plan.deletion_blocked == ""
    else:
        assert plan.to_delete == ()
        assert f"{gone} of {items_total} items would be deleted" in plan.deletion_blocked


def test_a_project_that_could_not_be_read_is_skipped_reported_and_blocks_every_deletion():
    projects = [project(1, "a2"), project(3, "c")]
    plan = plan_run(
        projects,
        {1: "a1", 2: "b", 3: "c", 9: "z"},
        full=False,
        guard=GUARD,
        listing_complete=True,
        items_total=4,
        unreadable={2: "project 2 (200002): GitFetchError: git ls-remote failed (HTTP 503)"},
    )
    assert plan.to_sync == (1,) and plan.unchanged == (3,)
    assert plan.gone == (9,) and plan.to_delete == ()  # 2 is listed, so not gone; 9 is gone but waits
    assert plan.total_ids == 3
    assert "1 listed projects could not be read" in plan.deletion_blocked
    assert plan.as_dict()["failed"] == {"2": "project 2 (200002): GitFetchError: git ls-remote failed (HTTP 503)"}


@pytest.mark.parametrize(
    ("minimum", "ratio", "message"),
    [
        (-1, 0.1, "imrt_deletion_guard_min must be a whole number of items, 0 or more"),
        (5, 0, r"imrt_deletion_guard_ratio must be a share of the items in item_git in \(0, 1\]"),
        (5, 1.5, r"imrt_deletion_guard_ratio must be .* not 1.5"),
        (5, -0.1, "imrt_deletion_guard_ratio"),
        (2.5, 0.1, "imrt_deletion_guard_min"),
    ],
)
def test_invalid_deletion_guard_settings_are_a_clear_error(minimum, ratio, message):
    with pytest.raises(ValueError, match=message):
        DeletionGuard(minimum, ratio)


def test_the_guard_bounds_are_inclusive_where_documented():
    assert DeletionGuard(0, 1).limit(10) == 10
    assert DeletionGuard(0, 0.5).limit(3) == 1


def test_one_unit_per_item_while_within_the_bound():
    names = {1: "200001", 2: "200002", 3: "200003"}
    units = work_units([1, 2], [3], bound=3, names=names)
    assert units == [
        {"label": "200001", "sync": [1], "delete": []},
        {"label": "200002", "sync": [2], "delete": []},
        {"label": "200003", "sync": [], "delete": [3]},
    ]


def test_batches_above_the_bound_stay_within_it_and_cover_every_item_once():
    ids = list(range(1, 1001))
    names = {pid: f"item{pid}" for pid in ids}
    units = work_units(ids[:990], ids[990:], bound=256, names=names)
    assert len(units) <= 256
    covered = [pid for u in units for pid in u["sync"] + u["delete"]]
    assert sorted(covered) == ids
    assert units[0]["label"] == "item1..item4 (4 items)"
    assert units[-1]["delete"] == ids[-(1000 % 4 or 4) :]


def test_no_work_no_units():
    assert work_units([], [], bound=256, names={}) == []


def test_batches_hold_at_least_the_batch_size_above_the_bound():
    ids = list(range(1, 2001))
    units = work_units(ids, [], bound=256, names={}, batch_size=64)
    assert [len(u["sync"]) for u in units] == [64] * 31 + [2000 - 31 * 64]
    assert units[0]["label"] == "project 1..project 64 (64 items)"


def test_batch_size_gives_way_to_the_bound_on_huge_banks():
    ids = list(range(1, 20001))
    units = work_units(ids, [], bound=256, names={}, batch_size=64)
    assert len(units) <= 256
    assert max(len(u["sync"]) for u in units) == 79  # ceil(20000 / 256)


def test_mid_sized_work_is_batched_and_small_work_keeps_one_item_per_unit():
    """A nightly run of 250 changed items maps 4 batches, not 250 instances; 32 items or fewer keep their own."""
    nightly = work_units(list(range(1, 251)), [], bound=256, names={}, batch_size=64, one_per_item=32)
    assert [len(u["sync"]) for u in nightly] == [64, 64, 64, 58]
    small = work_units(list(range(1, 33)), [], bound=256, names={}, batch_size=64, one_per_item=32)
    assert len(small) == 32 and all(len(u["sync"]) == 1 for u in small)
    full = work_units(list(range(1, 20001)), [], bound=256, names={}, batch_size=64, one_per_item=32)
    assert len(full) == 254  # a full sync of a large bank: as many units as the bound allows


def test_work_within_the_bound_stays_one_item_per_unit_whatever_the_batch_size():
    units = work_units(list(range(1, 257)), [], bound=256, names={}, batch_size=64)
    assert len(units) == 256 and all(len(u["sync"]) == 1 for u in units)


def test_an_item_being_created_is_synced_when_its_create_branch_moves_though_the_default_branch_did_not():
    creating = [ProjectState(1, "200001", "main", "d", True, "s2"), ProjectState(2, "200002", "main", "d", True, "s1")]
    plan = plan_run(
        creating + [project(3, "h")],
        {1: "d", 2: "d", 3: "h"},
        full=False,
        guard=GUARD,
        listing_complete=True,
        items_total=3,
        recorded_source_heads={1: "s1", 2: "s1"},
    )
    assert plan.to_sync == (1,)
    assert plan.unchanged == (2, 3)
    gone_branch = ProjectState(1, "200001", "main", "d", True, None)  # the create branch was deleted
    assert plan_run(
        [gone_branch],
        {1: "d"},
        full=False,
        guard=GUARD,
        listing_complete=True,
        items_total=1,
        recorded_source_heads={1: "s1"},
    ).to_sync == (1,)
