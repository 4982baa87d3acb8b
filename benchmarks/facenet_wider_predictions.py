"""facenet-pytorch's own MTCNN detections on a WIDER-format list, in the official prediction layout.

For comparing the published detector's WIDER AP with ours, scored by the same code::

    /path/to/venv-with-facenet/bin/python benchmarks/facenet_wider_predictions.py \
        --annotations ANN.txt --images DIR --out PRED_DIR
    mtcnn-train eval wider --annotations ANN.txt --images DIR --predictions PRED_DIR --out REPORT_DIR

Needs facenet-pytorch (and its torch/torchvision pair) in the interpreter that runs it, plus this
package on the path (``PYTHONPATH=.``) for the WIDER reader and writer.  Boxes are converted from
facenet-pytorch's inclusive pixel convention to pixel edges as in ``weights_import.facenet_to_edges``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotations", required=True, type=Path)
    parser.add_argument("--images", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()

    import torch
    from facenet_pytorch import MTCNN

    from mtcnn_train.datasets.wider import read_wider
    from mtcnn_train.evaluation.wider import prediction_key, write_predictions
    from mtcnn_train.io import load_image
    from mtcnn_train.detection.weights_import import facenet_to_edges

    torch.set_num_threads(2)
    detector = MTCNN(keep_all=True, device="cpu", min_face_size=20, factor=0.709, thresholds=[0.6, 0.7, 0.7])
    predictions = {}
    for record in read_wider(args.annotations, args.images):
        image = load_image(record.image_path)
        boxes, probs, points = detector.detect(image, landmarks=True)
        if boxes is None:
            rows = np.zeros((0, 5))
        else:
            edges, _ = facenet_to_edges(np.asarray(boxes), np.asarray(points))
            rows = np.concatenate([edges[:, :2], edges[:, 2:] - edges[:, :2], np.asarray(probs)[:, None]], 1)
        predictions[prediction_key(record.name)] = rows
    write_predictions(args.out, predictions)
    print(f"wrote {len(predictions)} prediction files to {args.out}")


if __name__ == "__main__":
    main()
