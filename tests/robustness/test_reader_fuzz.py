"""Every annotation reader on hostile input: arbitrary bytes, truncated files, numeric edge cases
and layout noise.

The only acceptable outcomes are a clean result (finite boxes, landmarks and ellipses) or an
:class:`AnnotationError` / :class:`UserError` whose message is one line, names the file and, when
it gives a line, one that exists.  Anything else (ValueError, IndexError, UnicodeDecodeError,
RuntimeError, ...) escapes and fails the test with its traceback.
"""
from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtcnn_train.datasets.fddb import fold_paths, read_fddb, read_fddb_fold, read_fold_list
from mtcnn_train.datasets.landmarks import LANDMARK_FORMATS, detect_landmark_format, read_landmarks
from mtcnn_train.datasets.records import FaceRecord
from mtcnn_train.datasets.wider import read_wider
from mtcnn_train.errors import AnnotationError, UserError

def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

CELEBA_HEADER = ("lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y "
                 "leftmouth_x leftmouth_y rightmouth_x rightmouth_y")
WIDER = ("ev/a.jpg\n2\n10 20 30 40 0 0 0 0 0 0 \n50.5 60 7 8 1 2 0 1 0 0 \n"
         "ev/b.jpg\n0\n0 0 0 0 0 0 0 0 0 0 \n"
         "ev/c.jpg\n1\n0 0 0 0 0 0 0 0 0 0 \n")
CELEBA_LANDMARKS = (f"2\n{CELEBA_HEADER}\n"
                    "000001.jpg 165  184  244  176  196  249  194  271  266  260\n"
                    "000002.jpg 140  204  220  204  168  254  146  289  226  289\n")
CELEBA_BBOX = "2\nimage_id x_1 y_1 width height\n000002.jpg    72  94 221 306\n000001.jpg    95  71 226 313\n"
CELEBA_ALIGNED = f"1\n{CELEBA_HEADER}\n000001.jpg 70 110 110 110 90 130 75 150 105 150\n"
LFW_NET = ("lfw_5590\\Aaron_Eckhart_0001.jpg 84 161 92 169 106.25 107.75 146.75 112.25 "
           "125.25 142.75 105.25 157.75 139.75 161.75\r\n"
           "net_7876\\1_2_3.jpg 10 50 20 70.5 20 30 40 30 30 45 22 60 38 60\r\n")
MTFL = ("lfw_5590/a.jpg 34.32 47.28 40.4 34.0 45.04 34.8 36.24 46.0 50.8 52.08\n"
        "AFLW/b.jpg 10 20 15 11 19 12 12 16 22 22\n")
MTFL_OFFICIAL = ("lfw_5590\\Aaron_Eckhart_0001.jpg 70 110 90 75 105 110 110 130 150 150 1 2 2 3\r\n"
                 "net_7876\\x.jpg 20 40 30 22 38 30 30 45 60 60 2 1 1 5\r\n")
FDDB_FOLD = ("2002/08/11/big/img_591\n1\n123.583300 85.549500 1.265839 269.693400 161.781200  1\n"
             "2002/08/26/big/img_265\n2\n67.363819 44.511485 -1.476417 105.249970 87.209036  1\n"
             "41.936870 27.064477 1.471906 184.070915 129.345601  1\n")
FDDB_LIST = "2002/08/11/big/img_591\n2002/08/26/big/img_265\n"


