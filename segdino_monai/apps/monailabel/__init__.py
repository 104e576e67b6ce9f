"""The MONAI Label app serving the SegDINO bundle (model ``segdino``), its environment and its server launcher.

``main.py`` and ``lib/`` are the app as MONAI Label lays apps out; they import ``monailabel`` and run only in the
MONAI Label environment (``segdino label-env``). ``environment`` and ``server`` run in the main environment.
"""
