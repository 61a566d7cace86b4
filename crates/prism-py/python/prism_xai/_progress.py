"""Progress display for the dataset jobs: a tqdm bar where tqdm is installed (``tqdm.auto``
picks the notebook widget or the terminal bar), else ``logging`` lines. Never ``print``."""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any, Callable, Dict, Optional, Union

logger = logging.getLogger("prism_xai")

ProgressArg = Union[bool, None, Callable[[Dict[str, Any]], None]]

# Without tqdm: one log line at most this often (seconds), plus the first and the last.
_LOG_EVERY_S = 10.0


def _tqdm():
    try:
        # tqdm.auto warns (on stderr) when it runs in Jupyter without ipywidgets, then uses its
        # text bar: that is fine, the warning is noise.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from tqdm.auto import tqdm  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001 - tqdm missing or broken: fall back to logging
        return None
    return tqdm


class Progress:
    """A progress callback for Prism's jobs (``progress=`` of ``_prism.attribute`` and others).

    Events are dicts; ``{"event": ..., "done": k, "total": n}`` move the bar (a new ``total`` or
    ``stage`` starts a new bar), any other event is logged at INFO. Use it as a context manager
    so that the bar is closed even when the job raises (Ctrl-C included)."""

    def __init__(self, desc: str, user: Optional[Callable[[Dict[str, Any]], None]] = None,
                 display: bool = True):
        self.desc = desc
        self.user = user
        self.display = display
        self._tqdm = _tqdm() if display else None
        self._bar = None
        self._key = None
        self._last_log = 0.0

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __call__(self, event: Dict[str, Any]) -> None:
        if self.user is not None:
            self.user(event)
        if not self.display:
            return
        kind = event.get("event", "")
        done, total = event.get("done"), event.get("total")
        stage = event.get("stage")
        label = f"{self.desc} {stage}" if stage else self.desc
        if isinstance(done, int) and isinstance(total, int):
            self._advance(kind, label, done, total, event)
        else:
            logger.info("%s: %s", label, _describe(event))

    def _advance(self, kind: str, label: str, done: int, total: int, event: Dict[str, Any]) -> None:
        key = (label, total)
        if self._tqdm is not None:
            if self._bar is None or self._key != key:
                self.close()
                self._bar = self._tqdm(total=total, initial=done, desc=label, unit="sample")
                self._key = key
                if event.get("resumed"):
                    self._bar.set_postfix_str("resumed", refresh=True)
            else:
                self._bar.update(done - self._bar.n)
            return
        now = time.monotonic()
        new = self._key != key
        if new or done >= total or now - self._last_log >= _LOG_EVERY_S:
            self._key = key
            self._last_log = now
            extra = " (resumed)" if event.get("resumed") else ""
            logger.info("%s: %d/%d%s", label, done, total, extra)


def _describe(event: Dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in event.items())


def make(desc: str, progress: ProgressArg) -> Progress:
    """``progress=True``: display; ``False``/``None``: nothing; a callable: called with every
    event (and nothing displayed)."""
    if callable(progress):
        return Progress(desc, user=progress, display=False)
    return Progress(desc, display=bool(progress))
