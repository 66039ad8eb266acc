"""kombu's filesystem transport, the server-less broker of `make demo` and `simulate`, with
messages that appear whole.

kombu writes a message file in place (create, then write), and a consumer lists the folder and
reads whatever is there without waiting for the writer. A consumer that came at that instant read
an empty file, and the worker stopped with an unrecoverable JSONDecodeError (the message was lost
with it). Here a message is written under a name that consumers skip and then renamed into place,
which is atomic within one directory. Registered as the `filesystem` transport in secai/celery.py.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        """Put `payload` onto `queue`: the same file name as kombu's, visible only once complete."""
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # A consumer takes only names of the form "<stamp>.<queue>.msg"; this one starts with a dot.
        partial = os.path.join(self.data_folder_out, f".{name}.partial")
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
