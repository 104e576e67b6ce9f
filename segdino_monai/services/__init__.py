"""What serves the model: the DICOM batch run, the DICOM node and sender, DICOMweb, video files and streams, cine loops.

Nothing below imports from here; the modules are imported on use (the node and DICOMweb need optional packages).
"""
