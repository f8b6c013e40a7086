"""The exceptions of the signaling layer: `Refused` for a client message, `RedisUnavailable` at start.

A single refusal type lets the event handlers tell "the client did something wrong" (answer with an
`error` event and a negative ack, keep serving) apart from "the server has a bug" (log the
traceback, still keep serving).
"""


class Refused(ValueError):
    """A client message that breaks the protocol; `str(err)` is shown to that client."""


class RedisUnavailable(RuntimeError):
    """``--redis``: Redis cannot be reached, or refused us, at start; says where and why."""
