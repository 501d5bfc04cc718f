"""The contract server's file cache: ``file_server/upload_cache_file`` (multipart, the file
stored under the last element of the name it was sent with, never overwritten),
``file_server/validate_cache_file`` (``FOUND:<host>:<name>`` for a file of the caller's with
that size and gzip CRC, as the real server answers prun's ``reuseSandbox``) and
``GET /cache/NAME``, which production's Apache serves from the cache folder."""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass, field

from swfflow.testing.panda_http import envelope, typed_arg

# the real server's answers (pandaserver/api/v1/file_server_api.py, DBProxy.checkSandboxFile)
OVERWRITE = "ERROR: cannot overwrite file"
NOT_FOUND = "NOTFOUND"
HOST = ""  # the real server records no host name when it is not behind its load balancer


@dataclass
class FileCache:
    files: dict[str, bytes] = field(default_factory=dict)
    # (size, gzip CRC) → name, for the files a user uploaded (reuseSandbox)
    registered: dict[tuple[int, str], str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def upload(self, args: dict, method: str) -> dict:
        upload = args.get("file")
        if not isinstance(upload, tuple):
            return envelope(False, "Argument error: missing a required argument: 'file'")
        sent_name, content = upload
        name = sent_name.split("/")[-1]
        with self.lock:
            if name in self.files:
                return envelope(False, OVERWRITE)
            self.files[name] = content
            if len(content) >= 8:  # the real server reads the CRC from the gzip footer
                self.registered[(len(content), str(struct.unpack("II", content[-8:])[0]))] = \
                    sent_name
        return envelope(True)

    def validate(self, args: dict, method: str) -> dict:
        size = typed_arg(args, "file_size", int, method=method)
        checksum = str(args.get("checksum"))
        with self.lock:
            name = self.registered.get((size, checksum))
        return envelope(True, f"FOUND:{HOST}:{name}") if name else envelope(False, NOT_FOUND)

    def get(self, name: str) -> bytes | None:
        with self.lock:
            return self.files.get(name)