def tiny_png(width: int = 80, height: int = 80) -> bytes:
    """A valid 8-bit gray PNG (only its header matters to the MTFL reader)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + bytes(width) for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@dataclass
class ReaderCase:
    """One reader with a valid file to mutate (``target``) and the files that must lie beside it."""

    target: str
    valid: str
    call: Callable[[Path], Any]
    companions: dict[str, str | bytes] = field(default_factory=dict)

    def write(self, root: Path, content: bytes) -> Path:
        for name, data in self.companions.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                path.write_bytes(data if isinstance(data, bytes) else data.encode())
        path = root / self.target
        path.parent.mkdir(parents=True, exist_ok=True)
        # A fresh file each time: overwriting in place makes ext4 flush on close (auto_da_alloc),
        # ten times slower across thousands of examples.
        path.unlink(missing_ok=True)
        path.write_bytes(content)
        return path


CASES: dict[str, ReaderCase] = {
    "wider": ReaderCase("gt.txt", WIDER, lambda root: read_wider(root / "gt.txt", root / "images")),
    "celeba": ReaderCase("list_landmarks_celeba.txt", CELEBA_LANDMARKS,
                         lambda root: read_landmarks(root / "list_landmarks_celeba.txt"),
                         {"list_bbox_celeba.txt": CELEBA_BBOX}),
    "celeba bbox list": ReaderCase("list_bbox_celeba.txt", CELEBA_BBOX,
                                   lambda root: read_landmarks(root / "list_landmarks_celeba.txt", fmt="celeba"),
                                   {"list_landmarks_celeba.txt": CELEBA_LANDMARKS}),
    "celeba-aligned": ReaderCase("list_landmarks_align_celeba.txt", CELEBA_ALIGNED,
                                 lambda root: read_landmarks(root / "list_landmarks_align_celeba.txt",
                                                             fmt="celeba-aligned")),
    "lfw-net": ReaderCase("trainImageList.txt", LFW_NET,
                          lambda root: read_landmarks(root / "trainImageList.txt", fmt="lfw-net")),
    "mtfl crops, default size": ReaderCase("new_training.txt", MTFL,
                                           lambda root: read_landmarks(root / "new_training.txt", fmt="mtfl",
                                                                       default_size=(80, 80))),
    # Both images exist, so the reader reads their headers.
    "mtfl crops, images present": ReaderCase("new_training.txt", MTFL,
                                             lambda root: read_landmarks(root / "new_training.txt", fmt="mtfl"),
                                             {"lfw_5590/a.jpg": tiny_png(), "AFLW/b.jpg": tiny_png(40, 50)}),
    "mtfl official": ReaderCase("training.txt", MTFL_OFFICIAL,
                                lambda root: read_landmarks(root / "training.txt", fmt="mtfl")),
    # Format detection by content (the name says nothing), then the detected reader.
    "auto format": ReaderCase("list.txt", LFW_NET,
                              lambda root: read_landmarks(root / "list.txt", default_size=(80, 80))),
    "auto format, celeba with boxes": ReaderCase("landmarks.txt", CELEBA_LANDMARKS,
                                                 lambda root: read_landmarks(root / "landmarks.txt"),
                                                 {"list_bbox_celeba.txt": CELEBA_BBOX}),
    "detect_landmark_format": ReaderCase("list.txt", MTFL_OFFICIAL, lambda root: detect_landmark_format(root / "list.txt")),
    "fddb fold": ReaderCase("fold.txt", FDDB_FOLD, lambda root: read_fddb_fold(root / "fold.txt", root / "pics")),
    "fddb fold list": ReaderCase("names.txt", FDDB_LIST, lambda root: read_fold_list(root / "names.txt")),
    "read_fddb, ellipse file": ReaderCase(str(fold_paths(".", 1)[0]), FDDB_FOLD,
                                          lambda root: read_fddb(root, folds=[1]),
                                          {str(fold_paths(".", 1)[1]): FDDB_LIST}),
    "read_fddb, image list": ReaderCase(str(fold_paths(".", 1)[1]), FDDB_LIST,
                                        lambda root: read_fddb(root, folds=[1]),
                                        {str(fold_paths(".", 1)[0]): FDDB_FOLD}),
}
CASE_NAMES = sorted(CASES)


def assert_clean_result(result: Any) -> None:
    if isinstance(result, str):
        assert result in LANDMARK_FORMATS
        return
    assert isinstance(result, list)
    for item in result:
        if isinstance(item, str):  # read_fold_list
            assert item and item == item.strip()
            continue
        assert isinstance(item, FaceRecord)
        assert np.isfinite(item.boxes).all(), item
        for extra in (item.landmarks, item.ellipses):
            assert extra is None or np.isfinite(extra).all(), item


def assert_clean_error(exc: UserError, root: Path) -> None:
    message = str(exc)
    assert len(message.splitlines()) == 1 and message.strip() == message, repr(message)
    if isinstance(exc, AnnotationError):
        path = Path(exc.path)
        assert message.startswith(f"{path}:" if exc.line is None else f"{path}:{exc.line}: "), message
        assert path.is_relative_to(root), message  # the file named is one of the dataset's files
        if exc.line is not None:
            # Lines end in LF, CR LF or a lone CR (annotation_text.read_text_lines).
            line_count = len(re.split(rb"\r\n|\r|\n", path.read_bytes())) if path.is_file() else 1
            assert 1 <= exc.line <= line_count, message
    else:
        assert str(root) in message, message


def run_reader(case: ReaderCase, root: Path, content: bytes) -> str:
    """Feed ``content`` to the reader; returns 'ok' or 'error' and checks either outcome."""
    case.write(root, content)
    try:
        result = case.call(root)
    except UserError as exc:  # AnnotationError is a UserError
        assert_clean_error(exc, root)
        return "error"
    assert_clean_result(result)
    return "ok"


@pytest.mark.parametrize("name", CASE_NAMES)
def test_valid_files_read_cleanly(tmp_path, name):
    case = CASES[name]
    assert run_reader(case, tmp_path, case.valid.encode()) == "ok"


# --------------------------------------------------------------------------------------------
# Arbitrary bytes


@pytest.mark.parametrize("name", CASE_NAMES)
@fuzz(100)
@given(data=st.one_of(
    st.binary(max_size=300),
    # Text made of the characters annotation files are made of, so that parsing goes deeper.
    st.text(st.sampled_from("0123456789 .-+eE\n\r\tnaif/\\jpg_x"), max_size=300).map(str.encode),
))
def test_arbitrary_bytes(tmp_path, name, data):
    run_reader(CASES[name], tmp_path, data)


# --------------------------------------------------------------------------------------------
# Truncation at every cut point (and, for the CRLF spelling, at every cut near a line end)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_truncation_at_every_cut_point(tmp_path, name):
    case = CASES[name]
    outcomes = {"ok": 0, "error": 0}
    lf = case.valid.replace("\r\n", "\n").encode()
    for cut in range(len(lf)):
        outcomes[run_reader(case, tmp_path, lf[:cut])] += 1
    crlf = lf.replace(b"\n", b"\r\n")
    line_ends = [i for i, byte in enumerate(crlf) if byte == ord("\r")]
    for cut in sorted({c for end in line_ends for c in range(end - 2, end + 3) if 0 <= c < len(crlf)}):
        outcomes[run_reader(case, tmp_path, crlf[:cut])] += 1
    # A cut inside a number can go unnoticed, but a cut that drops fields or lines must be refused
    # (the FDDB image list holds nothing but names, so any cut of it still reads).
    assert outcomes["error"] > 0 or name == "fddb fold list", outcomes


# --------------------------------------------------------------------------------------------
# Numeric edge cases swapped in for the numbers of a valid file

EDGE_TOKENS = [
    "nan", "NaN", "-nan", "inf", "-inf", "Infinity", "-Infinity", "1e308", "-1e308", "1e309", "1.7976931348623157e308",
    "1e-320", "5e-324", "-0", "-0.0", "+0", "0", "00", "0.0", "-1", "-5", "-1e6", "1e6", "1000000.0001", "999999.99",
    "18446744073709551616", "-9223372036854775809", "340282366920938463463374607431768211457", "9" * 400,
    "9" * 5000, "1_000", "0x10", "0b1", "1e", "e5", "--1", "+-1", ".", "-", "+", "1.2.3", "3.", ".5",
    "\u0663", "\u00b2", "\uff11\uff12", "\u2155", "1\u00a02", "x", "1,5", "1e-", "None", "true",
]
NUMBER = st.one_of(
    st.sampled_from(EDGE_TOKENS),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(2**80), 2**80).map(str),
    st.integers(-3, 3).map(str),
)


def numeric_token_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every whitespace-separated token that reads as a number."""
    spans, start = [], None
    for i, ch in enumerate(text + " "):
        if ch.isspace():
            if start is not None:
                token = text[start:i]
                try:
                    float(token)
                    spans.append((start, i))
                except ValueError:
                    pass
                start = None
        elif start is None:
            start = i
    return spans


