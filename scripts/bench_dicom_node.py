"""Instances per minute through ``segdino dicom-node``: concurrent associations send images, Orthanc receives SEGs.

A real Orthanc (Debian's ``orthanc``, started as the tests start it: :mod:`tests.orthanc`) is the destination;
the node runs as a subprocess with the tests' tiny random DINOv3 and a random decoder (``--backbone tiny``, the
default: the numbers show the node's plumbing, reading, writing and sending, not the network) or the bundle's
ViT-S/16 with random weights (``--backbone vits16``: the network's cost on this CPU). ``--associations`` pynetdicom
SCUs send ``--instances`` copies of a fixture ultrasound image (new UIDs) at once; the clock runs from the first
C-STORE until every SEG is confirmed sent in the node's journal, and Orthanc is then asked for one SEG per image.

    python scripts/bench_dicom_node.py --out runs/bench_node            # 4 associations, 100 instances

Writes ``<out>/dicom_node.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import FIXTURES, TINY_VIT  # noqa: E402
from tests.orthanc import ORTHANC_AET, Orthanc, free_port  # noqa: E402

IMAGE = FIXTURES / "dicom" / "us" / "pydicom__pydicom" / "examples_rgb_color.dcm"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench_node"))
    parser.add_argument("--associations", type=int, default=4)
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--backbone", choices=["tiny", "vits16"], default="tiny")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up after this many seconds")
    args = parser.parse_args()

    import pydicom
    import torch
    from pydicom.uid import generate_uid
    from pynetdicom import AE

    from segdino_monai.networks import SegDINO

    orthanc_binary = shutil.which("Orthanc")
    if orthanc_binary is None:
        sys.exit("Orthanc is not installed (apt-get install orthanc)")
    work = Path(tempfile.mkdtemp(prefix="bench-node-"))
    kwargs = TINY_VIT if args.backbone == "tiny" else {}
    torch.manual_seed(0)
    checkpoint = SegDINO(backbone_kwargs=kwargs).save_decoder(work / "model.pt")
    (work / "pacs").mkdir()
    orthanc = Orthanc(orthanc_binary, work / "pacs", {})
    orthanc.start()
    port = free_port()
    command = [sys.executable, "-m", "segdino_monai.cli", "dicom-node", "--port", str(port)]
    command += ["--forward", f"{ORTHANC_AET}@127.0.0.1:{orthanc.dicom_port}", "--store-dir", str(work / "store")]
    command += ["--backbone-weights", "random", "--checkpoint", str(checkpoint), "--modality", "ultrasound"]
    if args.backbone == "tiny":
        command += ["--set", f"network_def#backbone_kwargs={TINY_VIT!r}", "--set", "spatial_size=[64, 64]"]
    log = open(work / "node.log", "wb")  # noqa: SIM115 (the node writes it until it stops)
    node = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for_echo(port, node)
        images = []
        for _ in range(args.instances):
            ds = pydicom.dcmread(IMAGE)
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            images.append(ds)
        batches = [images[i :: args.associations] for i in range(args.associations)]
        statuses: list[int] = []

        def send(batch: list) -> None:
            ae = AE(ae_title="BENCHSCU")
            ae.add_requested_context(batch[0].SOPClassUID, batch[0].file_meta.TransferSyntaxUID)
            assoc = ae.associate("127.0.0.1", port, ae_title="SEGDINO")
            statuses.extend(int(assoc.send_c_store(ds).Status) for ds in batch)
            assoc.release()

        start = time.monotonic()
        threads = [threading.Thread(target=send, args=(batch,)) for batch in batches]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        received = time.monotonic() - start
        journal = work / "store" / "journal"
        while time.monotonic() - start < args.timeout:
            states = [json.loads(p.read_text())["state"] for p in journal.glob("*.json")]
            if len(states) == args.instances and all(s in ("sent", "failed", "no-seg") for s in states):
                break
            time.sleep(0.5)
        elapsed = time.monotonic() - start
        segs = orthanc.request(
            "POST", "/tools/find", json.dumps({"Level": "Instance", "Query": {"Modality": "SEG"}}).encode()
        )
        result = {
            "associations": args.associations,
            "instances": args.instances,
            "backbone": args.backbone,
            "image": f"{IMAGE.name} ({images[0].Columns}x{images[0].Rows})",
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "c_store_success": sum(s == 0 for s in statuses),
            "all_received_s": round(received, 2),
            "all_sent_s": round(elapsed, 2),
            "segs_in_orthanc": len(segs),
            "sent": states.count("sent"),
            "instances_per_minute": round(60 * states.count("sent") / elapsed, 1),
        }
    finally:
        node.terminate()
        node.wait(timeout=120)
        orthanc.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dicom_node.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    return 0 if result["segs_in_orthanc"] == args.instances == result["sent"] else 1


def _wait_for_echo(port: int, node: subprocess.Popen, timeout: float = 120.0) -> None:
    from pynetdicom import AE

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and node.poll() is None:
        ae = AE(ae_title="BENCHSCU")
        ae.add_requested_context("1.2.840.10008.1.1")
        assoc = ae.associate("127.0.0.1", port, ae_title="SEGDINO")
        if assoc.is_established:
            assoc.release()
            return
        time.sleep(0.5)
    sys.exit(f"the node did not start (exit {node.poll()})")


if __name__ == "__main__":
    sys.exit(main())
