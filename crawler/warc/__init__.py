"""WARC 1.1 (ISO 28500:2017) writing for newsarchive.

Public API (see :mod:`crawler.warc.writer` for details)::

    WarcFileWriter      rolling, gzip-per-record WARC file writer built on warcio
    RecordPointer       (file, offset, length, payload_digest, record_id, warc_date)
    recover_open_files  repair ``*.warc.gz.open`` files left by a killed process
    sha1_base32_digest  the ``sha1:<BASE32>`` digest form used in WARC headers
"""

from crawler.warc.writer import (
    RecordPointer,
    WarcFileWriter,
    recover_open_files,
    sha1_base32_digest,
)

__all__ = [
    "RecordPointer",
    "WarcFileWriter",
    "recover_open_files",
    "sha1_base32_digest",
]