@pytest.mark.parametrize("name", CASE_NAMES)
@fuzz(120)
@given(data=st.data())
def test_numeric_edge_cases(tmp_path, name, data):
    case = CASES[name]
    text = case.valid
    spans = numeric_token_spans(text)
    if not spans:  # the FDDB image list holds no numbers: swap in whole lines instead
        spans = [(0, text.index("\n"))]
    chosen = data.draw(st.lists(st.sampled_from(spans), min_size=1, max_size=3, unique=True))
    for start, end in sorted(chosen, reverse=True):
        text = text[:start] + data.draw(NUMBER) + text[end:]
    run_reader(case, tmp_path, text.encode())


# --------------------------------------------------------------------------------------------
# Layout noise: empty lines, CRLF / CR endings, BOM, tabs, trailing blanks, moved lines

def _lines(text: str) -> list[str]:
    lines = text.replace("\r\n", "\n").split("\n")
    return lines[:-1] if lines[-1] == "" else lines


MUTATIONS: dict[str, Callable[[str, st.DataObject], str]] = {
    "crlf": lambda t, d: t.replace("\r\n", "\n").replace("\n", "\r\n"),
    "cr only": lambda t, d: t.replace("\r\n", "\n").replace("\n", "\r"),
    "bom": lambda t, d: "\ufeff" + t,
    "double bom": lambda t, d: "\ufeff\ufeff" + t,
    "tabs": lambda t, d: t.replace(" ", "\t"),
    "trailing blanks": lambda t, d: t.replace("\n", " \t \n"),
    "no final newline": lambda t, d: t.rstrip("\r\n"),
    "unicode line separators": lambda t, d: t.replace("\n", d.draw(st.sampled_from(["\u2028", "\x85", "\x0b", "\x0c"]))),
    "empty line": lambda t, d: _insert_line(t, d, ""),
    "blank line": lambda t, d: _insert_line(t, d, " \t "),
    "duplicated line": lambda t, d: _insert_line(t, d, None),
    "dropped line": lambda t, d: _drop_line(t, d),
    "swapped lines": lambda t, d: _swap_lines(t, d),
    "leading spaces": lambda t, d: "\n".join("   " + line for line in t.split("\n")),
}


