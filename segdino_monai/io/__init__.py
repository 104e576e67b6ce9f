"""Files <-> arrays, no model: pictures, the DICOM image reader, ultrasound regions, masks, mask and overlay writers.

The layers above (transforms, data, services) open files only through here. highdicom is never imported here at
module level: the MONAI Label environment runs this package under pydicom 2 without highdicom.
"""
