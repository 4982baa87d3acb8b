"""Pascal VOC XML (one file per image), as labelImg, CVAT and Roboflow export it.

What we read from each ``.xml``::

    <annotation>
      <folder>...</folder> <filename>img_1.jpg</filename>
      <object>
        <name>face</name> <difficult>0</difficult> <truncated>0</truncated>
        <bndbox><xmin>11</xmin><ymin>21</ymin><xmax>40</xmax><ymax>60</ymax></bndbox>
      </object> ...
    </annotation>

- Boxes follow the VOC devkit: 1-based pixel indices, both ends included, so ``xmin ymin xmax
  ymax`` becomes ``xmin - 1, ymin - 1, xmax, ymax`` pixel edges (as Detectron2 reads VOC).
- ``difficult: 1`` keeps the box flagged ``invalid`` (an ignore region); ``truncated`` and
  ``occluded`` are kept as flags.
- Where: ``path`` is a folder of ``.xml`` files (searched recursively), or a VOC root holding
  ``Annotations/``.  Images: ``JPEGImages/`` beside ``Annotations/`` when it exists (VOC, CVAT),
  else the XML's own folder (labelImg saves them side by side); an XML in a subfolder looks in
  the same subfolder.  The image is ``<filename>``; records are in sorted order of the XML paths.

Errors name the XML file and the line of the offending element.  Files are parsed with the
standard library's expat, which refuses entity-expansion bombs; document type declarations
(never used by VOC) are refused too.  Files are UTF-8 unless their XML declaration names another
encoding (``encoding="ISO-8859-1"``, as older Windows tools write).
"""
from __future__ import annotations

import re
import xml.parsers.expat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtcnn_train.datasets.annotation_text import (ImagePathResolver, parse_flag, parse_number, read_text_lines,
                                                  refuse_duplicate_images)
from mtcnn_train.datasets.labels import LabelFilter
from mtcnn_train.datasets.records import FaceRecord
from mtcnn_train.errors import AnnotationError, UserError

VOC_FLAGS = ("truncated", "occluded")


@dataclass
class Node:
    """An XML element with the line it starts on."""

    tag: str
    line: int
    text: str = ""
    children: list["Node"] = field(default_factory=list)

    def find(self, tag: str) -> "Node | None":
        return next((c for c in self.children if c.tag == tag), None)

    def findall(self, tag: str) -> list["Node"]:
        return [c for c in self.children if c.tag == tag]


_DECLARED_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*\bencoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


def _declared_text(path: Path) -> str | None:
    """The file's text when its XML declaration names an encoding other than UTF-8 (older labelling
    tools on Windows write ISO-8859-1 or cp1252), else None: UTF-8 files go through the common
    reader, which names the line of a bad byte."""
    try:
        with open(path, "rb") as fh:  # the declaration only: most files are UTF-8, read once below
            match = _DECLARED_ENCODING.match(fh.read(200))
    except OSError:
        return None  # read_text_lines words the error
    if match is None:
        return None
    encoding = match.group(1).decode("ascii").lower().replace("_", "-")
    if encoding in ("utf-8", "utf8"):
        return None
    data = path.read_bytes()
    try:
        return data.decode(encoding).replace("\r\n", "\n").replace("\r", "\n")
    except LookupError:
        raise AnnotationError(path, 1, f"unknown encoding {encoding!r} in the XML declaration") from None
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise AnnotationError(path, line, f"not valid {encoding} text, as the XML declaration says") from None


def parse_xml(path: Path) -> Node:
    """The element tree of an XML file, each element with its line; AnnotationError on bad XML."""
    text = _declared_text(path)
    if text is None:
        text = "\n".join(read_text_lines(path))
    parser = xml.parsers.expat.ParserCreate()
    stack: list[Node] = [Node("", 0)]

    def start(tag: str, _attrs: dict) -> None:
        node = Node(tag, parser.CurrentLineNumber)
        stack[-1].children.append(node)
        stack.append(node)

    def end(_tag: str) -> None:
        stack.pop()

    def chars(data: str) -> None:
        stack[-1].text += data

    def doctype(*_args) -> None:
        raise AnnotationError(path, parser.CurrentLineNumber, "XML document type declarations are not accepted")

    parser.StartElementHandler, parser.EndElementHandler = start, end
    parser.CharacterDataHandler, parser.StartDoctypeDeclHandler = chars, doctype
    try:
        parser.Parse(text, True)
    except xml.parsers.expat.ExpatError as exc:
        raise AnnotationError(path, exc.lineno, f"invalid XML: {xml.parsers.expat.ErrorString(exc.code)} "
                                                f"(column {exc.offset + 1})") from None
    return stack[0].children[0]


