from __future__ import annotations

from segdino_monai.data.datalist import DatasetError, build_datalist, prepare_datalist, write_datalist
from segdino_monai.data.datalist_reading import (
    Datalist,
    check_output_dir,
    check_splits,
    inference_datalist,
    list_images,
    load_datalist,
    resolve_datalist,
)
from segdino_monai.data.layouts import LAYOUTS, LayoutScan, detect_layout, register_layout, scan_layout
from segdino_monai.data.pairing import DEFAULT_MASK_SUFFIXES, IMAGE_EXTENSIONS, Pair, Problem, pair_files
from segdino_monai.data.splits import split_pairs
from segdino_monai.data.validation import DatasetReport, check_image, validate_scan
from segdino_monai.io.masks import LoadMask, LoadMaskd

__all__ = [
    "Datalist",
    "check_output_dir",
    "check_splits",
    "inference_datalist",
    "list_images",
    "load_datalist",
    "resolve_datalist",
    "DEFAULT_MASK_SUFFIXES",
    "IMAGE_EXTENSIONS",
    "LAYOUTS",
    "DatasetError",
    "DatasetReport",
    "LayoutScan",
    "LoadMask",
    "LoadMaskd",
    "Pair",
    "Problem",
    "build_datalist",
    "check_image",
    "detect_layout",
    "pair_files",
    "prepare_datalist",
    "register_layout",
    "scan_layout",
    "split_pairs",
    "validate_scan",
    "write_datalist",
]
