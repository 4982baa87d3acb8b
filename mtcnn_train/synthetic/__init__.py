"""The embedded synthetic dataset: rendered faces written in the real WIDER FACE, CelebA and FDDB formats.

``make_synthetic(out_dir)`` renders four sets, each in the layout its real counterpart uses, so
that every reader, sampler, trainer and evaluator runs on it unchanged:

* ``wider/``  WIDER FACE train and val splits (``wider_face_split/wider_face_<split>_bbx_gt.txt`` and
  ``WIDER_<split>/images/<event>/<name>.jpg``): 0 to 8 faces per image, 12 to 300 px, with WIDER's
  blur / expression / illumination / invalid / occlusion / pose flags set from how each face was drawn;
* ``celeba/`` a CelebA-style landmark set (``Anno/list_bbox_celeba.txt``,
  ``Anno/list_landmarks_celeba.txt``, ``img_celeba/*.jpg``): one large face per image, integer
  landmarks;
* ``fddb/``   an FDDB-style evaluation set (``FDDB-folds/FDDB-fold-XX-ellipseList.txt`` +
  ``FDDB-fold-XX.txt``, ``originalPics/<yyyy>/<mm>/<dd>/big/img_<k>.jpg``) whose ellipses cover the
  whole head, hair included, as FDDB's do;
* ``summary.json``: counts, seed, sizes and paths (also marks the folder as a synthetic set).

Ground truth is exact by construction.  Each face starts from an integer box (WIDER stores
integers); the face ellipse is then solved so that its tight axis-aligned box *is* that box, even
when the face is rolled.  Landmarks are chosen before anything is drawn (rounded to integers for
CelebA, to 2 decimals elsewhere) and the eyes, nose and mouth are drawn around them, at sub-pixel
precision.  Coordinates follow docs/CONVENTIONS.md (pixel edges).

Every image has its own random stream, seeded from ``(seed, split, index)``, so an image does not
depend on how many images are rendered or in which order, and two runs with one seed write
byte-identical files.

The images are meant to make a detector learn the *shape* of a face: backgrounds carry noise
textures, gradients, shapes, lines and text, and face-like distractors that are not faces
(featureless skin-coloured ellipses and blobs, the back of a head, dark dot pairs on non-skin
blobs, balls, clocks and wheels).

A generator, not a reader, so it lives outside :mod:`mtcnn_train.datasets`: :mod:`.styles` (what
each kind of image holds), :mod:`.drawing` (sub-pixel primitives, colours), :mod:`.faces` (one
face), :mod:`.scenes` (whole images), :mod:`.files` (the WIDER / CelebA / FDDB files); this module
is the entry point (:func:`make_synthetic`, :func:`is_synthetic_set`, :func:`synthetic_config`).
"""
from __future__ import annotations

import json
from pathlib import Path

from mtcnn_train.errors import UserError
from mtcnn_train.io import atomic_write_json
from mtcnn_train.synthetic.files import (FACE_PROFILES, FDDB_FOLDS, JPEG_QUALITY, SUMMARY_FILE, celeba_image, fddb_image, image_rng,
                                         synthetic_paths, wider_image, write_celeba_set, write_fddb_set, write_wider_split)

__all__ = ["FORMAT_VERSION", "GENERATOR", "celeba_image", "fddb_image", "format_summary", "image_rng",
           "is_synthetic_set", "make_synthetic", "split_sizes", "synthetic_config", "synthetic_paths", "wider_image"]

#: Written into summary.json; a folder whose summary names this generator may be overwritten.
GENERATOR = "mtcnn-train make-synthetic"
FORMAT_VERSION = 1


