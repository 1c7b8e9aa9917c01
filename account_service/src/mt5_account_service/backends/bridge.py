"""Code that runs inside the RPyC bridge, next to the ``MetaTrader5`` module.

The production bridge is an RPyC classic server in the terminal's Windows Python
(``python -m mt5linux``): every client connection gets its own thread, so two connections can
call ``MetaTrader5.initialize`` at the same time, and nothing in the module stops them. The
account service sends :data:`SERVER_HELPER` on each new connection (it runs under Windows
Python 3.11 too, so it uses nothing newer), and ``rpyc_server`` applies the same
:func:`guard_initialize` to the simulated terminal it serves, so both bridges behave alike.
"""

from __future__ import annotations

import base64
import inspect
import struct
import textwrap
from typing import Any

#: The first words of the error a guarded bridge raises for an ``initialize`` while another
#: runs; the client recognises it by them (an RPyC remote RuntimeError keeps its message).
INITIALIZE_BUSY = "mt5farm: initialize busy:"


def guard_initialize(module: Any) -> None:
    """Wrap ``module.initialize`` so that at most one runs at a time in this process.

    A call while another runs is refused at once with ``RuntimeError(INITIALIZE_BUSY ...)``
    (it does not queue: a client that gave up and came back would otherwise pile calls up
    behind a hung one). Idempotent: a module already guarded is left alone, and two
    connections guarding it at once end with one working guard (the last assignment wins, or
    one wraps the other). Self-contained: its source is sent to the bridge as it is.
    """
    import threading
    import time

    if getattr(module.initialize, "_mt5farm_guarded", False):
        return
    original = module.initialize
    lock = threading.Lock()
    started = [0.0]

    def initialize(*args: Any, **kwargs: Any) -> Any:
        if not lock.acquire(False):
            raise RuntimeError(
                "mt5farm: initialize busy: an initialize() started %.0f s ago is still running in the bridge; "
                "not starting a second one beside it (try again when it has answered)" % (time.monotonic() - started[0])
            )
        started[0] = time.monotonic()
        try:
            return original(*args, **kwargs)
        finally:
            lock.release()

    initialize._mt5farm_guarded = True  # type: ignore[attr-defined]
    module.initialize = initialize


def _source(function: Any) -> str:
    return textwrap.dedent(inspect.getsource(function)).replace("from __future__ import annotations\n", "")


def _plain(value: Any) -> Any:
    """Builtins only: namedtuples and dicts of the module as dicts, sequences as lists, numpy
    structured arrays (bars, ticks) as ``{RECORDS: [[field, numpy type]], "data": base64 of
    the packed array}`` (a tenth of the work of JSON records on both sides: 10,000 bars in a
    few milliseconds; :func:`records` on the client turns it back)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    names = getattr(getattr(value, "dtype", None), "names", None)
    if names:  # copy_rates_*/copy_ticks_*: a numpy structured array, sent as its packed bytes
        import base64

        fields = [[name, value.dtype.fields[name][0].str] for name in names]
        packed = value.astype([(name, kind) for name, kind in fields])  # no alignment padding
        return {RECORDS: fields, "data": base64.b64encode(packed.tobytes()).decode("ascii")}
    if hasattr(value, "_asdict"):
        return {str(k): _plain(v) for k, v in value._asdict().items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def _to_json(value: Any) -> str:
    """``value`` as JSON text of builtins: one round trip brings a whole result back."""
    import json

    return json.dumps(_plain(value))


#: The key that marks a numpy structured array sent as columns and rows (see _plain).
RECORDS = "__mt5farm_records__"


#: numpy's type strings of the fields MT5's arrays have, as struct format codes.
_STRUCT_CODES = {
    "<i8": "q",
    "<u8": "Q",
    "<f8": "d",
    "<i4": "i",
    "<u4": "I",
    "<i2": "h",
    "<u2": "H",
    "<f4": "f",
    "|i1": "b",
    "|u1": "B",
    "|b1": "?",
}


def records(value: Any) -> Any:
    """A bridge result with its structured array (see _plain) as a list of dicts again,
    decoded with struct (no numpy in the service's memory); ValueError for a field type
    MT5's arrays do not have."""
    if not (isinstance(value, dict) and RECORDS in value):
        return value
    fields = [(str(name), str(kind)) for name, kind in value[RECORDS]]
    unknown = [kind for _, kind in fields if kind not in _STRUCT_CODES]
    if unknown:
        raise ValueError(f"the bridge sent an array with field types the service cannot read: {unknown}")
    layout = struct.Struct("<" + "".join(_STRUCT_CODES[kind] for _, kind in fields))
    names = [name for name, _ in fields]
    return [dict(zip(names, row, strict=True)) for row in layout.iter_unpack(base64.b64decode(value["data"]))]


#: Run once per connection in the bridge, after mt5linux's own ``import MetaTrader5 as mt5``:
#: defines ``_plain``/``_to_json`` (results come back as JSON, no remote proxy escapes) and
#: guards ``mt5.initialize`` for the whole bridge process.
SERVER_HELPER = "\n".join(
    [
        "from typing import Any",
        f"RECORDS = {RECORDS!r}",
        _source(_plain),
        _source(_to_json),
        _source(guard_initialize),
        "guard_initialize(mt5)",
    ]
)
