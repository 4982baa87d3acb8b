"""One-to-one matching of faces and detections for FDDB scoring: the official solver and the optimum.

The official ``evaluate`` program (``Matching::runHungarian``) matches faces and detections with
Brian Gerkey's *libhungarian*, converted to doubles, in maximise mode.  That library implements
Kuhn's 1955 "Hungarian method" (Routines I and II of the paper).  The method was stated for
square rating matrices, and that is where the official result can fall short of the optimum:

* The matrix is ``m x n`` with ``m <= n`` (the program transposes it when there are more faces
  than detections).
* A *cover* ``u_i + v_j >= r_ij`` is kept, and only "tight" cells (``u_i + v_j == r_ij``, within
  ``1e-15``) may be assigned.  The method stops as soon as the König cover of the tight cells
  leaves no cell uncovered.  On an ``m x n`` matrix with ``m < n`` this happens as soon as every
  row is assigned and reachable, *whatever the cover says about the unassigned columns*.
* An assignment is only optimal when every unassigned column has ``v_j == 0`` (linear-programming
  duality: total = sum(u) + sum(v) - sum(v of unassigned columns)).  With the first cover on the
  rows (``u`` = row maxima, ``v = 0``) unassigned columns stay at 0 and the answer is optimal.  But
  the library starts on the *columns* (``v`` = column maxima) whenever their total is smaller, and
  then an unassigned column can keep a positive ``v_j`` until the end: the result is then
  suboptimal by up to the sum of those ``v_j``.
* Square matrices (``m == n``) always end fully assigned, hence optimal.

:func:`official_assignment` reproduces that solver's answer exactly: the same start, the same
greedy first assignment, the same depth-first search order for augmenting paths, the same cover
updates with the same floating-point operations in the same order, the same tolerance and the
same stopping rule.  :func:`optimal_assignment` is the true maximum (SciPy).  Both apply the
official pre- and post-processing (drop all-zero rows and columns, transpose when there are more
rows than columns, drop matched pairs of overlap 0) and return the pairs in the order the official
program lists them.  See docs/FDDB.md.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

#: Tolerance of the official solver (``HUNGARIAN_EPS``): a slack below this counts as zero.
TOLERANCE = 1e-15
#: Matching methods accepted by the FDDB scorer.
MATCHING_METHODS = ("official", "optimal")
#: Cover updates after which the solver is considered stuck: a safety net only (Kuhn's method
#: terminates; overlap matrices of tens by tens need a few dozen updates at most).
_MAX_COVER_UPDATES = 100_000


class OfficialSolverError(RuntimeError):
    """The official solver would stop the program here (one of its ``assert``s would fail).

    This happens only if rounding errors break the cover by more than the tolerance, which was
    never seen on overlap matrices; the official program aborts without writing any result.
    """


# --------------------------------------------------------------------------------------------
# Kuhn's method as libhungarian runs it, for an m x n rating matrix with m <= n.


class _KuhnState:
    """Cover (``u``, ``v``), tight cells and the current assignment ("starred" tight cells)."""

    def __init__(self, ratings: np.ndarray):
        self.r = ratings
        self.m, self.n = ratings.shape
        self.u = np.zeros(self.m)
        self.v = np.zeros(self.n)
        self.tight = np.zeros((self.m, self.n), dtype=bool)
        self.star_col = np.full(self.m, -1)  # assigned column of each row, -1 if none
        self.star_row = np.full(self.n, -1)  # assigned row of each column, -1 if none

    def slack(self) -> np.ndarray:
        # Evaluated as (u + v) - r, as the C expression ``u[i] + v[j] - r[i][j]`` is.
        return self.u[:, None] + self.v[None, :] - self.r

    def refresh_tight_cells(self) -> None:
        """Recompute the tight cells; an assigned cell that is no longer tight is unassigned.

        (Assigned cells keep a zero slack under every cover update, so in exact arithmetic the
        second rule never fires; it is kept because the library applies it.)
        """
        self.tight = np.abs(self.slack()) < TOLERANCE
        for i in range(self.m):
            j = self.star_col[i]
            if j >= 0 and not self.tight[i, j]:
                self.star_col[i] = -1
                self.star_row[j] = -1

    def assign(self, i: int, j: int) -> None:
        self.star_col[i] = j
        self.star_row[j] = i


def _sequential_sum(values: np.ndarray) -> float:
    # Left-to-right double additions, as the C loop does (numpy's sum is pairwise and may round
    # differently, which could flip the rows-or-columns choice on a near tie).
    total = 0.0
    for value in values.tolist():
        total += value
    return total


def _initial_cover(state: _KuhnState) -> bool:
    """Start from the cheaper of "every row at its maximum" and "every column at its maximum".

    Returns True when the cover is on the rows.  The maxima start from 0 (ratings are
    non-negative).  Ties go to the rows.  Choosing the columns is what lets an unassigned column
    keep a positive ``v_j`` to the end (see the module docstring).
    """
    row_max = np.maximum(state.r.max(axis=1), 0.0)
    col_max = np.maximum(state.r.max(axis=0), 0.0)
    on_rows = _sequential_sum(row_max) <= _sequential_sum(col_max)
    if on_rows:
        state.u = row_max.copy()
    else:
        state.v = col_max.copy()
    return on_rows


def _greedy_first_assignment(state: _KuhnState, by_rows: bool) -> None:
    """First assignment among tight cells, scanning rows (or columns) in order, first free wins."""
    if by_rows:
        for i in range(state.m):
            for j in np.flatnonzero(state.tight[i]):
                if state.star_row[j] < 0:
                    state.assign(i, int(j))
                    break
    else:
        for j in range(state.n):
            for i in np.flatnonzero(state.tight[:, j]):
                if state.star_col[i] < 0:
                    state.assign(int(i), j)
                    break


def _augment_or_cover(state: _KuhnState) -> np.ndarray | None:
    """Routine I: enlarge the assignment by one augmenting path, or find the König cover.

    Augmenting paths start at an unassigned column and alternate "tight, unassigned" cells and
    assigned cells until they reach an unassigned row.  The library searches depth first:
    unassigned columns left to right; in a column, candidate rows top to bottom; from a row,
    on to the column of its assigned cell.  The first path found is applied and the search
    starts over.  Returns None after an augmentation, or, when no path exists, the boolean mask
    of the rows the search reached (the "essential" rows of the cover).

    The library re-enters rows that already failed through a different partial path; it never
    succeeds there (if it could, the failed row's own search would have found a path through the
    row that blocked it, which is still searchable), so remembering failed rows, as done here,
    gives the same first path with polynomial work.
    """
    one = state.tight.copy()
    assigned = state.star_col >= 0
    one[np.flatnonzero(assigned), state.star_col[assigned]] = False  # tight but not assigned
    failed = np.zeros(state.m, dtype=bool)

    def search(row: int, on_path: set[int]) -> list[tuple[int, int]] | None:
        """Cells (row, column) to assign, continuing the path that just reached ``row``."""
        column = state.star_col[row]
        if column < 0:
            return []  # an unassigned row: the path is complete
        for nxt in np.flatnonzero(one[:, column]).tolist():
            if nxt in on_path or failed[nxt]:
                continue
            rest = search(nxt, on_path | {nxt})
            if rest is not None:
                return [(nxt, int(column))] + rest
        failed[row] = True
        return None

    for start_column in range(state.n):
        if state.star_row[start_column] >= 0:
            continue
        for row in np.flatnonzero(one[:, start_column]).tolist():
            if failed[row]:
                continue
            rest = search(row, {row})
            if rest is not None:
                # Flip the path: each of its tight cells becomes assigned; the assigned cells it
                # passed through are replaced (each row and column keeps at most one).
                for i, j in [(row, start_column)] + rest:
                    state.assign(i, j)
                return None
    return failed


def _adjust_cover(state: _KuhnState, essential_rows: np.ndarray) -> bool:
    """Routine II: lower the cover where it is not essential.  Returns False when finished.

    Essential columns are the assigned columns of the non-essential rows.  ``d`` is the smallest
    slack among cells in neither an essential row nor an essential column.  The library stops
    when that minimum is zero, which (since no uncovered cell is tight) means: when no cell is
    uncovered at all.  With ``m < n`` that is as soon as every row is essential, even if an
    unassigned column still has ``v_j > 0``: the root of the non-optimal answers.
    """
    essential_cols = np.zeros(state.n, dtype=bool)
    for i in np.flatnonzero(~essential_rows):
        if state.star_col[i] >= 0:
            essential_cols[state.star_col[i]] = True
    free_rows = np.flatnonzero(~essential_rows).tolist()
    free_cols = np.flatnonzero(~essential_cols).tolist()

    # The library's running-minimum rule, kept as is: a candidate of (near) zero is taken, and
    # a current value of (near) zero is always replaced.
    d = 0.0
    for i in free_rows:
        for j in free_cols:
            slack = state.u[i] + state.v[j] - state.r[i, j]
            if slack < -TOLERANCE:
                raise OfficialSolverError(f"cover broken at ({i}, {j}) by {slack!r}")
            if abs(d) < TOLERANCE or (slack > -TOLERANCE and slack < d):
                d = slack
    if d < -TOLERANCE:
        raise OfficialSolverError(f"negative cover step {d!r}")
    if abs(d) < TOLERANCE:
        return False

    # Kuhn keeps u, v >= 0: the step is also bounded by the u (or v) values it lowers.
    if any(state.u[i] == 0.0 for i in free_rows):
        # Some non-essential row is already at 0: raise the essential rows, lower the
        # non-essential columns instead.
        step = d
        for j in free_cols:
            if state.v[j] < step:
                step = state.v[j]
        state.u[essential_rows] += step
        state.v[~essential_cols] -= step
    else:
        step = d
        for i in free_rows:
            if state.u[i] < step:
                step = state.u[i]
        state.u[~essential_rows] -= step
        state.v[essential_cols] += step
    if (state.slack() < -TOLERANCE).any():
        raise OfficialSolverError("cover broken after an update")
    state.refresh_tight_cells()
    return True


def kuhn_libhungarian(ratings: np.ndarray) -> np.ndarray:
    """Row -> column assignment that libhungarian (maximise mode) returns for ``ratings``.

    ``ratings`` is ``m x n`` with ``m <= n`` and non-negative entries.  Returns an int array of
    length ``m``; -1 marks a row left unassigned (the official program then stops with "Not yet
    implemented"; it does not happen on non-negative matrices).
    """
    r = np.asarray(ratings, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] > r.shape[1]:
        raise ValueError(f"the solver takes an m x n matrix with m <= n, got shape {r.shape}")
    state = _KuhnState(r)
    if r.size == 0:
        return state.star_col.copy()
    by_rows = _initial_cover(state)
    state.refresh_tight_cells()
    _greedy_first_assignment(state, by_rows)
    for _ in range(_MAX_COVER_UPDATES):
        essential_rows = _augment_or_cover(state)
        while essential_rows is None:  # keep augmenting while paths exist
            essential_rows = _augment_or_cover(state)
        if not _adjust_cover(state, essential_rows):
            return state.star_col.copy()
    raise OfficialSolverError("the solver did not finish")


# --------------------------------------------------------------------------------------------
# Matching::runHungarian around the solver, shared by both methods.


def _reduce(overlaps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Drop rows and columns with no positive overlap; transpose if more rows than columns.

    Returns ``(matrix, row_ids, col_ids, transposed)`` where ``matrix`` is what the solver sees:
    ``matrix[a, b]`` is ``overlaps[row_ids[a], col_ids[b]]``, or ``overlaps[row_ids[b],
    col_ids[a]]`` when transposed.  (The official test is "row sum != 0", the same for
    non-negative overlaps.)
    """
    positive = overlaps > 0
    row_ids = np.flatnonzero(positive.any(axis=1))
    col_ids = np.flatnonzero(positive.any(axis=0))
    sub = overlaps[np.ix_(row_ids, col_ids)]
    transposed = len(row_ids) > len(col_ids)
    return (sub.T if transposed else sub), row_ids, col_ids, transposed


def _pairs_in_official_order(overlaps: np.ndarray, solver_rows: np.ndarray, solver_cols: np.ndarray,
                             row_ids: np.ndarray, col_ids: np.ndarray,
                             transposed: bool) -> tuple[np.ndarray, np.ndarray]:
    """Map solver pairs back to ``overlaps`` indices, keep overlap > 0, order by solver row."""
    order = np.argsort(solver_rows, kind="stable")
    a, b = solver_rows[order], solver_cols[order]
    rows, cols = (row_ids[b], col_ids[a]) if transposed else (row_ids[a], col_ids[b])
    keep = overlaps[rows, cols] > 0
    return rows[keep].astype(np.int64), cols[keep].astype(np.int64)


def _validated(overlaps: np.ndarray) -> np.ndarray:
    o = np.asarray(overlaps, dtype=np.float64)
    if o.ndim != 2:
        raise ValueError(f"overlaps must be a 2-D matrix, got shape {o.shape}")
    if not np.isfinite(o).all() or (o < 0).any():
        raise ValueError("overlaps must be finite and non-negative")
    return o


def official_assignment(overlaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pairs the official FDDB program matches, non-optimal answers and tie-breaks included.

    ``overlaps`` is ``(faces, kept detections)``.  Returns ``(rows, cols)``: indices into it of
    the matched pairs with positive overlap, in the order the official program lists them (by
    face, or by detection when it transposed the matrix).
    """
    o = _validated(overlaps)
    matrix, row_ids, col_ids, transposed = _reduce(o)
    if matrix.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    columns = kuhn_libhungarian(matrix)
    if (columns < 0).any():
        raise OfficialSolverError("the official solver left a row unassigned")
    return _pairs_in_official_order(o, np.arange(len(columns)), columns, row_ids, col_ids, transposed)


def optimal_assignment(overlaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A matching of largest total overlap (SciPy), reduced and ordered like the official one."""
    o = _validated(overlaps)
    matrix, row_ids, col_ids, transposed = _reduce(o)
    if matrix.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    a, b = linear_sum_assignment(matrix, maximize=True)
    return _pairs_in_official_order(o, a, b, row_ids, col_ids, transposed)


def assignment(overlaps: np.ndarray, method: str = "official") -> tuple[np.ndarray, np.ndarray]:
    """Dispatch on ``method``: ``"official"`` or ``"optimal"`` (see :data:`MATCHING_METHODS`)."""
    if method == "official":
        return official_assignment(overlaps)
    if method == "optimal":
        return optimal_assignment(overlaps)
    raise ValueError(f"unknown matching {method!r}; expected one of {', '.join(MATCHING_METHODS)}")
