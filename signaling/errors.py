"""The one exception type the signaling layer uses to refuse a client message.

A single type lets the event handlers tell "the client did something wrong" (answer with an
`error` event and a negative ack, keep serving) apart from "the server has a bug" (log the
traceback, still keep serving).
"""


class Refused(ValueError):
    """A client message that breaks the protocol; `str(err)` is shown to that client."""