def _child_text(node: Node, tag: str, path: Path, what: str) -> tuple[str, int]:
    child = node.find(tag)
    if child is None or not child.text.strip():
        raise AnnotationError(path, node.line, f"{what}: missing <{tag}>")
    return child.text.strip(), child.line


def _optional_flag(node: Node, tag: str, path: Path) -> int:
    child = node.find(tag)
    if child is None or not child.text.strip():
        return 0
    return parse_flag(child.text.strip(), path, child.line, tag)


def read_voc_file(xml_file: Path, images_root: Path, labels: LabelFilter = LabelFilter(),
                  name_prefix: str = "") -> FaceRecord:
    """One VOC XML file -> one record; the image is ``images_root/name_prefix<filename>``."""
    root = parse_xml(xml_file)
    if root.tag != "annotation":
        raise AnnotationError(xml_file, root.line, f"expected an <annotation> element, got <{root.tag}>")
    filename, line = _child_text(root, "filename", xml_file, "annotation")
    name = name_prefix + filename.replace("\\", "/")
    boxes, flags = [], []
    for k, obj in enumerate(root.findall("object"), 1):
        label, _ = _child_text(obj, "name", xml_file, f"object {k}")
        decision = labels.decide(label)
        if decision is None:
            continue
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise AnnotationError(xml_file, obj.line, f"object {k} ({label!r}): missing <bndbox>")
        values = []
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            text, value_line = _child_text(bndbox, tag, xml_file, f"object {k} ({label!r}) bndbox")
            values.append(parse_number(text, xml_file, value_line, tag))
        xmin, ymin, xmax, ymax = values
        box = np.array([xmin - 1, ymin - 1, xmax, ymax])
        if box[2] < box[0] or box[3] < box[1]:
            raise AnnotationError(xml_file, bndbox.line, f"object {k} ({label!r}): xmax/ymax before xmin/ymin "
                                                         f"({xmin:g} {ymin:g} {xmax:g} {ymax:g})")
        difficult = _optional_flag(obj, "difficult", xml_file)
        boxes.append(box)
        flags.append([int(difficult or decision == "ignore")] + [_optional_flag(obj, t, xml_file) for t in VOC_FLAGS])
    flag_array = np.array(flags, dtype=np.int32).reshape(-1, 1 + len(VOC_FLAGS))
    return FaceRecord(image_path=ImagePathResolver(images_root, xml_file)(name, line),
                      boxes=np.array(boxes, dtype=np.float64).reshape(-1, 4),
                      flags={key: flag_array[:, j] for j, key in enumerate(("invalid",) + VOC_FLAGS)},
                      name=name, source=f"{xml_file}:{root.line}")


def voc_layout(path: Path, images_root: Path | None) -> tuple[Path, Path]:
    """(folder of the XML files, images folder) of a VOC path (see the module docstring)."""
    xml_dir = path / "Annotations" if (path / "Annotations").is_dir() else path
    if images_root is None:
        jpeg = xml_dir.parent / "JPEGImages"
        images_root = jpeg if jpeg.is_dir() else xml_dir
    return xml_dir, images_root


def read_voc(path: str | Path, images_root: str | Path | None = None, *,
             labels: LabelFilter = LabelFilter()) -> list[FaceRecord]:
    """Read every ``.xml`` under a VOC folder; one :class:`FaceRecord` per file, sorted by path."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: not a folder (expected a VOC root with Annotations/ or a folder of .xml files)")
    xml_dir, root = voc_layout(path, Path(images_root) if images_root is not None else None)
    files = sorted(p for p in xml_dir.rglob("*.xml") if not p.name.startswith("."))
    if not files:
        raise UserError(f"{xml_dir}: no .xml annotation files here")
    records = []
    for xml_file in files:
        folder = xml_file.parent.relative_to(xml_dir).as_posix()
        records.append(read_voc_file(xml_file, root, labels, "" if folder == "." else folder + "/"))
    refuse_duplicate_images(records)
    return records
