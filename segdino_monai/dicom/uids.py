"""UIDs of the objects written beside a SEG (Secondary Capture, SR): derived, so that a rewrite gives the same UIDs.

A DICOM SEG gets new UIDs each time it is written (``segdino dicom --overwrite`` makes a new SEG). The Secondary
Capture overlay and the SR measurement report that go with it take UIDs derived from the source instance, the SEG
they accompany and what they are (pydicom's ``generate_uid`` with these as entropy sources: a SHA-512 hash under
pydicom's UID root): writing them again for the same SEG (the node redoing a folder, a test) gives the same UIDs, so
a PACS replaces (or keeps) one copy, and an SR of a given UID always references the same SEG.
"""

from __future__ import annotations

__all__ = ["derived_uid"]


def derived_uid(source_uid: str, seg_uid: str | None, what: str) -> str:
    """The UID of ``what`` (``"sc-series"``, ``"sc-frame-3"``, ``"sr"``, ...) derived from the source and its SEG.

    Args:
        source_uid: the source image's SOP Instance UID.
        seg_uid: the SOP Instance UID of the SEG the object accompanies (``None`` when there is no SEG).
        what: the object and role, distinct for every UID of one source.
    """
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=["segdino-monai", str(source_uid), str(seg_uid or "no SEG"), what]))