def _insert_line(text: str, data: st.DataObject, line: str | None) -> str:
    lines = _lines(text)
    at = data.draw(st.integers(0, len(lines)))
    lines.insert(at, line if line is not None or not lines else lines[min(at, len(lines) - 1)])
    return "".join(f"{x}\n" for x in lines)


def _drop_line(text: str, data: st.DataObject) -> str:
    lines = _lines(text)
    if not lines:
        return text
    del lines[data.draw(st.integers(0, len(lines) - 1))]
    return "".join(f"{x}\n" for x in lines)


def _swap_lines(text: str, data: st.DataObject) -> str:
    lines = _lines(text)
    if not lines:
        return text
    i, j = data.draw(st.integers(0, len(lines) - 1)), data.draw(st.integers(0, len(lines) - 1))
    lines[i], lines[j] = lines[j], lines[i]
    return "".join(f"{x}\n" for x in lines)


@pytest.mark.parametrize("name", CASE_NAMES)
@fuzz(80)
@given(data=st.data())
def test_layout_noise(tmp_path, name, data):
    case = CASES[name]
    text = case.valid
    for mutation in data.draw(st.lists(st.sampled_from(sorted(MUTATIONS)), min_size=1, max_size=3)):
        text = MUTATIONS[mutation](text, data)
    encoding = data.draw(st.sampled_from(["utf-8", "utf-8", "utf-16", "latin-1"]))
    try:
        content = text.encode(encoding)
    except UnicodeEncodeError:
        content = text.encode("utf-8")
    run_reader(case, tmp_path, content)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_harmless_layout_changes_read_the_same(tmp_path, name):
    """CRLF endings, a BOM, tabs, trailing blanks and a missing final newline change nothing."""
    case = CASES[name]
    expected = _summary(case.call(_written(case, tmp_path / "plain", case.valid.encode())))
    lf = case.valid.replace("\r\n", "\n")
    variants = {
        "crlf": lf.replace("\n", "\r\n"),
        "bom": "\ufeff" + case.valid,
        "tabs": case.valid.replace(" ", "\t"),
        "trailing blanks": lf.replace("\n", "  \n"),
        "no final newline": case.valid.rstrip("\r\n"),
    }
    for variant, text in variants.items():
        got = _summary(case.call(_written(case, tmp_path / variant, text.encode())))
        assert got == expected, variant


def _written(case: ReaderCase, root: Path, content: bytes) -> Path:
    case.write(root, content)
    return root


def _summary(result: Any) -> Any:
    if not isinstance(result, list):
        return result
    return [item if isinstance(item, str) else (item.name, item.boxes.tolist(),
                                                None if item.landmarks is None else item.landmarks.tolist())
            for item in result]
