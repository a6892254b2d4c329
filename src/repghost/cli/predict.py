"""`repghost predict`."""

from __future__ import annotations

import sys

from .args import COUNT, FRACTION, input_file, output_dir
from .errors import work_errors


def _cmd_predict(args) -> int:
    from ..deploy.predict import predict

    with work_errors(RuntimeError):  # a runtime that fails on the file
        report = predict(args.model, args.sources, out=args.out, topk=args.topk, conf=args.conf,
                         max_det=args.max_det, runtime=args.runtime, threads=args.threads,
                         batch_size=args.batch_size, progress=sys.stderr.isatty() or not args.quiet,
                         log=None if args.quiet else print)
    print(report.summary())
    if report.skipped:
        print("unreadable: " + ", ".join(report.skipped))
    if report.written:
        tables = [p for p in report.written if p.suffix != ".png"]
        images = len(report.written) - len(tables)
        print("wrote " + ", ".join(map(str, tables)) + (f" and {images} annotated images in {args.out}" if images
                                                        else ""))
    return 0


def add_predict(sub) -> None:
    from ..names import FILE_RUNTIMES

    p = sub.add_parser(
        "predict", help="run any model file on images, folders, globs or videos",
        description="Run a classifier or detector file of any format repghost writes (checkpoint, safetensors, "
                    "TorchScript, ONNX / int8, OpenVINO, LiteRT, MNN, ncnn) on its own runtime, each image "
                    "prepared by the file's own preprocessing contract. SOURCE: image files, folders (searched "
                    "recursively), glob patterns ('photos/*.jpg'), video files (needs pip install "
                    "'repghost[video]'). A classifier prints the top-k classes and probabilities per image and, "
                    "with --out, writes predictions.csv and predictions.jsonl; a detector prints its detections "
                    "and, with --out, draws the boxes (and Mask R-CNN's masks) on each image (OUT/<name>.png) "
                    "and writes COCO-style results (OUT/detections.json: bbox xywh in the image's pixels). "
                    "Unreadable images are skipped, named and counted; the images per second come last. Exit "
                    "codes: 0 done, 2 bad arguments or sources (an empty folder, no match, a video without a "
                    "decoder; nothing written), 1 a model file that cannot be run, 130 interrupted.")
    p.add_argument("model", type=lambda t: input_file(t, "model file"), help="model file of any format")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="image, folder, glob pattern or video")
    p.add_argument("--out", default=None, type=output_dir,
                   help="directory for the results and annotated images (default: print only)")
    p.add_argument("--topk", type=COUNT, default=5, help="classes per image (classifiers; default 5)")
    p.add_argument("--conf", type=FRACTION, default=0.25, help="minimum detection score (default 0.25)")
    p.add_argument("--max-det", type=COUNT, default=100, help="most detections per image (default 100)")
    p.add_argument("--runtime", choices=FILE_RUNTIMES, default=None,
                   help="runtime for a file that can run on several (an .onnx file: onnxruntime or openvino) "
                        "(default: the file's own)")
    p.add_argument("--threads", type=COUNT, default=None, help="CPU threads (default: torch's setting)")
    p.add_argument("--batch-size", type=COUNT, default=1, help="images per call of the model (default 1)")
    p.add_argument("--quiet", action="store_true", help="no line per image; only the summary")
    p.set_defaults(func=_cmd_predict)
