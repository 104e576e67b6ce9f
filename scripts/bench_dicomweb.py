"""Instances per minute through ``segdino dicom <series URL> --stow-url``: WADO-RS in, segmentation, STOW-RS out.

A real Orthanc with its DICOMweb plugin (Debian's ``orthanc`` and ``orthanc-dicomweb``, started as the tests start it:
:mod:`tests.orthanc`) holds ``--instances`` copies of a fixture ultrasound image (new UIDs) in one series. The
three steps of the command are timed apart, with the functions it runs: retrieval of the series
(:func:`segdino_monai.services.dicomweb.retrieve`), segmentation (:func:`segdino_monai.services.dicom_batch.run_dicom`,
the tests' tiny random DINOv3 by default, ``--backbone vits16`` for the bundle's ViT-S/16 with random weights) and
STOW-RS of the SEGs (:func:`segdino_monai.services.dicomweb.store_results`); Orthanc is then asked for one SEG per
image.

    python scripts/bench_dicomweb.py --out runs/bench_dicomweb           # 100 instances

Writes ``<out>/dicomweb.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import FIXTURES, TINY_VIT  # noqa: E402
from tests.orthanc import Orthanc  # noqa: E402

IMAGE = FIXTURES / "dicom" / "us" / "pydicom__pydicom" / "examples_rgb_color.dcm"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench_dicomweb"))
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--backbone", choices=["tiny", "vits16"], default="tiny")
    args = parser.parse_args()

    import pydicom
    import torch
    from pydicom.uid import generate_uid

    from segdino_monai.networks import SegDINO
    from segdino_monai.services.dicom_batch import run_dicom
    from segdino_monai.services.dicomweb import retrieve, store_results
    from segdino_monai.services.predictor import BundlePredictor

    orthanc_binary = shutil.which("Orthanc")
    if orthanc_binary is None:
        sys.exit("Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)")
    work = Path(tempfile.mkdtemp(prefix="bench-dicomweb-"))
    kwargs = TINY_VIT if args.backbone == "tiny" else {}
    torch.manual_seed(0)
    checkpoint = SegDINO(backbone_kwargs=kwargs).save_decoder(work / "model.pt")
    overrides = {"network_def#backbone_kwargs": TINY_VIT, "spatial_size": [64, 64]} if args.backbone == "tiny" else {}
    segmenter = BundlePredictor(ROOT / "bundle", "random", checkpoint, "ultrasound", overrides)
    (work / "pacs").mkdir()
    orthanc = Orthanc(orthanc_binary, work / "pacs", {}, dicomweb=True)
    orthanc.start()
    try:
        first = None
        for number in range(1, args.instances + 1):
            ds = pydicom.dcmread(IMAGE)
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.InstanceNumber = number
            ds.save_as(work / "upload.dcm", enforce_file_format=True)
            orthanc.upload(work / "upload.dcm")
            first = first or ds
        url = f"{orthanc.dicomweb_url}/studies/{first.StudyInstanceUID}/series/{first.SeriesInstanceUID}"
        out = work / "out"
        start = time.monotonic()
        files = retrieve(url, out / "dicomweb")
        retrieved = time.monotonic()
        summary = run_dicom(files, out, segmenter, progress=False)
        segmented = time.monotonic()
        stow = store_results(summary.processed, orthanc.dicomweb_url)
        stored = time.monotonic()
        segs = orthanc.request(
            "POST", "/tools/find", json.dumps({"Level": "Instance", "Query": {"Modality": "SEG"}}).encode()
        )
        result = {
            "instances": args.instances,
            "backbone": args.backbone,
            "image": f"{IMAGE.name} ({first.Columns}x{first.Rows}, {first.file_meta.TransferSyntaxUID.name})",
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_1min": round(os.getloadavg()[0], 1),  # other work on the machine slows the segmentation
            "retrieve_s": round(retrieved - start, 2),
            "segment_s": round(segmented - retrieved, 2),
            "stow_s": round(stored - segmented, 2),
            "retrieved_per_minute": round(60 * len(files) / (retrieved - start), 1),
            "stored_per_minute": round(60 * len(stow.stored) / (stored - segmented), 1),
            "instances_per_minute": round(60 * len(stow.stored) / (stored - start), 1),
            "stored": len(stow.stored),
            "stow_failed": len(stow.failed),
            "segs_in_orthanc": len(segs),
        }
    finally:
        orthanc.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dicomweb.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    return 0 if result["segs_in_orthanc"] == args.instances == result["stored"] else 1


if __name__ == "__main__":
    sys.exit(main())