def split_sizes(num_images: int, celeba_images: int | None = None, eval_images: int | None = None) -> dict[str, int]:
    """How many images each set gets for ``num_images`` training images (``celeba_images`` /
    ``eval_images``: CelebA images and WIDER val / FDDB images instead of the defaults)."""
    return {"wider_train": num_images, "wider_val": max(1, (num_images if eval_images is None else eval_images) // 4),
            "celeba": num_images if celeba_images is None else celeba_images,
            "fddb": max(FDDB_FOLDS, (num_images if eval_images is None else eval_images) // 2)}


def synthetic_config(out_dir: str | Path) -> dict:
    """The ``data`` section of a config that trains on the synthetic set in ``out_dir``
    (``config_from_dict`` accepts it; the FDDB folds are ``1..FDDB_FOLDS``)."""
    paths = synthetic_paths(out_dir)
    return {"data": {"wider_root": str(paths["wider_root"]), "wider_split": "train",
                     "landmarks": str(paths["celeba_landmarks"]), "landmarks_format": "celeba",
                     "fddb_root": str(paths["fddb_root"])}}


def is_synthetic_set(out_dir: str | Path) -> bool:
    """True when ``out_dir`` holds a set written by :func:`make_synthetic` (so rewriting it is safe)."""
    summary = Path(out_dir) / SUMMARY_FILE
    try:
        return json.loads(summary.read_text(encoding="utf-8")).get("generator") == GENERATOR
    except (OSError, ValueError, AttributeError):
        return False


def make_synthetic(out_dir: str | Path, num_images: int = 200, seed: int = 0, progress: bool = False, *,
                   faces: str = "demo", landmark_faces: int | None = None, celeba_images: int | None = None,
                   eval_images: int | None = None) -> dict:
    """Render the synthetic WIDER (train + val), CelebA and FDDB sets into ``out_dir``.

    Returns the summary that is also written to ``out_dir/summary.json`` (written last, so a
    summary means a complete set).  Two calls with the same arguments write identical bytes.

    Full-size simulation (``benchmarks/scale.py``): ``faces="wider"`` draws WIDER train's face
    count and face sizes (:data:`~mtcnn_train.synthetic.styles.WIDER_PROFILE_STYLE`);
    ``landmark_faces`` gives the CelebA list that many entries, reusing ``celeba_images``
    rendered images (default: ``num_images``, at most ``landmark_faces``); ``eval_images``
    sizes WIDER val and FDDB instead of ``num_images``.  The defaults render what they always did.
    """
    if num_images < 1:
        raise UserError(f"--images must be at least 1, got {num_images}")
    if faces not in FACE_PROFILES:
        raise UserError(f"--faces must be one of {', '.join(FACE_PROFILES)}, got {faces!r}")
    image_rng(seed, "wider_train", 0)  # checks the seed before anything is written
    out = Path(out_dir)
    if celeba_images is None and landmark_faces is not None:
        celeba_images = min(num_images, landmark_faces)
    sizes = split_sizes(num_images, celeba_images, eval_images)
    if sizes["celeba"] < 1 or (landmark_faces is not None and landmark_faces < sizes["celeba"]):
        raise UserError(f"--landmark-faces ({landmark_faces}) must be at least the CelebA images rendered "
                        f"({sizes['celeba']}), which must be at least 1")
    splits = {}
    _, splits["wider_train"] = write_wider_split(out, seed, "wider_train", sizes["wider_train"], progress, faces)
    _, splits["wider_val"] = write_wider_split(out, seed, "wider_val", sizes["wider_val"], progress, faces)
    _, splits["celeba"] = write_celeba_set(out, seed, sizes["celeba"], progress, landmark_faces)
    _, splits["fddb"] = write_fddb_set(out, seed, sizes["fddb"], progress)
    paths = synthetic_paths(out)
    summary = {
        "generator": GENERATOR,
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "images": num_images,
        **({"faces": faces} if faces != "demo" else {}),
        **({"landmark_faces": landmark_faces} if landmark_faces is not None else {}),
        "jpeg_quality": JPEG_QUALITY,
        "splits": splits,
        # Relative to the set's folder, so the summary does not change when the folder moves.
        "paths": {key: str(path.relative_to(out)) for key, path in paths.items() if key != "summary"},
        "fddb_folds": list(range(1, FDDB_FOLDS + 1)),
    }
    atomic_write_json(paths["summary"], summary)
    return summary


def format_summary(summary: dict, out_dir: str | Path) -> str:
    """A few lines for the terminal: images, faces and face sizes per set, and where they are."""
    out = Path(out_dir)
    paths = summary["paths"]
    s = summary["splits"]

    def line(label: str, stats: dict, where: str) -> str:
        return (f"  {label:<15} {stats['images']:>5} images {stats['faces']:>6} faces "
                f"(short side {stats['face_size_min']}-{stats['face_size_max']} px, "
                f"{stats['images_without_faces']} without faces, {stats['distractors']} distractors)"
                f" -> {out / where}")

    return "\n".join([
        f"synthetic set (seed {summary['seed']}) in {out}",
        line("wider train", s["wider_train"], paths["wider_train_annotations"]),
        line("wider val", s["wider_val"], paths["wider_val_annotations"]),
        line("celeba", s["celeba"], paths["celeba_landmarks"]),
        line(f"fddb ({s['fddb']['folds']} folds)", s["fddb"], paths["fddb_root"]),
    ])
