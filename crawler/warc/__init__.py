"""WARC 1.1 (ISO 28500:2017) writing for newsarchive.

Public API (see :mod:`crawler.warc.writer` for details)::

    WarcFileWriter      rolling, gzip-per-record WARC file writer built on warcio
    RecordPointer       (file, offset, length, payload_digest, record_id, warc_date, record_type)
    Revisit             what a revisit record refers to (profile, URI, date, record id)
    PayloadDigestIndex  payload digest → first capture, for revisits (crawler.warc.digests)
    recover_open_files  repair ``*.warc.gz.open`` files left by a killed process
    sha1_base32_digest  the ``sha1:<BASE32>`` digest form used in WARC headers

A crawl's writer and index with the response/revisit rules: ``crawler.warc.session``
(``CaptureSession``), run in the WARC writer process ``crawler.warc.sink``.
"""

from crawler.warc.digests import Capture, PayloadDigestIndex
from crawler.warc.writer import (
    PROFILE_IDENTICAL_PAYLOAD,
    PROFILE_SERVER_NOT_MODIFIED,
    RecordPointer,
    Revisit,
    WarcFileWriter,
    recover_open_files,
    sha1_base32_digest,
)

__all__ = [
    "PROFILE_IDENTICAL_PAYLOAD",
    "PROFILE_SERVER_NOT_MODIFIED",
    "Capture",
    "PayloadDigestIndex",
    "RecordPointer",
    "Revisit",
    "WarcFileWriter",
    "recover_open_files",
    "sha1_base32_digest",
]
