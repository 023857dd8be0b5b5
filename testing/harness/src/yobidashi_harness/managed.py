"""`with thing:` starts a child (a server, a process, a cluster) and closes it on the way out."""

from __future__ import annotations

from typing import Self


class Managed:
    def start(self) -> Self:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()  # what a failed start left behind (a child, a temporary store)
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.close()
