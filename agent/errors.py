"""One-line error text for logs, metrics and the CLI."""


def one_line(exc: BaseException) -> str:
    """'ExcType: first line of the message' (just the type when the message is empty)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
