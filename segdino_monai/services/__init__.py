"""What serves the model: one predictor, the DICOM batch run, the DICOM node and sender, DICOMweb, video, cine loops.

:mod:`~segdino_monai.services.predictor` loads the bundle's ``inference.json`` once for all of them; the DICOM batch
run is ``dicom_batch`` (the run loop) over ``dicom_inputs``, ``staging`` and ``dicom_outputs``. Nothing below imports
from here; the modules are imported on use (the node and DICOMweb need optional packages).
"""
