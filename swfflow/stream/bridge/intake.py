"""What the bridge reads off an incoming message before recording it: an STF's size, checksum
and local path (from the message, else from the file), and a best-effort type and run of an
invalid message for its dead-letter row. File names are validated by the message schema;
paths are only ever built from the bare, validated name."""

from __future__ import annotations

from swfflow.checksum import adler32_file
from swfflow.stream.messages import StfGen


class Rejected(Exception):
    """This message can never be processed: it goes to the dead-letter table with the reason."""


def file_facts(message: StfGen, container: str | None) -> tuple[int, str, str | None]:
    """Size, adler32 and local path of an STF: from the message, else from the file itself
    (the current testbed runner sends neither size nor checksum)."""
    path = local_path(message, container)
    if message.size_bytes is not None and message.checksum is not None:
        return message.size_bytes, message.checksum, path
    if path is None:
        raise Rejected(f"STF {message.filename} has no size/checksum and no readable file "
                       "(no file_url, no run container)")
    import os
    import stat

    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):  # a FIFO or a device would block or never end
            raise Rejected(f"STF {message.filename}: {path} is not a regular file")
        return info.st_size, adler32_file(path), path
    except (OSError, ValueError) as exc:  # ValueError: an embedded NUL (%00 in file_url)
        raise Rejected(f"STF {message.filename} has no size/checksum and its file cannot be "
                       f"read: {getattr(exc, 'strerror', None) or exc} ({path!r})") from None


def local_path(message: StfGen, container: str | None) -> str | None:
    """The STF's path, only ever built from the validated bare file name."""
    import os
    from urllib.parse import unquote, urlsplit

    if message.file_url:
        try:
            parts = urlsplit(message.file_url)
        except ValueError:  # e.g. an unbalanced "[" in the host part
            parts = None
        path = unquote(parts.path) if parts else ""
        if parts and parts.scheme == "file" and "\x00" not in path \
                and os.path.basename(path) == message.filename:
            return path
    if container and os.path.isabs(container):
        direct = os.path.join(container, message.filename)
        nested = os.path.join(container, f"swf.{message.run_id}.run", message.filename)
        return nested if not os.path.exists(direct) and os.path.exists(nested) else direct
    return None


def peek(body: str) -> tuple[str | None, str | None]:
    """Best-effort msg_type and run_id of an invalid message, for the dead-letter row."""
    import json

    try:
        data = json.loads(body)
    except Exception:  # noqa: BLE001 - anything unreadable: no type, no run
        return None, None
    if not isinstance(data, dict):
        return None, None
    pick = lambda key: str(data[key])[:64] if data.get(key) is not None else None
    return pick("msg_type"), pick("run_id")
